"""Fine-tuning a pretrained ResNet on other classes: a new head on a kept backbone.

    import keras_resnet as kr
    model = kr.fine_tune("resnet18_imagenet.keras", classes=3, input_shape=(64, 64, 3))
    kr.set_backbone_trainable(model, False)   # train the head only (BN in inference mode)
    ...
    kr.set_backbone_trainable(model, True)    # then the whole network

:func:`fine_tune` takes a keras_resnet model (or a ``.keras`` file or a training run
directory) with any head -- a 1000-class ImageNet classifier, or none
(``include_top=False``) -- and returns a model of the same backbone with a fresh
classifier for ``classes`` classes: every backbone weight is copied (BN statistics
included), the classifier starts from Keras's default initialisation.

:func:`set_backbone_trainable` freezes or unfreezes everything but the head. In Keras 3
a frozen ``BatchNormalization`` layer runs in inference mode (its moving statistics are
used and not updated) even in a training-mode call, which is what the Keras
transfer-learning guide recommends while a new head is trained on a frozen backbone.
``train.py --init-from ... --freeze-epochs N`` uses both.
"""

from ._compat import keras
from .growth import HEAD_LAYERS, check_source, grow_into, load_source
from .models import ResNet


def fine_tune(source, classes, input_shape=None, classifier_activation="softmax", name=None):
    """A keras_resnet model with ``source``'s backbone and a new head for ``classes``.

    Args:
        source: a keras_resnet ``ResNet`` (with or without a classifier), or the path of a
            ``.keras`` file or training run directory holding one.
        classes: classes of the new classifier.
        input_shape: default: the source's.
        classifier_activation: of the new classifier (None: logits).
        name: default: the source's name.

    The source's preprocessing (``include_preprocessing``) is kept, so a converted model
    that takes pixels in 0..255 still does. Raises ``ValueError`` for a source that is not
    a keras_resnet model.
    """
    if not isinstance(source, keras.Model):
        source, _ = load_source(source)
    config = dict(check_source(source))
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes={classes!r} is not supported; expected a positive integer")
    config.update(include_top=True, pooling=None, classes=classes,
                  classifier_activation=classifier_activation, name=name or config["name"])
    if input_shape is not None:
        config["input_shape"] = tuple(input_shape)
    config.pop("trainable", None)
    return grow_into(source, ResNet.from_config(config), fine_tune=True)


def head_layers(model):
    """The layers of ``model``'s head (the classifier), which fine-tuning trains first."""
    return [layer for layer in model.layers if layer.name in HEAD_LAYERS]


def set_backbone_trainable(model, trainable):
    """Freezes (``trainable=False``) or unfreezes every layer of ``model`` but its head.
    Frozen BatchNormalization layers run in inference mode. Returns the number of layers
    changed. Rebuild any ``tf.function`` that captured ``model.trainable_variables``."""
    head = {id(layer) for layer in head_layers(model)}
    changed = 0
    for layer in model.layers:
        if id(layer) not in head and layer.weights and layer.trainable != bool(trainable):
            layer.trainable = bool(trainable)
            changed += 1
    return changed


def backbone_variables(model):
    """``model``'s trainable variables outside its head."""
    head = {id(v) for layer in head_layers(model) for v in layer.weights}
    return [v for v in model.trainable_variables if id(v) not in head]


def source_preprocessing(source, channels):
    """The ``{"scale", "offset"}`` a keras_resnet ``source`` was trained with, when it
    records one (``include_preprocessing``, as ``keras-resnet-convert`` writes); else None."""
    from .preprocessing import preprocessing_spec

    config = source.get_config()
    if not config.get("include_preprocessing"):
        return None
    spec, _ = preprocessing_spec(config.get("preprocessing", "torch"), channels)
    return spec


def adopt_preprocessing(dataset, preprocessing, log=None):
    """Sets ``dataset.preprocessing`` to the backbone's own (``preprocessing``, or None to
    keep the dataset's), so fine-tuning feeds the input the pretrained weights expect."""
    if preprocessing is None or preprocessing == dataset.preprocessing:
        return
    import numpy as np

    same = all(np.allclose(dataset.preprocessing[k], preprocessing[k], rtol=1e-6, atol=1e-6)
               for k in ("scale", "offset"))
    dataset.preprocessing = dict(preprocessing)
    if log is not None and not same:
        log("fine-tuning feeds the input the pretrained backbone was trained with: pixels x "
            f"{[round(v, 6) for v in preprocessing['scale']]} + "
            f"{[round(v, 4) for v in preprocessing['offset']]}")
