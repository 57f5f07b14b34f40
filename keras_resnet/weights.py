"""Loading and importing weights into keras_resnet models.

``load_weights(model, path)`` is what ``weights=<path>`` in the constructors calls. Every
reader turns a file into ``{layer name: [arrays in Keras order]}``; one assignment step
then checks the whole set against the model (missing, unexpected and mis-shaped entries,
a classifier whose class count differs) and only then writes, so a mismatch never leaves
a model partly loaded.

Readers by file name:

* ``*.keras``: a saved Keras model (loaded with ``safe_mode=True``): a keras_resnet model,
  or a ``keras.applications`` ResNet50/101/152 or ResNet50V2/101V2/152V2.
* ``*.weights.h5`` / ``*.h5``: weights saved by ``save_weights`` from a keras_resnet model
  of the same architecture, or a ``keras.applications`` ResNet weights file (the HDF5
  files ``keras.applications`` downloads, ``model.save("x.h5")``, or Keras 3
  ``save_weights``).
* ``*.safetensors``: a PyTorch ``state_dict`` with torchvision's parameter names
  (``conv1.weight``, ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``,
  ``fc.weight``, ...), which timm's ResNets share; also torchvision's ResNeXt and Wide
  ResNets (grouped or wider shapes) and timm's ResNet-D (deep stem ``conv1.0/1/3/4/6``,
  shortcuts ``downsample.1`` conv / ``downsample.2`` BN), SE (``se.fc1``, ``se.fc2``) and
  ECA (``se.conv``) variants. Read with the ``safetensors`` package;
  PyTorch is not needed.
* ``*.pth``, ``*.pt``, ``*.bin``: the same ``state_dict`` saved with ``torch.save``
  (needs PyTorch installed).

Layouts. A checkpoint fixes the architecture it fits, and loading checks the model
against it before any weight is written:

* torchvision/timm: ``ResNet18``..``ResNet152`` as built by default (stride on the 3x3
  conv, no conv biases, BN epsilon 1e-5, projection shortcuts, symmetric padding).
  Convolution kernels go from OIHW to HWIO and the classifier matrix is transposed.
* keras.applications ResNet (v1): stride on the first 1x1 conv, conv biases, BN epsilon
  1.001e-5 -- ``stride_on="1x1", use_bias=True, bn_epsilon=1.001e-5``.
* keras.applications ResNetV2: full pre-activation, stride in the last block of stages
  1-3 -- ``preact=True, stride_block="last", stackwise_strides=[2, 2, 2, 1],
  use_bias="unnormalized", bn_epsilon=1.001e-5``.

:func:`checkpoint_options` returns those options for a file, :func:`convert` builds the
matching model with the weights in it, and ``python -m keras_resnet.weights SOURCE
OUT.keras`` (``keras-resnet-convert``) writes it as a ``.keras`` file. ``PREPROCESSING``
holds the input scaling each source was trained with, in keras_resnet's
``{"scale", "offset"}`` convention.
"""

import argparse
import json
import os
import re
import sys

import numpy as np

from . import files
from ._compat import keras
from .preprocessing import PREPROCESSING  # noqa: F401  (weights.PREPROCESSING, as documented)

# ----------------------------------------------------------------------------------------
# What a reader returns


class Checkpoint(dict):
    """``{keras_resnet layer name: [arrays in Keras order]}`` and where they came from.

    Attributes:
        origin: ``"keras_resnet"``, ``"keras.applications"`` or ``"torchvision"``.
        config: the ``ResNet`` keyword arguments the weights imply (architecture and
            layout), empty when unknown.
        source_keys: ``{layer name: [source key of each array]}`` (checkpoint names for errors).
        source_shapes: ``{layer name: [shape of each array in the checkpoint's own layout]}``.
        key_for: a function ``(layer name, index) -> source key`` for arrays the
            checkpoint lacks (so an error can name the key it should have had).
    """

    def __init__(self, arrays=(), origin="keras_resnet", config=None, keys=None, shapes=None,
                 key_for=None):
        super().__init__(arrays)
        self.origin = origin
        self.config = dict(config or {})
        self.source_keys = dict(keys or {})
        self.source_shapes = dict(shapes or {})
        self.key_for = key_for
        self.model_options = {}

    def describe(self):
        """A short name of what the checkpoint holds, e.g. ``torchvision/timm ResNet-50``."""
        c = self.config
        if not c:
            return f"{self.origin} weights"
        blocks = c.get("stackwise_num_blocks")
        depth = _depth_of(c.get("block"), blocks)
        if self.origin == "keras.applications":
            if depth is not None:
                return f"keras.applications ResNet{depth}{'V2' if c.get('preact') else ''}"
            return f"keras.applications-style ResNet{'V2' if c.get('preact') else ''} ({c['block']} blocks {blocks})"
        if depth is not None:
            return f"torchvision/timm {_variant_label(c, depth)}"
        return f"torchvision-style ResNet ({c.get('block')} blocks {blocks})"


def _variant_label(c, depth):
    """``ResNet-50``, ``ResNeXt-50 32x4d``, ``Wide ResNet-50-2``, ``SE-ResNet-50-D``, ..."""
    groups, wpg = c.get("groups", 1), c.get("width_per_group", 64)
    if groups > 1:
        label = f"ResNeXt-{depth} {groups}x{wpg}d"
    elif wpg != 64:
        label = f"Wide ResNet-{depth}-{wpg // 64}" if wpg % 64 == 0 else f"ResNet-{depth} (width {wpg}/64)"
    else:
        label = f"ResNet-{depth}"
    if c.get("stem") == "deep" or c.get("avg_down"):
        label += "-D" if c.get("stem") == "deep" and c.get("avg_down") else " (deep stem)" if c.get("stem") == "deep" else " (avg-pool shortcuts)"
    attention = c.get("attention")
    return f"{attention.upper()}-{label}" if attention else label


