"""What a reader returns: a :class:`Checkpoint` (arrays by keras_resnet layer name) and the
architecture its arrays imply, from keras.applications or torchvision/timm names.
"""

import re

import numpy as np

from ..specs import KERAS_V1, KERAS_V2, MAX_BLOCKS, MAX_STAGES, TORCHVISION, depth_of
from .names import (BN_PARAMS, CONV_PARAMS, IGNORED, KR_BLOCK, PREFIXES, to_keras_applications_name,
                    app_weight_names, torch_key_for, variant_label, is_keras_applications_names,
                    keras_applications_name, torch_key_layer)

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
        depth = depth_of(c.get("block"), blocks)
        if self.origin == "keras.applications":
            if depth is not None:
                return f"keras.applications ResNet{depth}{'V2' if c.get('preact') else ''}"
            return f"keras.applications-style ResNet{'V2' if c.get('preact') else ''} ({c['block']} blocks {blocks})"
        if depth is not None:
            return f"torchvision/timm {variant_label(c, depth)}"
        return f"torchvision-style ResNet ({c.get('block')} blocks {blocks})"



def arrays_from_model(model):
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def array_shape(a):
    return tuple(int(d) for d in np.shape(a))



def resnet_config(model):
    """``model.get_config()`` of a keras_resnet ``ResNet`` (the arguments that rebuild it),
    None for any other model."""
    if not hasattr(model, "stage_output_names"):
        return None
    config = model.get_config()
    return config if isinstance(config, dict) and "stackwise_num_blocks" in config else None


