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
* Limits before work (:data:`MAX_DEPTH` ... :func:`check_memory`).
"""

import os

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
# A network also accepts "first": a projection on the first block of every stage, identity
# elsewhere (keras-hub's ResNets, whose basic_block_vd projects in stage 1 as well).
MODEL_SHORTCUTS = SHORTCUTS + ("first",)
# How the stem's 3x3/2 max-pool pads: "zeros" (keras.applications), or "-inf" (PyTorch's
# and keras-hub's: a padded cell never wins; differs only where a window is all negative).
STEM_POOL_PADDINGS = ("zeros", "-inf")
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

# ----------------------------------------------------------------------------------------
# Limits, checked before anything is built or read, chosen from the largest real models:
# a number past one is a mistake or a hostile file, refused in one line (not minutes of work).

MAX_DEPTH = 1202  # ResNet-1202 (He et al. 2015), the deepest published ResNet
MAX_BLOCKS = 600  # its 3 x 200 basic blocks (PreAct ResNet-1001: 3 x 111 bottlenecks)
MAX_STAGES = 8  # real ResNets have 3 (CIFAR) or 4 (ImageNet) stages
MAX_FILTERS = 4096  # 8x the widest stage base of a real ResNet (512)
MAX_GROUPS = 1024  # ResNeXt-101 64x4d: 64 groups
MAX_WIDTH_PER_GROUP = 1024  # Wide ResNet-50-2: 128
MAX_CLASSES = 100_000  # ImageNet-21k: 21,841 classes
MAX_INPUT_SIZE = 4096  # height and width (ImageNet models take 224-600 pixels)
MAX_CHANNELS = 512
MAX_CONFIG_BYTES = 64 << 20  # a .keras file's config.json (a ResNet-152V2's is < 1 MiB)
MAX_TENSOR_BYTES = 4 << 30  # one tensor (a 2048 x 100,000 classifier is 0.8 GB)
MAX_CHECKPOINT_BYTES = 16 << 30  # a whole checkpoint (ResNet-200: 0.26 GB; checkpoints of a few GB)


def gib(n):
    return f"{n / (1 << 30):.3g} GiB"


def check_limits(blocks, filters, stem_filters=None, groups=1, width_per_group=64, classes=1):
    """Refuses, in one line, a network past the limits above (nothing is built)."""
    total = sum(blocks)
    if total > MAX_BLOCKS:
        raise ValueError(f"stackwise_num_blocks={list(blocks)} has {total} blocks; at most {MAX_BLOCKS} "
                         "are supported (ResNet-1202, the deepest published ResNet, has 600)")
    for name, values, limit in (("stackwise_num_filters", filters, MAX_FILTERS),
                                ("stem_filters", [stem_filters or 1], MAX_FILTERS),
                                ("groups", [groups], MAX_GROUPS),
                                ("width_per_group", [width_per_group], MAX_WIDTH_PER_GROUP),
                                ("classes", [classes], MAX_CLASSES)):
        if max(values) > limit:
            shown = list(values) if len(values) > 1 else values[0]
            raise ValueError(f"{name}={shown!r} is not supported; at most {limit:,} (a bound well "
                             "past the largest real ResNet)")


def check_depth(depth):
    if isinstance(depth, int) and not isinstance(depth, bool) and depth > MAX_DEPTH:
        raise ValueError(f"depth={depth!r} is not supported; at most {MAX_DEPTH} (ResNet-1202, the "
                         "deepest published ResNet)")
    return depth


def check_stage_count(name, values):
    if isinstance(values, (list, tuple)) and len(values) > MAX_STAGES:
        raise ValueError(f"{name} has {len(values)} entries; at most {MAX_STAGES} stages are supported")
    return values


def check_tensor_bytes(nbytes, what, total=None):
    """Refuses a tensor (or, with ``total``, a running total) that claims more than the limits."""
    if nbytes > MAX_TENSOR_BYTES:
        raise ValueError(f"{what} claims {gib(nbytes)}; at most {gib(MAX_TENSOR_BYTES)} per tensor "
                         "is supported")
    if total is not None and total > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{what}: the tensors so far claim {gib(total)}; at most "
                         f"{gib(MAX_CHECKPOINT_BYTES)} per checkpoint is supported")


def memory_bytes():
    """This machine's memory as a process may use it: the physical memory, or the control
    group's limit (a container's) when that is lower; None when unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if limit > 0 and (total is None or limit < total):
            total = limit
    return total


def check_memory(nbytes, what, advice):
    """Refuses, in one line, ``what`` when the ``nbytes`` it needs at the least already
    exceed this machine's memory (:func:`memory_bytes`): it could only fail later, after
    minutes of work or in an out-of-memory kill."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        raise ValueError(f"{what} needs at least {gib(nbytes)}, more than this machine's "
                         f"{gib(total)} of memory; {advice}")