def _variant_name(c, depth):
    """torchvision's / timm's model name: ``resnext50_32x4d``, ``wide_resnet50_2``,
    ``resnet50d``, ``seresnet50``, ``ecaresnet50d`` (``resnet{depth}`` otherwise)."""
    groups, wpg = c.get("groups", 1), c.get("width_per_group", 64)
    d = "d" if c.get("stem") == "deep" and c.get("avg_down") else ""
    attention = c.get("attention") or ""
    if groups > 1:
        return f"{attention}resnext{depth}{d}_{groups}x{wpg}d"
    if wpg != 64 and wpg % 64 == 0 and not (attention or d):
        return f"wide_resnet{depth}_{wpg // 64}"
    return f"{attention}resnet{depth}{d}"


def _depth_of(block, blocks):
    from .models import IMAGENET_DEPTHS

    for depth, (b, n) in IMAGENET_DEPTHS.items():
        if b == block and list(n) == list(blocks or ()):
            return depth
    return None


def _arrays_from_model(model):
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _shape(a):
    return tuple(int(d) for d in np.shape(a))


# ----------------------------------------------------------------------------------------
# keras.applications names <-> keras_resnet names
#
# conv1_conv -> stem_conv, conv1_bn -> stem_bn, conv{s+1}_block{b}_0_conv/_0_bn ->
# stage{s}_block{b}_shortcut_conv/_shortcut_bn, conv{s+1}_block{b}_{i}_conv/_{i}_bn ->
# stage{s}_block{b}_conv{i}/_bn{i}, conv{s+1}_block{b}_preact_bn -> ..._preact_bn;
# post_bn and predictions keep their names. Weight order is the same in both (kernel,
# bias; gamma, beta, moving mean, moving variance).

_APP_BLOCK = re.compile(r"^conv(\d+)_block(\d+)_(0_conv|0_bn|\d+_conv|\d+_bn|preact_bn)$")
_KR_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(shortcut_conv|shortcut_bn|conv\d+|bn\d+|preact_bn)$")
_APP_FIXED = {"conv1_conv": "stem_conv", "conv1_bn": "stem_bn", "post_bn": "post_bn",
              "predictions": "predictions"}


def keras_applications_name(app_name):
    """The keras_resnet layer name of a keras.applications ResNet layer (None if unknown)."""
    if app_name in _APP_FIXED:
        return _APP_FIXED[app_name]
    m = _APP_BLOCK.match(app_name)
    if not m:
        return None
    stage, block, role = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
    if stage < 1:
        return None
    if role == "0_conv":
        role = "shortcut_conv"
    elif role == "0_bn":
        role = "shortcut_bn"
    elif role != "preact_bn":
        i, kind = role.split("_")
        role = f"{kind}{i}"
    return f"stage{stage}_block{block}_{role}"


def _app_name_of(kr_name):
    """Inverse of :func:`keras_applications_name`."""
    for app, kr in _APP_FIXED.items():
        if kr == kr_name:
            return app
    m = _KR_BLOCK.match(kr_name)
    if not m:
        return kr_name
    stage, block, role = int(m.group(1)) + 1, m.group(2), m.group(3)
    if role.startswith("shortcut_"):
        role = "0_" + role.split("_")[1]
    elif role != "preact_bn":
        kind, i = re.match(r"([a-z]+)(\d+)$", role).groups()
        role = f"{i}_{kind}"
    return f"conv{stage}_block{block}_{role}"


def is_keras_applications_names(names):
    """Whether ``names`` are the layer names of a keras.applications ResNet."""
    return "conv1_conv" in names and any(_APP_BLOCK.match(n) for n in names)


def _app_weight_names(layer, n):
    kinds = ["gamma", "beta", "moving_mean", "moving_variance"] if layer.endswith("bn") else ["kernel", "bias"]
    return [f"{layer}/{k}" for k in kinds[:n]]


def from_keras_applications_arrays(named, origin_name="keras.applications model"):
    """A :class:`Checkpoint` from ``{keras.applications layer name: arrays}``."""
    arrays, keys, unknown = {}, {}, []
    for app_name, values in named.items():
        kr_name = keras_applications_name(app_name)
        if kr_name is None:
            unknown.append(app_name)
            continue
        arrays[kr_name] = [np.asarray(v) for v in values]
        keys[kr_name] = _app_weight_names(app_name, len(values))
    if unknown:
        raise ValueError(
            f"{origin_name}: layer '{unknown[0]}' is not part of a keras.applications ResNet "
            "(accepted: conv1_conv, conv1_bn, conv<s>_block<b>_<i>_conv/_bn, _preact_bn, post_bn, "
            "predictions)"
        )
    config = _keras_applications_config(arrays, origin_name)
    return Checkpoint(
        arrays, origin="keras.applications", config=config, keys=keys,
        shapes={k: [_shape(a) for a in v] for k, v in arrays.items()},
        key_for=lambda layer, i: _app_weight_names(_app_name_of(layer), i + 1)[i],
    )


def _stage_counts(names, origin_name):
    blocks = {}
    for n in names:
        m = _KR_BLOCK.match(n)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            blocks[s] = max(blocks.get(s, 0), b)
    stages = sorted(blocks)
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ValueError(f"{origin_name}: residual stages {stages} found; expected stages numbered from 1 without gaps")
    return [blocks[s] for s in stages]