def find_layer(model, name):
    """``model``'s layer called ``name``, or None."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    return None


def from_keras_applications_arrays(named, origin_name="keras.applications model"):
    """A :class:`Checkpoint` from ``{keras.applications layer name: arrays}``."""
    arrays, keys, unknown = {}, {}, []
    for app_name, values in named.items():
        kr_name = keras_applications_name(app_name)
        if kr_name is None:
            unknown.append(app_name)
            continue
        arrays[kr_name] = [np.asarray(v) for v in values]
        keys[kr_name] = app_weight_names(app_name, len(values))
    if unknown:
        raise ValueError(
            f"{origin_name}: layer '{unknown[0]}' is not part of a keras.applications ResNet "
            "(accepted: conv1_conv, conv1_bn, conv<s>_block<b>_<i>_conv/_bn, _preact_bn, post_bn, "
            "predictions)"
        )
    config = _keras_applications_config(arrays, origin_name)
    return Checkpoint(
        arrays, origin="keras.applications", config=config, keys=keys,
        shapes={k: [array_shape(a) for a in v] for k, v in arrays.items()},
        key_for=lambda layer, i: app_weight_names(to_keras_applications_name(layer), i + 1)[i],
    )


def _stage_counts(names, origin_name):
    blocks = {}
    for n in names:
        m = KR_BLOCK.match(n)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            blocks[s] = max(blocks.get(s, 0), b)
    stages = sorted(blocks)
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ValueError(f"{origin_name}: residual stages {stages} found; expected stages numbered from 1 without gaps")
    return [blocks[s] for s in stages]



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
                            lambda n: f"layer '{to_keras_applications_name(n)}'")
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



def _unwrap_state_dict(state, origin_name):
    """The parameter dict inside common checkpoint wrappers, without DataParallel prefixes."""
    if not isinstance(state, dict):
        raise ValueError(f"{origin_name}: holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    for wrapper in ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema"):
        inner = state.get(wrapper)
        if isinstance(inner, dict) and not any(hasattr(v, "shape") for v in state.values()):
            state = inner
            break
    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None:
        shown = repr(odd)[:60] if isinstance(odd, (bool, float, bytes, tuple)) or not isinstance(odd, int) \
            or abs(odd) < 10 ** 50 else "(a huge integer)"
        raise ValueError(f"{origin_name}: key {shown} ({type(odd).__name__}) is not a parameter name; "
                         "expected a state_dict whose keys are names such as 'conv1.weight'")
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_block_index(key, origin_name):
    """``layer<s>.<b>.``: a stage or block number past the limits is refused before any
    model is built (``layer1.999999.conv1.weight`` would ask for a million blocks)."""
    m = re.match(r"layer(\d+)\.(\d+)\.", key)
    if m is None:
        return
    stage, block = m.group(1), m.group(2)
    if len(stage) > 3 or int(stage) > MAX_STAGES:
        raise ValueError(f"{origin_name}: key '{key[:120]}' names stage {stage[:12]}; at most "
                         f"{MAX_STAGES} stages are supported")
    if len(block) > 6 or int(block) >= MAX_BLOCKS:
        raise ValueError(f"{origin_name}: key '{key[:120]}' names block {block[:12]} of a stage; at "
                         f"most {MAX_BLOCKS} blocks are supported (ResNet-1202, the deepest "
                         "published ResNet, has 600)")


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
        _check_block_index(key, origin_name)
        param = key.rpartition(".")[2]
        if param in IGNORED:
            continue
        found = torch_key_layer(key, avg_down)
        if found is None:
            raise ValueError(
                f"{origin_name}: unexpected key '{key}' (shape {array_shape(_to_numpy(value))}); not part "
                "of a torchvision/timm ResNet (accepted: conv1 or conv1.0/1/3/4/6, bn1, "
                "layer<s>.<b>.conv<i>/bn<i>/downsample.<0|1|2>/se.fc1/se.fc2/se.conv, fc)"
            )
        layer, kind = found
        params = BN_PARAMS if kind == "bn" else CONV_PARAMS
        if param not in params:
            raise ValueError(
                f"{origin_name}: unexpected key '{key}'; a {kind} module has "
                f"{', '.join(params)}"
            )
        try:
            array = _to_numpy(value)
        except Exception as e:  # noqa: BLE001 - quantized, sparse, meta tensors, ...
            raise ValueError(f"{origin_name}: key '{key}' cannot be read as an array of numbers "
                             f"({type(value).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}); "
                             "expected a dense, real-valued tensor") from None
        modules.setdefault(layer, (kind, {}))[1][param] = (key, array)
    if "stem_conv" not in modules and "stem_conv3" not in modules:
        raise ValueError(f"{origin_name}: no key 'conv1.weight'; not a torchvision/timm ResNet state_dict")

    arrays, keys, shapes = {}, {}, {}
    for layer, (kind, params) in modules.items():
        wanted = BN_PARAMS if kind == "bn" else ("weight", "bias") if "bias" in params else ("weight",)
        for p in wanted:
            if p not in params:
                module = params[next(iter(params))][0].rpartition(".")[0]
                raise ValueError(f"{origin_name}: missing key '{module}.{p}' (the {kind} '{module}' has "
                                 f"{', '.join(sorted(params))})")
        values, names, src = [], [], []
        for p in wanted:
            key, a = params[p]
            check_values(a, f"{origin_name}: key '{key}'", variance=p == "running_var")
            names.append(key)
            src.append(array_shape(a))
            if kind == "conv" and p == "weight":
                if a.ndim != 4:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {array_shape(a)}; a conv weight is 4-D (out, in, h, w)")
                a = a.transpose(2, 3, 1, 0)
            elif kind == "conv1d" and p == "weight":
                if a.ndim != 3:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {array_shape(a)}; a Conv1d weight is 3-D (out, in, k)")
                a = a.transpose(2, 1, 0)
            elif kind == "fc" and p == "weight":
                if a.ndim != 2:
                    raise ValueError(f"{origin_name}: key '{key}' has shape {array_shape(a)}; a Linear weight is 2-D (out, in)")
                a = a.T
            values.append(np.ascontiguousarray(a, dtype="float32"))
        arrays[layer], keys[layer], shapes[layer] = values, names, src

    config = _torch_config(arrays, origin_name, avg_down)
    return Checkpoint(arrays, origin="torchvision", config=config, keys=keys, shapes=shapes,
                      key_for=lambda layer, i: torch_key_for(layer, i, avg_down))


def _torch_config(arrays, origin_name, avg_down=False):
    blocks = _stage_counts(arrays, origin_name)
    bottleneck = any(n.endswith("_conv3") for n in arrays if n.startswith("stage"))
    key = lambda n: f"key '{torch_key_for(n, 0, avg_down)}'"  # noqa: E731
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


def check_values(array, what, variance=False):
    """Refuses, naming ``what`` (the checkpoint key), an array that is not real numbers
    (complex, strings, objects), holds NaN or Inf, or (``variance``: a BatchNormalization
    running variance) holds a negative value. A converted model must compute what its
    checkpoint did; these never do."""
    a = np.asarray(array)
    if a.dtype.kind == "V" and a.dtype.name.startswith(("bfloat", "float")):
        a = a.astype("float32")  # ml_dtypes' bfloat16 / float8 (NumPy has none of its own)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{what} has dtype {a.dtype}; expected real numbers (a float or integer "
                         "tensor), not complex or other values")
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            bad = a[~finite]
            kinds = sorted({"NaN" if np.isnan(v) else "Inf" for v in bad[:1000]})
            raise ValueError(f"{what} holds {int(bad.size)} non-finite value(s) ({', '.join(kinds)}); "
                             "expected finite weights")
    if variance and a.size and float(np.min(a)) < 0:
        raise ValueError(f"{what} (a BatchNormalization running variance) holds negative values "
                         f"(min {float(np.min(a)):.3g}); a variance is >= 0")
    return array


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def checkpoint_from_model(source, origin_name):
    named = arrays_from_model(source)
    if not is_keras_applications_names(named):
        return Checkpoint(named)
    checkpoint = from_keras_applications_arrays(named, origin_name)
    # A whole model also says how its input and top are set up; convert() keeps them.
    names = {layer.name for layer in source.layers}
    top = find_layer(source, "predictions")
    activation = top.get_config().get("activation") if top is not None else None
    checkpoint.model_options = dict(
        input_shape=tuple(source.input_shape[1:]),
        pooling=None if top is not None else "avg" if "avg_pool" in names else "max" if "max_pool" in names else None,
        classifier_activation=None if activation in (None, "linear") else activation,
    )
    return checkpoint
