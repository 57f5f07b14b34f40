"""Layer and parameter names: keras.applications and torchvision/timm <-> keras_resnet.

Pure name maps (no arrays, no Keras): each direction of each source, and the model names
(``resnext50_32x4d``, ...) a checkpoint's layout is known by.
"""

import re

def variant_label(c, depth):
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


def variant_name(c, depth):
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



# ----------------------------------------------------------------------------------------
# keras.applications names <-> keras_resnet names
#
# conv1_conv -> stem_conv, conv1_bn -> stem_bn, conv{s+1}_block{b}_0_conv/_0_bn ->
# stage{s}_block{b}_shortcut_conv/_shortcut_bn, conv{s+1}_block{b}_{i}_conv/_{i}_bn ->
# stage{s}_block{b}_conv{i}/_bn{i}, conv{s+1}_block{b}_preact_bn -> ..._preact_bn;
# post_bn and predictions keep their names. Weight order is the same in both (kernel,
# bias; gamma, beta, moving mean, moving variance).

_APP_BLOCK = re.compile(r"^conv(\d+)_block(\d+)_(0_conv|0_bn|\d+_conv|\d+_bn|preact_bn)$")
KR_BLOCK = re.compile(r"^stage(\d+)_block(\d+)_(shortcut_conv|shortcut_bn|conv\d+|bn\d+|preact_bn)$")
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


def to_keras_applications_name(kr_name):
    """The keras.applications layer name of a keras_resnet layer (inverse of
    :func:`keras_applications_name`; other names unchanged)."""
    for app, kr in _APP_FIXED.items():
        if kr == kr_name:
            return app
    m = KR_BLOCK.match(kr_name)
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


def app_weight_names(layer, n):
    kinds = ["gamma", "beta", "moving_mean", "moving_variance"] if layer.endswith("bn") else ["kernel", "bias"]
    return [f"{layer}/{k}" for k in kinds[:n]]



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
BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
CONV_PARAMS = ("weight", "bias")
IGNORED = ("num_batches_tracked",)
PREFIXES = ("module.", "_orig_mod.", "model.")


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


def torch_key_for(layer, index, avg_down=False):
    module = _torch_module_of(layer, avg_down)
    params = BN_PARAMS if (layer.endswith("_bn") or re.search(r"_bn\d+$", layer)) else CONV_PARAMS
    return f"{module}.{params[index] if index < len(params) else index}"