# The layout options each kind of checkpoint fixes.
KERAS_V1 = dict(stem="imagenet", shortcut="B", preact=False, residual=True, stride_on="1x1",
                stride_block="first", use_bias=True, bn_epsilon=1.001e-5, bn_momentum=0.99)
KERAS_V2 = dict(stem="imagenet", shortcut="B", preact=True, residual=True, stride_on="3x3",
                stride_block="last", use_bias="unnormalized", bn_epsilon=1.001e-5, bn_momentum=0.99)
TORCHVISION = dict(stem="imagenet", shortcut="B", preact=False, residual=True,
                   stride_block="first", use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9)


def _stage_widths(arrays, num_stages, origin_name, source_name):
    """Each stage's width: the output channels of its first block's conv1.

    ``source_name(layer)`` says how the checkpoint names a missing layer.
    """
    widths = []
    for s in range(1, num_stages + 1):
        conv1 = arrays.get(f"stage{s}_block1_conv1")
        if conv1 is None:
            raise ValueError(f"{origin_name}: missing {source_name(f'stage{s}_block1_conv1')}")
        widths.append(int(np.shape(conv1[0])[-1]))
    return widths


def _keras_applications_config(arrays, origin_name):
    if "stem_conv" not in arrays:
        raise ValueError(f"{origin_name}: no 'conv1_conv' weights; not a keras.applications ResNet")
    blocks = _stage_counts(arrays, origin_name)
    preact = "post_bn" in arrays or any(n.endswith("_preact_bn") for n in arrays)
    filters = _stage_widths(arrays, len(blocks), origin_name,
                            lambda n: f"layer '{_app_name_of(n)}'")
    n = len(blocks)
    config = dict(
        stackwise_num_blocks=blocks,
        stackwise_num_filters=filters,
        stackwise_strides=[2] * (n - 1) + [1] if preact else [1] + [2] * (n - 1),
        block="bottleneck",
        stem_filters=int(np.shape(arrays["stem_conv"][0])[-1]),
        **(KERAS_V2 if preact else KERAS_V1),
    )
    _add_top(config, arrays)
    config["input_channels"] = int(np.shape(arrays["stem_conv"][0])[2])
    return config


def _add_top(config, arrays):
    top = arrays.get("predictions")
    if top is not None:
        config["classes"] = int(np.shape(top[0])[-1])


# ----------------------------------------------------------------------------------------
# torchvision / timm state_dict names <-> keras_resnet names

_TORCH_BLOCK = re.compile(
    r"^layer(\d+)\.(\d+)\.(conv\d+|bn\d+|downsample\.[012]|se\.fc1|se\.fc2|se\.conv)\.([a-z_]+)$"
)
_TORCH_DEEP_STEM = {"conv1.0": ("stem_conv1", "conv"), "conv1.1": ("stem_bn1", "bn"),
                    "conv1.3": ("stem_conv2", "conv"), "conv1.4": ("stem_bn2", "bn"),
                    "conv1.6": ("stem_conv3", "conv")}
_TORCH_ATTENTION = {"se.fc1": ("se_fc1", "conv"), "se.fc2": ("se_fc2", "conv"),
                    "se.conv": ("eca_conv", "conv1d")}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
_CONV_PARAMS = ("weight", "bias")
_IGNORED = ("num_batches_tracked",)
_PREFIXES = ("module.", "_orig_mod.", "model.")


def torch_key_layer(key, avg_down=False):
    """``(keras_resnet layer name, kind)`` of a torchvision/timm ResNet key's module, or None.

    ``kind`` is ``"conv"``, ``"bn"``, ``"fc"`` or ``"conv1d"`` (ECA). ``avg_down``: the
    checkpoint has ResNet-D shortcuts (timm ``downsample.0`` average pool, ``downsample.1``
    conv, ``downsample.2`` BN) rather than torchvision's (``downsample.0`` conv,
    ``downsample.1`` BN).
    """
    module, _, param = key.rpartition(".")
    if module == "conv1":
        return "stem_conv", "conv"
    if module == "bn1":
        return "stem_bn", "bn"
    if module == "fc":
        return "predictions", "fc"
    if module in _TORCH_DEEP_STEM:
        return _TORCH_DEEP_STEM[module]
    m = _TORCH_BLOCK.match(key)
    if not m:
        return None
    stage, block, role = int(m.group(1)), int(m.group(2)) + 1, m.group(3)
    prefix = f"stage{stage}_block{block}_"
    if role.startswith("downsample."):
        index = int(role[-1]) - (1 if avg_down else 0)
        if index == 0:
            return prefix + "shortcut_conv", "conv"
        if index == 1:
            return prefix + "shortcut_bn", "bn"
        return None
    if role in _TORCH_ATTENTION:
        name, kind = _TORCH_ATTENTION[role]
        return prefix + name, kind
    return prefix + role, "conv" if role.startswith("conv") else "bn"


_KR_TORCH = re.compile(r"^stage(\d+)_block(\d+)_(shortcut_conv|shortcut_bn|conv\d+|bn\d+|se_fc1|se_fc2|eca_conv)$")


