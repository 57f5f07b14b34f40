"""keras-hub ResNet presets, both ways.

    import keras_resnet as kr
    model = kr.from_preset("resnet_50_imagenet/")       # a local keras-hub preset directory
    kr.save_to_preset(model, "my_preset/")               # keras_hub.models.ResNetBackbone /
                                                         # ResNetImageClassifier.from_preset loads it

A keras-hub preset directory holds ``config.json`` (a ``ResNetBackbone``),
``model.weights.h5``, ``metadata.json``, and for an image classifier ``task.json``,
``task.weights.h5`` and ``preprocessor.json`` (its image converter: ``scale``, ``offset``,
``image_size``, ``interpolation``). keras_resnet reads and writes them through keras-hub
itself (``pip install keras-hub``), so whatever keras-hub loads, this loads.

What maps (keras-hub ``ResNetBackbone`` arguments -> keras_resnet options):

* ``input_conv_kernel_sizes`` ``[7]`` -> the ImageNet stem; ``[3, 3, 3]`` with ``f/2, f/2, f``
  filters -> ``stem="deep"`` (ResNet-C/D).
* ``basic_block`` / ``bottleneck_block`` (ResNet v1, torchvision's layout): projection
  shortcuts where the channels change (``shortcut="B"``).
* ``*_vd`` (ResNet-D): ``avg_down=True``. ``basic_block_vd`` projects on the first block of
  its first stack too, where the channels stay 64: ``shortcut="first"``.
* ``use_pre_activation=True`` (ResNetV2): ``preact=True`` with
  ``stem_pool_padding="-inf"`` (keras-hub pads the stem max-pool with -inf, where
  keras.applications and keras_resnet's default pad with zeros).

Refused, with the reason: pre-activation ``_vd`` blocks (keras-hub's skip the shortcut's
average pool, so a strided stage cannot run there). In the other direction, a model with
options keras-hub lacks is refused, naming each one.

Layer names: ``conv1_conv`` -> ``stem_conv`` (``conv1/2/3_conv`` -> ``stem_conv1/2/3`` in the
deep stem), ``stack{i}_block{j}_{k}_conv`` -> ``stage{i+1}_block{j+1}_conv{k}``, ``_0_conv`` ->
``shortcut_conv``, ``_pre_activation_bn`` -> ``preact_bn``, ``post_bn`` -> ``post_bn``, the
classifier's ``predictions`` -> ``predictions``.

Only local directories: a ``kaggle://`` or ``hf://`` handle is refused with the command
that downloads it first.
"""

import os
import re

import numpy as np

from . import files

# Remote handle prefix -> the command that downloads it.
REMOTE = {
    "kaggle://": "python -c \"import kagglehub; print(kagglehub.model_download('{handle}'))\"",
    "hf://": "huggingface-cli download {handle} --local-dir {name}",
}
BACKBONE = "ResNetBackbone"
CLASSIFIER = "ResNetImageClassifier"


def _check_local(path):
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise ValueError(f"preset={path!r} is not supported; expected a local preset directory")
    for prefix, command in REMOTE.items():
        if text.lower().startswith(prefix):
            handle = text[len(prefix):]
            cmd = command.format(handle=handle, name=handle.rstrip("/").split("/")[-1])
            raise ValueError(f"preset {text!r} is a remote handle; keras_resnet reads local "
                             f"directories only (no download): download it first with `{cmd}` "
                             "and pass the directory")
    if "://" in text:
        raise ValueError(f"preset {text!r} is not a local directory; accepted: the path of a "
                         "keras-hub preset directory (config.json, model.weights.h5)")
    if not os.path.isdir(text):
        raise ValueError(f"preset directory {text!r} does not exist; expected a keras-hub preset "
                         "directory (config.json, model.weights.h5)")
    config = os.path.join(text, "config.json")
    if not os.path.isfile(config):
        raise ValueError(f"{text!r} is not a keras-hub preset: it has no config.json")
    return text


def _keras_hub():
    try:
        import keras_hub
    except ImportError as e:
        raise ImportError("keras-hub presets need keras-hub (pip install keras-hub)") from e
    return keras_hub


# ----------------------------------------------------------------------------------------
# keras-hub config <-> keras_resnet options


def hub_projections(block_type, num_stacks):
    """Which stacks keras-hub gives a projection shortcut (on their first block): all of
    them, except the first stack of ``basic_block``."""
    return [block_type != "basic_block" or i > 0 for i in range(num_stacks)]


