"""Building the keras_resnet model a checkpoint fits, and ``keras-resnet-convert``.
"""

import os

import numpy as np

from .. import files
from .._compat import keras
from ..models import ResNet
from ..preprocessing import preprocessing_spec
from ..specs import depth_of
from .checkpoint import check_values
from .loading import arch_summary, source_checkpoint, assign
from .names import variant_name

FROM_SOURCE = "from_source"
# The preprocessing keras-resnet-convert records in the models it writes (--preprocessing).
PREPROCESSING_CHOICES = ("from_source", "torch", "tf", "caffe", "none")


def source_preprocessing(checkpoint, stride_on=None):
    """The preprocessing mode the weights of ``checkpoint`` were trained with, or None
    where it cannot be known: torchvision/timm ImageNet mean/std (``"torch"``),
    keras.applications ResNet ``"caffe"`` and ResNetV2 ``"tf"``. A torchvision-named
    checkpoint with ``stride_on="1x1"`` (caffe-style models) is not known."""
    if checkpoint.origin == "torchvision" and stride_on in (None, "3x3"):
        return "torch"
    if checkpoint.origin == "keras.applications":
        return "tf" if checkpoint.config.get("preact") else "caffe"
    return None


def _preprocessing_options(mode, checkpoint, description, stride_on):
    """``(ResNet preprocessing options, reverse the stem's input channels)`` for ``mode``."""
    if mode is None:
        return {}, False
    if mode not in PREPROCESSING_CHOICES:
        raise ValueError(f"preprocessing={mode!r} is not supported; accepted: "
                         f"{', '.join(PREPROCESSING_CHOICES)}")
    if mode == FROM_SOURCE:
        mode = source_preprocessing(checkpoint, stride_on)
        if mode is None:
            raise ValueError(
                f"the input preprocessing of {checkpoint.describe()} ({description}) is not "
                "known; pass --preprocessing torch, tf, caffe or none (python: preprocessing=)")
    if mode == "caffe":
        # BGR pixels minus the BGR mean: the model takes RGB pixels minus the RGB mean, and
        # the stem convolution reads its input channels in reverse order instead.
        spec, _ = preprocessing_spec("caffe")
        return dict(include_preprocessing=True,
                    preprocessing={"scale": spec["scale"][::-1], "offset": spec["offset"][::-1]}), True
    return dict(include_preprocessing=True, preprocessing=mode), False


def _reverse_input_channels(model):
    """Reverses the input-channel axis of the first convolution's kernel (BGR <-> RGB)."""
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    weights = first.get_weights()
    first.set_weights([weights[0][:, :, ::-1, :]] + weights[1:])


def convert(source, include_top=None, input_shape=None, pooling=None,
            classifier_activation=FROM_SOURCE, name=None, stride_on=None, preprocessing=None):
    """A keras_resnet ``ResNet`` with the architecture and weights of ``source``.

    Args:
        source: a keras.applications ResNet50/101/152 or ResNet50V2/101V2/152V2 model, a
            torchvision/timm ResNet ``state_dict``, or the path of any file
            :func:`read` accepts.
        include_top: keep the classifier (default: when the source has one).
        input_shape: default: the source model's, or ``(None, None, channels)``.
        pooling: with ``include_top=False``: None, ``"avg"`` or ``"max"``
            (default: a keras.applications model's own).
        classifier_activation: default ``"from_source"``: a keras.applications model's
            (or ``.keras`` file's) own activation, else ``"softmax"`` (keras.applications'
            default). None gives logits, which is what a PyTorch ``fc`` computes.
        name: model name (default: ``resnet{depth}`` / ``resnet{depth}v2``).
        stride_on: bottleneck stride placement for a torchvision-named checkpoint
            (default ``"3x3"``, torchvision/timm; ``"1x1"`` for caffe-style ones).
        preprocessing: None (default): the model takes what the source's model took
            (preprocessed input). ``"from_source"``: the source's own preprocessing goes
            inside the model (``include_preprocessing``), which then takes RGB pixels in
            0..255 (torchvision/timm: ImageNet mean/std; keras.applications ResNet:
            ``"caffe"``, with the stem reading RGB; ResNetV2: ``"tf"``); ``ValueError``
            where it cannot be known. ``"torch"``, ``"tf"``, ``"caffe"``, ``"none"``: that
            one (``"none"``: pixels as they are).
    """
    return _convert(*source_checkpoint(source), include_top=include_top, input_shape=input_shape,
                    pooling=pooling, classifier_activation=classifier_activation, name=name,
                    stride_on=stride_on, preprocessing=preprocessing)