def _torch_module_of(layer, avg_down=False):
    fixed = {"stem_conv": "conv1", "stem_bn": "bn1", "predictions": "fc"}
    fixed.update({v[0]: k for k, v in _TORCH_DEEP_STEM.items()})
    if layer in fixed:
        return fixed[layer]
    m = _KR_TORCH.match(layer)
    if not m:
        return layer
    stage, block, role = m.group(1), int(m.group(2)) - 1, m.group(3)
    first = 1 if avg_down else 0
    role = {"shortcut_conv": f"downsample.{first}", "shortcut_bn": f"downsample.{first + 1}",
            **{v[0]: k for k, v in _TORCH_ATTENTION.items()}}.get(role, role)
    return f"layer{stage}.{block}.{role}"


def _torch_key_for(layer, index, avg_down=False):
    module = _torch_module_of(layer, avg_down)
    params = _BN_PARAMS if (layer.endswith("_bn") or re.search(r"_bn\d+$", layer)) else _CONV_PARAMS
    return f"{module}.{params[index] if index < len(params) else index}"


def _unwrap_state_dict(state, origin_name):
    """The parameter dict inside common checkpoint wrappers, without DataParallel prefixes."""
    if not isinstance(state, dict):
        raise ValueError(f"{origin_name}: holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    for wrapper in ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema"):
        inner = state.get(wrapper)
        if isinstance(inner, dict) and not any(hasattr(v, "shape") for v in state.values()):
            state = inner
            break
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def from_torch_state_dict(state, origin_name="state_dict"):
    """A :class:`Checkpoint` from a torchvision/timm ResNet ``state_dict``.

    ``state`` maps torchvision parameter names to arrays (NumPy arrays or CPU tensors).
    Convolution kernels are transposed from OIHW to HWIO, the classifier matrix from
    (out, in) to (in, out); BatchNorm weight, bias, running mean and variance become
    gamma, beta, moving mean and moving variance.
    """
    state = _unwrap_state_dict(state, origin_name)
    modules = {}
    # timm's ResNet-D shortcuts put their conv at downsample.1 and their BN at downsample.2.
    avg_down = any(isinstance(k, str) and ".downsample.2." in k for k in state)
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValueError(f"{origin_name}: key {key!r} is not a parameter name")
        param = key.rpartition(".")[2]
        if param in _IGNORED:
            continue
        found = torch_key_layer(key, avg_down)
        if found is None:
            raise ValueError(
                f"{origin_name}: unexpected key '{key}' (shape {_shape(_to_numpy(value))}); not part "
                "of a torchvision/timm ResNet (accepted: conv1 or conv1.0/1/3/4/6, bn1, "
                "layer<s>.<b>.conv<i>/bn<i>/downsample.<0|1|2>/se.fc1/se.fc2/se.conv, fc)"
            )
        layer, kind = found
        params = _BN_PARAMS if kind == "bn" else _CONV_PARAMS
        if param not in params:
            raise ValueError(
                f"{origin_name}: unexpected key '{key}'; a {kind} module has "
                f"{', '.join(params)}"
            )
        modules.setdefault(layer, (kind, {}))[1][param] = (key, _to_numpy(value))
    if "stem_conv" not in modules and "stem_conv3" not in modules:
        raise ValueError(f"{origin_name}: no key 'conv1.weight'; not a torchvision/timm ResNet state_dict")

    arrays, keys, shapes = {}, {}, {}
    for layer, (kind, params) in modules.items():
        wanted = _BN_PARAMS if kind == "bn" else ("weight", "bias") if "bias" in params else ("weight",)
        for p in wanted:
            if p not in params:
                module = params[next(iter(params))][0].rpartition(".")[0]
                raise ValueError(f"{origin_name}: missing key '{module}.{p}' (the {kind} '{module}' has "
                                 f"{', '.join(sorted(params))})")
        values, names, src = [], [], []
        for p in wanted:
            key, a = params[p]
            names.append(key)
            src.append(_shape(a))
            if kind == "conv" and p == "weight":
                if a.ndim != 4:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {_shape(a)}; a conv weight is 4-D (out, in, h, w)")
                a = a.transpose(2, 3, 1, 0)
            elif kind == "conv1d" and p == "weight":
                if a.ndim != 3:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {_shape(a)}; a Conv1d weight is 3-D (out, in, k)")
                a = a.transpose(2, 1, 0)
            elif kind == "fc" and p == "weight":
                if a.ndim != 2:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {_shape(a)}; a Linear weight is 2-D (out, in)")
                a = a.T
            values.append(np.ascontiguousarray(a, dtype="float32"))
        arrays[layer], keys[layer], shapes[layer] = values, names, src

    config = _torch_config(arrays, origin_name, avg_down)
    return Checkpoint(arrays, origin="torchvision", config=config, keys=keys, shapes=shapes,
                      key_for=lambda layer, i: _torch_key_for(layer, i, avg_down))