def projections(shortcut, block, stem_filters, widths):
    """Which stages of a keras_resnet network with ``shortcut`` "B" or "first" project on
    their first block (B: where the channels change)."""
    expansion = 4 if block == "bottleneck" else 1
    channels, out = stem_filters, []
    for w in widths:
        out.append(shortcut == "first" or channels != w * expansion)
        channels = w * expansion
    return out


def options_from_backbone_config(c):
    """``ResNet`` keyword arguments for a keras-hub ``ResNetBackbone`` config."""
    block_type = c["block_type"]
    if block_type not in ("basic_block", "bottleneck_block", "basic_block_vd", "bottleneck_block_vd"):
        raise ValueError(f"block_type={block_type!r} is not supported; accepted: basic_block, "
                         "bottleneck_block, basic_block_vd, bottleneck_block_vd")
    preact, vd = bool(c.get("use_pre_activation")), block_type.endswith("_vd")
    if preact and vd:
        raise ValueError(
            f"block_type={block_type!r} with use_pre_activation=True is not supported: keras-hub's "
            "pre-activation _vd blocks skip the shortcut's average pool (a strided stage does "
            "not build there); accepted: _vd blocks without pre-activation, or basic_block, "
            "bottleneck_block with it")
    if c.get("data_format", "channels_last") not in (None, "channels_last"):
        raise ValueError(f"data_format={c['data_format']!r} is not supported; accepted: channels_last")
    filters, kernels = list(c["input_conv_filters"]), list(c["input_conv_kernel_sizes"])
    deep = len(filters) == 3
    if deep and (kernels != [3, 3, 3] or filters[0] != filters[1] or filters[2] != 2 * filters[0]):
        raise ValueError(f"input_conv_filters={filters}, input_conv_kernel_sizes={kernels} is "
                         "not supported; accepted: one 7x7 convolution, or three 3x3 "
                         "convolutions with f/2, f/2, f filters (the ResNet-D stem)")
    if not deep and (kernels != [7] or len(filters) != 1):
        raise ValueError(f"input_conv_filters={filters}, input_conv_kernel_sizes={kernels} is not "
                         "supported; accepted: one 7x7 convolution, or three 3x3 convolutions "
                         "with f/2, f/2, f filters (the ResNet-D stem)")
    block = "bottleneck" if "bottleneck" in block_type else "basic"
    widths, blocks = list(c["stackwise_num_filters"]), list(c["stackwise_num_blocks"])
    strides = list(c["stackwise_num_strides"])
    hub = hub_projections(block_type, len(widths))
    if not hub[0] and (filters[-1] != widths[0] or strides[0] != 1):
        raise ValueError("stack 0: keras-hub's identity shortcut needs the same channels and "
                         "stride 1 there")
    # keras-hub projects on each stack's first block: where the channels change, that is
    # keras_resnet's option B; where they do not (basic_block_vd's first stack), "first".
    if hub == projections("B", block, filters[-1], widths):
        shortcut = "B"
    elif hub == projections("first", block, filters[-1], widths):
        shortcut = "first"
    else:
        raise ValueError(f"stackwise_num_filters={widths}: keras-hub's shortcuts there (a projection "
                         f"on the first block of stacks {[i for i, p in enumerate(hub) if p]}) "
                         "match no keras_resnet shortcut option")
    image_shape = c.get("image_shape") or (None, None, 3)
    return dict(
        stackwise_num_blocks=blocks, stackwise_num_filters=widths, stackwise_strides=strides,
        block=block, stem="deep" if deep else "imagenet", stem_filters=filters[-1], avg_down=vd,
        shortcut=shortcut, preact=preact, stride_on="3x3", use_bias=False, bn_epsilon=1e-5,
        bn_momentum=0.9, input_shape=tuple(image_shape),
        # keras-hub's ResNetV2 pads its stem max-pool with -inf (no ReLU before it there).
        **({"stem_pool_padding": "-inf"} if preact else {}),
    )


