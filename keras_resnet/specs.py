"""The tables everything else is built from: depths, block options, checkpoint layouts.

Plain data and the checks of it; nothing here imports Keras or TensorFlow.

* How a depth maps to stages: :data:`IMAGENET_DEPTHS` (block kind and blocks per stage),
  :data:`CIFAR_DEPTHS`, :data:`CIFAR_PREACT_DEPTHS`.
* The options of a residual block and their defaults, listed once:
  :data:`BASIC_OPTIONS`, :data:`BOTTLENECK_OPTIONS` (the block layers' arguments and
  ``get_config``), :data:`SPEC_OPTIONS` (what :class:`keras_resnet.layers` builds a block
  from; ``ResNet`` passes its own values of these).
* The accepted values of each choice (:data:`SHORTCUTS`, :data:`STEMS`, ...).
* The layout options each kind of public checkpoint fixes: :data:`KERAS_V1`,
  :data:`KERAS_V2`, :data:`TORCHVISION` (see :mod:`keras_resnet.weights`).
* Input preprocessing constants live in :mod:`keras_resnet.preprocessing`.
"""

# ----------------------------------------------------------------------------------------
# Depth -> stages

IMAGENET_DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
    200: ("bottleneck", [3, 24, 36, 3]),
}
IMAGENET_FILTERS = [64, 128, 256, 512]
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # 6n+2, basic blocks, 16/32/64 filters
CIFAR_PREACT_DEPTHS = (110, 164, 1001)  # 164, 1001: 9n+2 bottleneck blocks
CIFAR_FILTERS = [16, 32, 64]


def depth_of(block, blocks):
    """The ImageNet depth of ``block`` blocks per stage ``blocks`` (None if not a named one)."""
    for depth, (b, n) in IMAGENET_DEPTHS.items():
        if b == block and list(n) == list(blocks or ()):
            return depth
    return None


# ----------------------------------------------------------------------------------------
# Accepted values

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar", "deep")
SHORTCUTS = ("A", "B", "C")
ATTENTIONS = (None, "se", "eca")
GROUPED_CONV = ("auto", "native", "split", "keras")
STRIDE_ON = ("3x3", "1x1")
STRIDE_BLOCK = ("first", "last")
USE_BIAS = (False, True, "unnormalized")
OUTPUT_STRIDES = (None, 8, 16, 32)
POOLINGS = (None, "avg", "max")


def choice(name, value, accepted):
    if value not in accepted:
        shown = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"{name}={value!r} is not supported; accepted values: {shown}")
    return value


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is not supported; expected a positive integer")
    return value


def positive_list(name, values, length=None):
    if (
        not isinstance(values, (list, tuple))
        or not values
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)
    ):
        raise ValueError(f"{name}={values!r} is not supported; expected a list of positive integers")
    if length is not None and len(values) != length:
        raise ValueError(
            f"{name}={values!r} has {len(values)} entries; expected one per stage ({length})"
        )
    return list(values)


# ----------------------------------------------------------------------------------------
# Block options, listed once

# Arguments (beyond filters and strides) of ``basic_block`` / ``BasicBlock``, with defaults.
BASIC_OPTIONS = dict(
    shortcut="B", preact=False, zero_init=False, use_bias=False, bn_epsilon=1e-5,
    bn_momentum=0.9, residual=True, kernel_initializer="he_normal", avg_down=False,
    attention=None, drop_path=0.0, dilation=1,
)
# ``bottleneck_block`` / ``BottleneckBlock`` take these too.
BOTTLENECK_OPTIONS = dict(BASIC_OPTIONS, stride_on="3x3", expansion=4, groups=1, width_per_group=64)
# Everything one block is built from (``ResNet`` also sets these three per block).
SPEC_OPTIONS = dict(BOTTLENECK_OPTIONS, expansion=None, drop_path_seed=None, first_dilation=None,
                    grouped_conv="auto")
# Options that only a bottleneck block accepts (a basic block refuses other values).
BOTTLENECK_ONLY = ("stride_on", "expansion", "groups", "width_per_group", "grouped_conv")

# ----------------------------------------------------------------------------------------
# Checkpoint layouts: the ResNet options each kind of public checkpoint fixes

KERAS_V1 = dict(stem="imagenet", shortcut="B", preact=False, residual=True, stride_on="1x1",
                stride_block="first", use_bias=True, bn_epsilon=1.001e-5, bn_momentum=0.99)
KERAS_V2 = dict(stem="imagenet", shortcut="B", preact=True, residual=True, stride_on="3x3",
                stride_block="last", use_bias="unnormalized", bn_epsilon=1.001e-5, bn_momentum=0.99)
TORCHVISION = dict(stem="imagenet", shortcut="B", preact=False, residual=True,
                   stride_block="first", use_bias=False, bn_epsilon=1e-5, bn_momentum=0.9)
# ResNet options a checkpoint's weights fix (beyond its depth and widths).
LAYOUT_OPTIONS = ("stem", "preact", "residual", "shortcut", "stride_on", "stride_block",
                  "stackwise_strides", "use_bias", "bn_epsilon", "groups", "width_per_group",
                  "avg_down", "attention")