def _torch_config(arrays, origin_name, avg_down=False):
    blocks = _stage_counts(arrays, origin_name)
    bottleneck = any(n.endswith("_conv3") for n in arrays if n.startswith("stage"))
    key = lambda n: f"key '{_torch_key_for(n, 0, avg_down)}'"  # noqa: E731
    widths = _stage_widths(arrays, len(blocks), origin_name, key)
    groups, width_per_group = 1, 64
    filters = widths
    if bottleneck:
        # Grouped/wide bottlenecks: a stage's filters are its output / 4; the 3x3 conv's
        # (out, in / groups, 3, 3) shape gives the groups; the width rule gives the rest.
        filters, per_group = [], set()
        for s, width in enumerate(widths, start=1):
            conv2, conv3 = arrays.get(f"stage{s}_block1_conv2"), arrays.get(f"stage{s}_block1_conv3")
            if conv2 is None or conv3 is None:
                raise ValueError(f"{origin_name}: missing {key(f'stage{s}_block1_conv2' if conv2 is None else f'stage{s}_block1_conv3')}")
            planes = int(np.shape(conv3[0])[-1]) // 4
            g = width // max(int(np.shape(conv2[0])[2]), 1)
            filters.append(planes)
            per_group.add((g, width * 64 / (planes * g) if planes and g else 0))
        if len(per_group) == 1:
            groups, wpg = per_group.pop()
            if wpg == int(wpg) and int(planes * wpg / 64) * groups == width:
                width_per_group = int(wpg)
    stem = "deep" if "stem_conv3" in arrays else "imagenet"
    stem_conv = arrays["stem_conv3" if stem == "deep" else "stem_conv"]
    attention = "se" if any(n.endswith("_se_fc1") for n in arrays) else (
        "eca" if any(n.endswith("_eca_conv") for n in arrays) else None)
    config = dict(
        stackwise_num_blocks=blocks,
        stackwise_num_filters=filters,
        stackwise_strides=[1] + [2] * (len(blocks) - 1),
        block="bottleneck" if bottleneck else "basic",
        stem_filters=int(np.shape(stem_conv[0])[-1]),
        **TORCHVISION,
    )
    config.update(stem=stem, groups=groups, width_per_group=width_per_group,
                  avg_down=avg_down, attention=attention)
    _add_top(config, arrays)
    first = arrays["stem_conv1" if stem == "deep" else "stem_conv"]
    config["input_channels"] = int(np.shape(first[0])[2])
    return config


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


# ----------------------------------------------------------------------------------------
# Readers


def read_keras_file(path, model=None):
    """Arrays by layer name from a ``.keras`` file (keras_resnet or keras.applications)."""
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    return _checkpoint_from_model(source, f"weights file {path!r}")


def _checkpoint_from_model(source, origin_name):
    named = _arrays_from_model(source)
    if not is_keras_applications_names(named):
        return Checkpoint(named)
    checkpoint = from_keras_applications_arrays(named, origin_name)
    # A whole model also says how its input and top are set up; convert() keeps them.
    names = {layer.name for layer in source.layers}
    top = _find(source, "predictions")
    activation = top.get_config().get("activation") if top is not None else None
    checkpoint.model_options = dict(
        input_shape=tuple(source.input_shape[1:]),
        pooling=None if top is not None else "avg" if "avg_pool" in names else "max" if "max_pool" in names else None,
        classifier_activation=None if activation in (None, "linear") else activation,
    )
    return checkpoint


def _h5_classes(path):
    """(include_top, classes) of a keras_resnet ``.weights.h5`` file."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f.get("layers")
        if group is None:
            raise ValueError(f"weights={path!r} is not a Keras 3 .weights.h5 file (no 'layers' group)")
        dense = [k for k in group if k == "dense" or k.startswith("dense_")]
        if not dense:
            return False, None
        kernel = group[dense[0]]["vars"]["0"]
        return True, int(kernel.shape[-1])


def _h5_kind(path):
    """``"keras3"`` (positional ``layers/`` groups) or ``"legacy"`` (weights by layer name)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and "layer_names" not in f.attrs:
                return "keras3"
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return "legacy"
    except OSError as e:
        raise ValueError(f"weights={path!r} is not a readable HDF5 file ({e})") from None
    raise ValueError(f"weights={path!r} is an HDF5 file without Keras weights ('layers' group or 'layer_names')")


def _decode(s):
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


_H5_ORDER = {"kernel": 0, "gamma": 0, "bias": 1, "beta": 1, "moving_mean": 2, "moving_variance": 3}


def read_legacy_h5(path, model=None):
    """Arrays by layer name from a Keras 2 HDF5 weights file (``layer_names`` attribute).

    This is the format of the files keras.applications downloads and of
    ``model.save("x.h5")``; layers are stored by name, so keras.applications and
    keras_resnet names are both understood.
    """
    import h5py

    named = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in (_decode(n) for n in group.attrs["layer_names"]):
            g = group[layer]
            weight_names = [_decode(n) for n in g.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            values = [(w, np.asarray(g[w])) for w in weight_names]
            # Order by role where the name says it (kernel, bias / gamma, beta, mean, var).
            roles = [w.rsplit("/", 1)[-1].split(":")[0] for w, _ in values]
            if all(r in _H5_ORDER for r in roles):
                values = [v for _, v in sorted(zip(roles, values), key=lambda t: _H5_ORDER[t[0]])]
            named[layer] = [v for _, v in values]
    if is_keras_applications_names(named):
        return from_keras_applications_arrays(named, f"weights file {path!r}")
    return Checkpoint(named)


def read_weights_h5(path, model=None):
    """Arrays by layer name from a ``.weights.h5`` / ``.h5`` file.

    A Keras 3 ``save_weights`` file stores weights by position, not by name, so a twin is
    built, the file is loaded into it, and its arrays are read by name: the
    keras.applications ResNet whose layers the file has (keras.applications models use
    ``Activation`` layers, keras_resnet models ``ReLU``), else a keras_resnet twin of
    ``model``. Keras 2 (by name) files go to :func:`read_legacy_h5`.
    """
    if _h5_kind(path) == "legacy":
        return read_legacy_h5(path, model)
    from .models import ResNet

    app = _keras_applications_twin(path)
    if app is not None:
        try:
            _quiet_load(app, path)
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"weights={path!r} does not fit keras.applications {app.name}: {first}") from None
        return _checkpoint_from_model(app, f"weights file {path!r}")
    if not isinstance(model, ResNet):
        raise ValueError(
            f"weights={path!r}: this .weights.h5 file is not from a keras.applications ResNet and "
            "holds no architecture; load it into the keras_resnet model that saved it "
            "(weights=<path> in its constructor)"
        )
    include_top, classes = _h5_classes(path)
    config = dict(model.get_config(), include_top=include_top, pooling=None, weights=None)
    if classes is not None:
        config["classes"] = classes
    twin = ResNet.from_config(config)
    try:
        _quiet_load(twin, path)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"weights={path!r} does not fit this architecture ({model.name}): {first}"
        ) from None
    return Checkpoint(_arrays_from_model(twin))


