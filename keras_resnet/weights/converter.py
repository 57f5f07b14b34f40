"""Building the keras_resnet model a checkpoint fits, and ``keras-resnet-convert``.
"""

import os

import numpy as np

from .. import files
from .._compat import keras
from ..models import ResNet
from ..specs import depth_of
from .loading import _arch_summary, _source_checkpoint, assign
from .names import _variant_name

FROM_SOURCE = "from_source"


def convert(source, include_top=None, input_shape=None, pooling=None,
            classifier_activation=FROM_SOURCE, name=None, stride_on=None):
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
    """
    return _convert(*_source_checkpoint(source), include_top=include_top, input_shape=input_shape,
                    pooling=pooling, classifier_activation=classifier_activation, name=name,
                    stride_on=stride_on)


def _convert(checkpoint, description, include_top=None, input_shape=None, pooling=None,
             classifier_activation=FROM_SOURCE, name=None, stride_on=None):
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
    if stride_on is not None:
        if checkpoint.origin != "torchvision":
            raise ValueError(f"stride_on is fixed by {checkpoint.describe()}; pass stride_on=None")
        config["stride_on"] = stride_on
    if name is None:
        depth = depth_of(config["block"], config["stackwise_num_blocks"])
        suffix = "v2" if config["preact"] and checkpoint.origin == "keras.applications" else ""
        name = f"resnet{depth}{suffix}" if depth else "resnet"
        if depth and checkpoint.origin == "torchvision":
            name = _variant_name(config, depth)
    model = ResNet(
        **config,
        include_top=include_top,
        input_shape=input_shape if input_shape is not None else (None, None, channels),
        pooling=pooling,
        classes=classes or 1000,
        classifier_activation=classifier_activation,
        name=name,
    )
    assign(model, checkpoint, source=description)
    return model


def convert_file(source, output, log=print, **options):
    """Convert ``source`` (see :func:`convert`) and save it as the ``.keras`` file ``output``.

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
    checkpoint, description = _source_checkpoint(source)
    if checkpoint.config:
        log(f"found {checkpoint.describe()} ({_arch_summary(checkpoint.config)}, "
            f"{sum(len(v) for v in checkpoint.values())} arrays)")
    model = _convert(checkpoint, description, **options)
    log(f"built {model.name}: {model.count_params():,} parameters")
    with files.atomic_path(output, suffix=".keras") as tmp:
        model.save(tmp)
        reloaded = keras.saving.load_model(tmp, compile=False, safe_mode=True)
        shape = [d if d is not None else 64 for d in model.input_shape[1:]]
        x = np.random.default_rng(0).uniform(-1, 1, size=[2] + shape).astype("float32")
        ref = np.asarray(model(x, training=False))
        diff = float(np.max(np.abs(ref - np.asarray(reloaded(x, training=False)))))
        if diff > 1e-5 * (float(np.max(np.abs(ref))) + 1.0):  # same kernels: float32 rounding only
            raise ValueError(f"the written file computes differently from the converted model (max abs diff {diff:.3g})")
        log(f"checked: reloaded file matches the converted model (max abs diff {diff:.3g})")
    log(f"wrote {output}")
    return model