def _convert(checkpoint, description, include_top=None, input_shape=None, pooling=None,
             classifier_activation=FROM_SOURCE, name=None, stride_on=None, preprocessing=None):
    if not checkpoint.config:
        raise ValueError(
            f"{description} holds keras_resnet weights without an architecture; build the model "
            "and pass weights=<path> instead"
        )
    config = dict(checkpoint.config)
    channels = config.pop("input_channels")
    classes = config.pop("classes", None)
    own = checkpoint.model_options
    if input_shape is None:
        input_shape = own.get("input_shape")
    if pooling is None:
        pooling = own.get("pooling")
    if classifier_activation == FROM_SOURCE:
        classifier_activation = own.get("classifier_activation", "softmax")
    if include_top is None:
        include_top = classes is not None
    if include_top and classes is None:
        raise ValueError(f"include_top=True needs a classifier; {description} has none (pass include_top=False)")
    prep_options, reverse = _preprocessing_options(preprocessing, checkpoint, description,
                                                   stride_on)
    if stride_on is not None:
        if checkpoint.origin != "torchvision":
            raise ValueError(f"stride_on is fixed by {checkpoint.describe()}; pass stride_on=None")
        config["stride_on"] = stride_on
    if name is None:
        depth = depth_of(config["block"], config["stackwise_num_blocks"])
        suffix = "v2" if config["preact"] and checkpoint.origin == "keras.applications" else ""
        name = f"resnet{depth}{suffix}" if depth else "resnet"
        if depth and checkpoint.origin == "torchvision":
            name = variant_name(config, depth)
    model = ResNet(
        **config,
        include_top=include_top,
        input_shape=input_shape if input_shape is not None else (None, None, channels),
        pooling=pooling,
        classes=classes or 1000,
        classifier_activation=classifier_activation,
        name=name,
        **prep_options,
    )
    for layer, arrays in checkpoint.items():  # every source (.h5, .keras, state_dict)
        keys = checkpoint.source_keys.get(layer) or []
        for i, a in enumerate(arrays):
            what = f"{description}: key '{keys[i]}'" if i < len(keys) else f"{description}: layer '{layer}' array {i}"
            check_values(a, what, variance="bn" in layer and len(arrays) == 4 and i == 3)
    assign(model, checkpoint, source=description)
    if reverse:
        _reverse_input_channels(model)
    return model


def convert_file(source, output, log=print, preprocessing=FROM_SOURCE, **options):
    """Convert ``source`` (see :func:`convert`) and save it as the ``.keras`` file ``output``.

    Unlike :func:`convert`, ``preprocessing`` defaults to ``"from_source"``: the written
    model takes RGB pixels in 0..255, as exports do.

    Written atomically (a temporary file in the same folder, renamed when complete); the
    written file is reloaded with ``safe_mode=True`` and its outputs compared with the
    converted model's on a random batch before it is renamed into place. Returns the model.
    """
    output = os.fspath(output)
    if not output.endswith(".keras"):
        raise ValueError(f"output={output!r}: the output file name must end in .keras")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError(f"output={output!r}: folder {folder!r} does not exist")
    log(f"reading {source}")
    checkpoint, description = source_checkpoint(source)
    if checkpoint.config:
        log(f"found {checkpoint.describe()} ({arch_summary(checkpoint.config)}, "
            f"{sum(len(v) for v in checkpoint.values())} arrays)")
    model = _convert(checkpoint, description, preprocessing=preprocessing, **options)
    log(f"built {model.name}: {model.count_params():,} parameters")
    config = model.get_config()
    if config.get("include_preprocessing"):
        mode = (preprocessing if preprocessing != FROM_SOURCE
                else source_preprocessing(checkpoint, options.get("stride_on")))
        log(f"preprocessing inside the model ({mode}"
            + (", the stem reads RGB" if mode == "caffe" else "")
            + "): it takes RGB pixels in 0..255")
    with files.atomic_path(output, suffix=".keras") as tmp:
        model.save(tmp)
        reloaded = keras.saving.load_model(tmp, compile=False, safe_mode=True)
        shape = [d if d is not None else 64 for d in model.input_shape[1:]]
        x = np.random.default_rng(0).uniform(-1, 1, size=[2] + shape).astype("float32")
        ref = np.asarray(model(x, training=False))
        diff = float(np.max(np.abs(ref - np.asarray(reloaded(x, training=False)))))
        if not np.isfinite(ref).all():
            raise ValueError("the converted model's outputs are not finite on a random batch; "
                             "the checkpoint's weights overflow float32")
        if not np.isfinite(diff) or diff > 1e-5 * (float(np.max(np.abs(ref))) + 1.0):  # float32 rounding only
            raise ValueError(f"the written file computes differently from the converted model (max abs diff {diff:.3g})")
        log(f"checked: reloaded file matches the converted model (max abs diff {diff:.3g})")
    log(f"wrote {output}")
    return model