def _quiet_load(model, path):
    """``model.load_weights(path)``; a skipped object (which Keras only warns about) is an error."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
    if skipped:
        raise ValueError(skipped[0].strip().splitlines()[0])


def _keras_applications_spec(path):
    """``(constructor name, kwargs)`` of the keras.applications ResNet whose layers a Keras 3
    ``.weights.h5`` file has, or None (read from the file's layer groups, nothing built)."""
    import h5py

    def kind(group_name):
        return group_name.rstrip("0123456789").rstrip("_")

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            return None
        names = list(f["layers"])
        kinds = [kind(n) for n in names]
        # keras.applications ResNets use Activation layers; keras_resnet models use ReLU.
        if "activation" not in kinds or "re_lu" in kinds or "conv2d" not in names:
            return None
        convs = [n for n, k in zip(names, kinds) if k == "conv2d"]
        bns = [n for n, k in zip(names, kinds) if k == "batch_normalization"]
        dense = [n for n, k in zip(names, kinds) if k == "dense"]
        stem = f["layers"]["conv2d"]["vars"]["0"].shape
        classes = int(f["layers"][dense[0]]["vars"]["0"].shape[-1]) if dense else None
    total = (len(convs) - 5) / 3  # stem + 3 convs per block + 4 projections
    v2 = len(bns) == 1 + 3 * total  # pre-activation: post_bn + 3 BNs per block
    if not (v2 or len(bns) == len(convs)):
        return None
    depth = {16: 50, 33: 101, 50: 152}.get(total)
    if depth is None:
        return None
    kwargs = dict(weights=None, input_shape=(64, 64, int(stem[2])), include_top=bool(dense))
    if classes:
        kwargs["classes"] = classes
    return f"ResNet{depth}{'V2' if v2 else ''}", kwargs


def _keras_applications_twin(path):
    """The keras.applications ResNet (weights=None) a Keras 3 ``.weights.h5`` file fits."""
    spec = _keras_applications_spec(path)
    if spec is None:
        return None
    name, kwargs = spec
    return getattr(keras.applications, name)(**kwargs)


def read_safetensors(path, model=None):
    """A torchvision/timm ``state_dict`` from a ``.safetensors`` file (PyTorch not needed)."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "reading .safetensors files needs the safetensors package: pip install 'keras-residual[weights]'"
        ) from None
    state = {}
    try:
        with safe_open(path, framework="np") as f:
            for key in f.keys():
                try:
                    state[key] = f.get_tensor(key)
                except TypeError:  # bfloat16: NumPy has no such dtype
                    state[key] = None
    except Exception as e:  # safetensors raises its own error types for bad files
        raise ValueError(f"weights={path!r} is not a readable .safetensors file ({e})") from None
    if any(v is None for v in state.values()):
        state.update(_read_bf16(path, [k for k, v in state.items() if v is None]))
    return from_torch_state_dict(state, f"weights file {path!r}")


def _read_bf16(path, keys):
    """bfloat16 tensors of a .safetensors file as float32 (header + raw bytes)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for key in keys:
            info = header[key]
            if info["dtype"] != "BF16":
                raise ValueError(f"weights={path!r}: key '{key}' has unsupported dtype {info['dtype']}")
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = np.frombuffer(f.read(end - start), dtype="<u2").astype("<u4") << 16
            out[key] = raw.view("<f4").reshape(info["shape"])
    return out


def read_torch(path, model=None):
    """A torchvision/timm ``state_dict`` saved with ``torch.save`` (needs PyTorch)."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"weights={path!r}: reading PyTorch .pth/.pt/.bin files needs PyTorch (pip install torch); "
            "a .safetensors file can be read without it"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"weights={path!r} is not a loadable PyTorch state_dict ({first})") from None
    return from_torch_state_dict(state, f"weights file {path!r}")


READERS = [
    (".keras", read_keras_file),
    (".weights.h5", read_weights_h5),
    (".h5", read_weights_h5),
    (".safetensors", read_safetensors),
    (".pth", read_torch),
    (".pt", read_torch),
    (".bin", read_torch),
]


def read(path, model=None):
    """Arrays by layer name from ``path``, with the reader its file name selects."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        if path in ("imagenet",) or not os.path.splitext(path)[1]:
            raise ValueError(
                f"weights={path!r} is not a file: keras_resnet downloads nothing. Import public "
                "weights from a local file: weights='resnet50.safetensors' (torchvision/timm "
                "state_dict; .pth/.pt need PyTorch) or a keras.applications .h5, or convert once "
                "with keras-resnet-convert SOURCE OUT.keras; see README 'Pretrained weights'")
        raise ValueError(f"weights={path!r}: no such file; pass None or the path of a local weights file")
    for suffix, reader in READERS:
        if path.endswith(suffix):
            return reader(path, model)
    accepted = ", ".join(s for s, _ in READERS)
    raise ValueError(f"weights={path!r}: unknown file type; accepted: None or a file ending in {accepted}")


# ----------------------------------------------------------------------------------------
# Checking and assigning

# ResNet options a checkpoint's weights fix (beyond its depth and widths).
LAYOUT_OPTIONS = ("stem", "preact", "residual", "shortcut", "stride_on", "stride_block",
                  "stackwise_strides", "use_bias", "bn_epsilon", "groups", "width_per_group",
                  "avg_down", "attention")
_ARCH_OPTIONS = ("block", "stackwise_num_blocks", "stackwise_num_filters", "stem_filters")


def check_layout(model, checkpoint, source="weights"):
    """Raise ValueError if ``model`` does not compute what ``checkpoint``'s source did.

    Compares the layout options the checkpoint fixes (stride placement, biases, BN
    epsilon, pre-activation, ...) with the model's configuration. A torchvision
    checkpoint does not fix ``stride_on`` (caffe-style checkpoints with the same names
    stride on the 1x1 conv), so that one is left to the model.
    """
    from .models import ResNet

    config = getattr(checkpoint, "config", None)
    if not config or not isinstance(model, ResNet):
        return
    have = model.get_config()
    wrong = []
    for option in LAYOUT_OPTIONS:
        if option not in config or (option == "stride_on" and checkpoint.origin == "torchvision"):
            continue
        if option == "stride_on" and have["block"] != "bottleneck":
            continue
        want, got = config[option], have.get(option)
        same = np.isclose(want, got, rtol=1e-9, atol=0) if option == "bn_epsilon" else want == got
        if not same:
            wrong.append(f"{option}={want!r} (model has {got!r})")
    if wrong:
        hint = ("build the model with those options (keras_resnet.weights.checkpoint_options(path) "
                "returns the layout ones), or let keras_resnet.weights.convert(path) build it")
        raise ValueError(
            f"{source} holds {checkpoint.describe()}, which needs {', '.join(wrong)}; {hint}"
        )


def _arch_summary(config):
    return f"{config.get('block')} blocks {list(config.get('stackwise_num_blocks', []))}"


def assign(model, arrays, source="weights"):
    """Set ``model``'s weights from ``{layer name: arrays}``, all or nothing.

    A classifier in ``arrays`` is skipped when the model has none (``include_top=False``).
    When ``arrays`` is a :class:`Checkpoint`, errors name the checkpoint's own keys and
    shapes.
    """
    keys = arrays.source_keys if isinstance(arrays, Checkpoint) else {}
    shapes = arrays.source_shapes if isinstance(arrays, Checkpoint) else {}
    key_for = getattr(arrays, "key_for", None)
    top = _find(model, "predictions")
    if top is not None and "predictions" in arrays:
        have = arrays["predictions"][0].shape[-1]
        want = top.get_weights()[0].shape[-1]
        if have != want:
            raise ValueError(
                f"classes={want} does not match the {have} classes in {source}; "
                f"pass classes={have}, or include_top=False to load everything but the classifier"
            )
    plan, problems = [], []
    expected = {layer.name: layer for layer in model.layers if layer.weights}
    for name, layer in expected.items():
        current = layer.get_weights()
        if name not in arrays:
            if key_for is not None:
                problems.append(
                    f"key '{key_for(name, 0)}' is not in the checkpoint (model layer '{name}', "
                    f"shape {_shape(current[0])})"
                )
            else:
                problems.append(f"missing weights for layer '{name}'")
            continue
        given = arrays[name]
        if len(given) != len(current):
            where = f" (keys {', '.join(keys[name])})" if name in keys else ""
            problems.append(
                f"layer '{name}' has {len(current)} weight arrays; {source} has {len(given)}{where}"
            )
            continue
        for i, (c, g) in enumerate(zip(current, given)):
            if tuple(c.shape) != _shape(g):
                if name in keys:
                    src = shapes.get(name, [None] * len(given))[i]
                    layout = f" (as Keras {_shape(g)})" if src is not None and tuple(src) != _shape(g) else ""
                    problems.append(
                        f"key '{keys[name][i]}' has shape {tuple(src) if src else _shape(g)}{layout}; "
                        f"model layer '{name}' weight {i} has shape {tuple(c.shape)}"
                    )
                else:
                    problems.append(
                        f"layer '{name}' weight {i}: model shape {tuple(c.shape)}, "
                        f"{source} shape {_shape(g)}"
                    )
        plan.append((layer, given))
    unexpected = sorted(set(arrays) - set(expected) - ({"predictions"} if top is None else set()))
    for n in unexpected:
        if n in keys:
            problems.append(
                f"unexpected key '{keys[n][0]}' (shape {tuple(shapes[n][0])}): the model has no layer '{n}'"
            )
        else:
            problems.append(f"unexpected weights for layer '{n}' (not in {model.name})")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        prefix = ""
        config = getattr(arrays, "config", None)
        if config and hasattr(model, "get_config") and isinstance(model.get_config(), dict):
            have = model.get_config()
            if any(have.get(k) is not None and config.get(k) != have.get(k) for k in _ARCH_OPTIONS):
                prefix = (
                    f"{source} holds {arrays.describe()} ({_arch_summary(config)}); "
                    f"{model.name} has {_arch_summary(have)}: "
                )
        if not prefix:
            prefix = f"{source} does not fit {model.name}: "
        raise ValueError(f"{prefix}{problems[0]}{more}")
    for layer, given in plan:
        layer.set_weights(given)


def _find(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
    return None


def _source_checkpoint(source, model=None):
    """(Checkpoint, description) from a path, a keras model, or a state_dict."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return read(path, model), f"weights file {path!r}"
    if isinstance(source, keras.Model):
        return _checkpoint_from_model(source, f"model '{source.name}'"), f"model '{source.name}'"
    if isinstance(source, dict):
        return from_torch_state_dict(source, "state_dict"), "state_dict"
    raise ValueError(
        f"weights source of type {type(source).__name__} is not supported; accepted: a file path, "
        "a keras.applications ResNet model, or a torchvision/timm state_dict"
    )


def load_weights(model, path):
    """Load the weights in ``path`` into ``model`` (see the module docstring).

    ``path`` may also be a keras.applications ResNet model or a torchvision/timm
    ``state_dict`` (a dict of arrays or tensors).
    """
    checkpoint, source = _source_checkpoint(path, model)
    check_layout(model, checkpoint, source)
    assign(model, checkpoint, source=source)
    return model


# ----------------------------------------------------------------------------------------
# Building the model a checkpoint fits


def inspect_checkpoint(source):
    """The :class:`Checkpoint` of ``source`` (path, keras.applications model or state_dict)."""
    return _source_checkpoint(source)[0]


def checkpoint_options(source):
    """``ResNet`` keyword arguments a checkpoint's layout needs, beyond its depth.

    For a named constructor::

        path = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
        model = keras_resnet.ResNet50(weights=path, **keras_resnet.weights.checkpoint_options(path))

    gives a keras.applications ResNet50 file the v1 layout it was trained with
    (torchvision/timm checkpoints need nothing: theirs is the default layout). Includes
    ``classes`` when the checkpoint has a classifier. Options that choose the network
    (``preact``, ``stem``, ``shortcut``, ``residual``) are left out: they come with the
    constructor's name, and loading reports a conflict. Returns ``{}`` for keras_resnet's
    own ``.keras`` / ``.weights.h5`` files, which need no options.
    """
    keep = ("stride_on", "stride_block", "stackwise_strides", "use_bias", "bn_epsilon",
            "bn_momentum", "classes")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".h5") and os.path.isfile(path) and _h5_kind(path) == "keras3":
            spec = _keras_applications_spec(path)  # no need to build anything
            if spec is None:
                return {}
            name, kwargs = spec
            options = dict(KERAS_V2 if name.endswith("V2") else KERAS_V1)
            options["stackwise_strides"] = [2, 2, 2, 1] if name.endswith("V2") else [1, 2, 2, 2]
            if "classes" in kwargs:
                options["classes"] = kwargs["classes"]
            return {k: v for k, v in options.items() if k in keep}
    checkpoint = source if isinstance(source, Checkpoint) else inspect_checkpoint(source)
    options = {k: v for k, v in checkpoint.config.items() if k in keep}
    if checkpoint.origin == "torchvision":
        options.pop("stride_on", None)  # not fixed by the weights; 3x3 unless asked
    return options


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
    from .models import ResNet

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
        depth = _depth_of(config["block"], config["stackwise_num_blocks"])
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


# ----------------------------------------------------------------------------------------
# Command line


def _input_shape(text):
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(None if p.strip().lower() in ("", "none") else int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 224,224,3)") from None
    if len(dims) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 224,224,3)")
    return dims


def main(argv=None):
    """``keras-resnet-convert SOURCE OUTPUT.keras``: convert a checkpoint to a .keras file."""
    parser = argparse.ArgumentParser(
        prog="keras-resnet-convert",
        description=(
            "Convert a pretrained ResNet checkpoint into a keras_resnet .keras file: a "
            "keras.applications ResNet50/101/152 or ResNet50V2/101V2/152V2 (.h5, .weights.h5, "
            ".keras) or a torchvision/timm ResNet-18/34/50/101/152, ResNeXt, Wide ResNet, ResNet-D, "
            "SE-ResNet or ECA-ResNet-D state_dict (.safetensors; "
            ".pth/.pt/.bin with PyTorch installed). The architecture is detected from the "
            "checkpoint; the written file is reloaded and checked before it is put in place."
        ),
    )
    parser.add_argument("source", help="checkpoint file")
    parser.add_argument("output", help="output .keras file (written atomically)")
    parser.add_argument("--input-shape", type=_input_shape, default=None, metavar="H,W,C",
                        help="model input shape, e.g. 224,224,3 (default: any size, the checkpoint's channels)")
    top = parser.add_mutually_exclusive_group()
    top.add_argument("--no-top", dest="include_top", action="store_false", default=None,
                     help="drop the classifier")
    top.add_argument("--include-top", dest="include_top", action="store_true",
                     help="keep the classifier (the default when the checkpoint has one)")
    parser.add_argument("--pooling", choices=["avg", "max"], default=None,
                        help="global pooling after the last stage with --no-top")
    parser.add_argument("--classifier-activation", default=None, metavar="NAME",
                        help="classifier activation, e.g. softmax, or none for logits (default: a "
                             ".keras source's own, else softmax)")
    parser.add_argument("--stride-on", choices=["3x3", "1x1"], default=None,
                        help="bottleneck stride placement of a torchvision-named checkpoint (default 3x3)")
    parser.add_argument("--name", default=None, help="model name (default: resnet<depth>[v2])")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    activation = args.classifier_activation
    if activation is None:
        activation = FROM_SOURCE
    elif activation.lower() in ("none", "linear", ""):
        activation = None
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        convert_file(
            args.source, args.output, log=log, include_top=args.include_top,
            input_shape=args.input_shape, pooling=args.pooling, classifier_activation=activation,
            name=args.name, stride_on=args.stride_on,
        )
    except (ValueError, ImportError) as e:
        print(f"keras-resnet-convert: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