def backbone_config_from_model(model):
    """keras-hub ``ResNetBackbone`` arguments for a keras_resnet model (or ValueError)."""
    c = model.get_config()
    problems = []
    wanted = dict(stride_on="3x3", stride_block="first", use_bias=False,
                  residual=True, groups=1, width_per_group=64, attention=None,
                  output_stride=None)
    if c["block"] == "basic":
        wanted.pop("stride_on")
    for key, value in wanted.items():
        if c.get(key) != value:
            problems.append(f"{key}={c.get(key)!r} (keras-hub needs {value!r})")
    if c["shortcut"] not in ("B", "first"):
        problems.append(f"shortcut={c['shortcut']!r} (keras-hub's layouts are 'B' and 'first')")
    if not np.isclose(c.get("bn_epsilon"), 1e-5, rtol=1e-6, atol=0):
        problems.append(f"bn_epsilon={c.get('bn_epsilon')!r} (keras-hub uses 1e-5)")
    if c["stem"] == "cifar":
        problems.append("stem='cifar' (keras-hub has the ImageNet and ResNet-D stems)")
    if c["preact"] and c.get("stem_pool_padding", "zeros") != "-inf":
        problems.append("preact=True with stem_pool_padding='zeros' (keras-hub's ResNetV2 pads its "
                        "stem max-pool with -inf: build the model with stem_pool_padding='-inf')")
    if c["preact"] and c["avg_down"]:
        problems.append("preact=True with avg_down=True (keras-hub's pre-activation _vd blocks "
                        "skip the average pool)")
    if c["stackwise_num_filters"][0] != 64:
        problems.append(f"stackwise_num_filters={c['stackwise_num_filters']} (keras-hub needs 64 first)")
    if not problems:
        hub = _hub_config(c)
        want = hub_projections(hub["block_type"], len(c["stackwise_num_filters"]))
        have = projections(c["shortcut"], c["block"], c["stem_filters"], c["stackwise_num_filters"])
        if want != have:
            problems.append(f"shortcut={c['shortcut']!r} projects on the first block of stages "
                            f"{[i + 1 for i, p in enumerate(have) if p]}, keras-hub's "
                            f"{hub['block_type']} on stages {[i + 1 for i, p in enumerate(want) if p]}")
    if problems:
        raise ValueError(f"{model.name} has no keras-hub ResNet equivalent: {'; '.join(problems)}")
    try:
        options_from_backbone_config(_hub_config(c))  # the same rules both ways
    except ValueError as e:
        raise ValueError(f"{model.name} has no keras-hub ResNet equivalent: {e}") from None
    return _hub_config(c)


def _hub_config(c):
    deep = c["stem"] == "deep"
    f = c["stem_filters"]
    suffix = "_vd" if c["avg_down"] else ""
    return dict(
        input_conv_filters=[f // 2, f // 2, f] if deep else [f],
        input_conv_kernel_sizes=[3, 3, 3] if deep else [7],
        stackwise_num_filters=list(c["stackwise_num_filters"]),
        stackwise_num_blocks=list(c["stackwise_num_blocks"]),
        stackwise_num_strides=list(c["stackwise_strides"]),
        block_type=f"{c['block']}_block{suffix}",
        use_pre_activation=bool(c["preact"]),
        image_shape=tuple(c["input_shape"]),
    )


_HUB_BLOCK = re.compile(r"^stack(\d+)_block(\d+)_(\d|pre_activation)_(conv|bn)$")
_HUB_STEM = {"conv1_conv": "stem_conv1", "conv1_bn": "stem_bn1", "conv2_conv": "stem_conv2",
             "conv2_bn": "stem_bn2", "conv3_conv": "stem_conv3", "conv3_bn": "stem_bn"}


def keras_resnet_name(hub_name, deep_stem):
    """The keras_resnet layer name of a keras-hub ResNet layer (None: no weights there)."""
    if not deep_stem and hub_name in ("conv1_conv", "conv1_bn"):
        return {"conv1_conv": "stem_conv", "conv1_bn": "stem_bn"}[hub_name]
    if deep_stem and hub_name in _HUB_STEM:
        return _HUB_STEM[hub_name]
    if hub_name in ("post_bn", "predictions"):
        return hub_name
    m = _HUB_BLOCK.match(hub_name)
    if not m:
        return None
    stage, block, index, kind = int(m.group(1)) + 1, int(m.group(2)) + 1, m.group(3), m.group(4)
    if index == "pre_activation":
        role = f"preact_{kind}"
    else:
        role = f"shortcut_{kind}" if index == "0" else f"{kind}{index}"
    return f"stage{stage}_block{block}_{role}"


def _pairs(hub_layers, kr_layers, deep_stem):
    """``[(keras-hub layer, keras_resnet layer)]``, every weighted layer on both sides once."""
    ours = {layer.name: layer for layer in kr_layers if layer.weights}
    pairs, unmatched = [], []
    for layer in hub_layers:
        if not layer.weights:
            continue
        name = keras_resnet_name(layer.name, deep_stem)
        if name is None or name not in ours:
            unmatched.append(layer.name)
            continue
        pairs.append((layer, ours.pop(name)))
    if unmatched or ours:
        raise ValueError(f"the keras-hub and keras_resnet layers do not pair up: keras-hub "
                         f"{unmatched[:3]}, keras_resnet {sorted(ours)[:3]} left over")
    return pairs


def _copy(pairs, reverse=False):
    for hub, ours in pairs:
        src, dst = (ours, hub) if reverse else (hub, ours)
        values = src.get_weights()
        shapes = [tuple(w.shape) for w in dst.get_weights()]
        if [tuple(np.shape(v)) for v in values] != shapes:
            raise ValueError(f"layer {hub.name} -> {ours.name}: shapes {[np.shape(v) for v in values]} "
                             f"do not match {shapes}")
        dst.set_weights(values)


# ----------------------------------------------------------------------------------------
# Reading


def _read_json(path):
    return files.read_json_object(path)


def _converter_config(directory):
    """The image converter's config of a preset (``preprocessor.json`` or
    ``image_converter.json``), or None."""
    for name in ("image_converter.json", "preprocessor.json"):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        config = _read_json(path).get("config", {})
        converter = config.get("image_converter", config) if name == "preprocessor.json" else config
        if isinstance(converter, dict) and "config" in converter and "class_name" in converter:
            converter = converter["config"]
        if isinstance(converter, dict) and ("scale" in converter or "image_size" in converter):
            return converter
    return None


def _labels(directory):
    path = os.path.join(directory, "labels.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def from_preset(preset, include_preprocessing=True, classifier_activation=None, name=None):
    """The keras_resnet model of a local keras-hub ResNet preset directory.

    A backbone preset gives a model without a classifier (``include_top=False``, the
    last stage's feature map, as ``ResNetBackbone``); an image classifier preset
    (``task.json``) gives the classifier too, with global average pooling as keras-hub's.
    The image converter's ``scale`` and ``offset`` go inside the model
    (``include_preprocessing``: it takes pixels as keras-hub's preprocessor does); its
    ``image_size`` and ``interpolation`` are kept in ``model.pretrained_cfg``. A
    ``labels.txt`` beside them (one class name a line) becomes ``model.class_names``.

    ``classifier_activation``: None (default) gives logits, as keras-hub's classifier with
    ``activation=None``; the preset's own activation is used when it has one.
    """
    directory = _check_local(preset)
    keras_hub = _keras_hub()
    from .models import ResNet

    backbone_config = _read_json(os.path.join(directory, "config.json"))
    if backbone_config.get("class_name") != BACKBONE:
        raise ValueError(f"{directory!r} holds a keras-hub {backbone_config.get('class_name')!r}; "
                         f"accepted: a {BACKBONE} or {CLASSIFIER} preset")
    options = options_from_backbone_config(backbone_config["config"])
    task = None
    if os.path.isfile(os.path.join(directory, "task.json")):
        task = keras_hub.models.ImageClassifier.from_preset(directory)
        hub_backbone = task.backbone
    else:
        hub_backbone = keras_hub.models.Backbone.from_preset(directory)
    converter = _converter_config(directory)
    prep = None
    if include_preprocessing and converter is not None and converter.get("scale") is not None:
        scale = np.broadcast_to(np.asarray(converter["scale"], "float64").reshape(-1), (3,))
        offset = np.broadcast_to(np.asarray(converter.get("offset") or 0.0, "float64").reshape(-1), (3,))
        prep = {"scale": [float(v) for v in scale], "offset": [float(v) for v in offset]}
    hub_layers = list(hub_backbone.layers)
    if task is not None:
        dense = task.output_dense
        activation = dense.get_config().get("activation")
        options.update(include_top=True, classes=int(dense.units),
                       classifier_activation=activation if activation not in (None, "linear")
                       else classifier_activation)
        if task.get_config().get("pooling", "avg") != "avg":
            raise ValueError(f"{directory!r}: classifier pooling {task.get_config()['pooling']!r} "
                             "is not supported; accepted: avg")
        hub_layers.append(_renamed(dense, "predictions"))
    else:
        options.update(include_top=False)
    model = ResNet(**options, include_preprocessing=prep is not None,
                   preprocessing=prep if prep is not None else "none",
                   name=name or os.path.basename(os.path.normpath(directory)).replace("-", "_") or "resnet")
    _copy(_pairs(hub_layers, model.layers, options["stem"] == "deep"))
    model.pretrained_cfg = {
        "name": os.path.basename(os.path.normpath(directory)), "library": "keras-hub",
        "scale": prep["scale"] if prep else None, "offset": prep["offset"] if prep else None,
        "image_size": list(converter["image_size"]) if converter and converter.get("image_size") else None,
        "interpolation": converter.get("interpolation") if converter else None,
    }
    labels = _labels(directory)
    if labels is not None:
        model.class_names = labels
    return model


class _Renamed:
    """A layer seen under another name (the classifier's Dense, whatever keras-hub calls it)."""

    def __init__(self, layer, name):
        self._layer, self.name = layer, name

    def __getattr__(self, attr):
        return getattr(self._layer, attr)


def _renamed(layer, name):
    return _Renamed(layer, name)


# ----------------------------------------------------------------------------------------
# Writing


def save_to_preset(model, preset, image_size=None, interpolation="bilinear", labels=None):
    """Write ``model`` as a keras-hub preset directory at ``preset`` (new or empty).

    A model with a classifier (``include_top=True``) becomes a ``ResNetImageClassifier``
    preset (``task.json``, ``task.weights.h5``, ``preprocessor.json`` with the model's
    preprocessing as the image converter's ``scale``/``offset``); one without, a
    ``ResNetBackbone`` preset. Written through keras-hub's own ``save_to_preset`` into a
    temporary directory, loaded back with keras-hub and compared on a random batch, then
    renamed into place. ``labels``: class names, written to ``labels.txt``.
    Returns the path.
    """
    keras_hub = _keras_hub()
    preset = os.fspath(preset)
    if os.path.exists(preset) and (not os.path.isdir(preset) or os.listdir(preset)):
        raise ValueError(f"preset={preset!r} exists and is not an empty directory; "
                         "pass a new path")
    if not hasattr(model, "stage_output_names"):
        raise ValueError(f"save_to_preset needs a keras_resnet ResNet model; got {type(model).__name__}")
    c = model.get_config()
    hub_config = backbone_config_from_model(model)
    backbone = keras_hub.models.ResNetBackbone(**hub_config)
    pairs = _pairs(list(backbone.layers), [layer for layer in model.layers if layer.name != "predictions"],
                   c["stem"] == "deep")
    _copy(pairs, reverse=True)
    prep = _model_preprocessing(c)
    h, w = (image_size or [d if d is not None else 224 for d in c["input_shape"][:2]])[:2]
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(h, w), scale=prep["scale"], offset=prep["offset"], interpolation=interpolation)
    if c["include_top"]:
        activation = c.get("classifier_activation")
        preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
        hub = keras_hub.models.ResNetImageClassifier(
            backbone=backbone, num_classes=int(c["classes"]), preprocessor=preprocessor,
            activation=activation, pooling="avg")
        top = model.get_layer("predictions")
        hub.output_dense.set_weights(top.get_weights())
    else:
        hub = backbone
    if labels is not None and len(labels) != (c["classes"] if c["include_top"] else len(labels)):
        raise ValueError(f"labels has {len(labels)} names; the model has {c['classes']} classes")
    with files.atomic_path(preset, directory=True) as tmp:
        hub.save_to_preset(tmp)
        if not c["include_top"]:
            converter.save_to_preset(tmp)
        if labels is not None:
            with open(os.path.join(tmp, "labels.txt"), "w", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in labels))
        _check_written(tmp, model, prep, keras_hub)
    return preset


def _model_preprocessing(config):
    if config.get("include_preprocessing"):
        from .preprocessing import preprocessing_spec

        return preprocessing_spec(config["preprocessing"], config["input_shape"][-1])[0]
    return {"scale": [1.0] * 3, "offset": [0.0] * 3}


def _check_written(directory, model, prep, keras_hub):
    """keras-hub loads what was written and computes what ``model`` does (float32
    rounding): the classifier's logits, or the backbone's last feature map."""
    c = model.get_config()
    h, w = [d if d is not None else 64 for d in c["input_shape"][:2]]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, h, w, 3)).astype("float32")
    x = np.asarray(pixels * np.asarray(prep["scale"], "float32") + np.asarray(prep["offset"], "float32"))
    want = np.asarray(model(pixels if c["include_preprocessing"] else x, training=False))
    if c["include_top"]:
        loaded = keras_hub.models.ImageClassifier.from_preset(directory)
        got = np.asarray(loaded.backbone(x, training=False))
        got = np.asarray(loaded.output_dense(np.mean(got, axis=(1, 2))))  # with its activation
    else:
        loaded = keras_hub.models.Backbone.from_preset(directory)
        got = np.asarray(loaded(x, training=False))
    scale = float(np.max(np.abs(want))) or 1.0
    diff = float(np.max(np.abs(got - want)))
    if not np.isfinite(diff) or diff > 1e-5 * scale:
        raise ValueError(f"the written preset computes differently in keras-hub (max abs diff "
                         f"{diff:.3g} at scale {scale:.3g}); nothing was written")
