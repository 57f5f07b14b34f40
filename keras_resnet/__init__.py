"""keras_resnet: residual networks as Keras layers and models.

    import keras_resnet
    model = keras_resnet.ResNet50(weights=None, classes=10)
    block = keras_resnet.BasicBlock(64, strides=2, shortcut="A")
    deeper = keras_resnet.deepen(trained_resnet20, depth=56)   # same function, more blocks
"""

# Distribution "keras-residual" on PyPI (import name keras_resnet); calendar versions, so
# that no version is confused with the unrelated 2019 "keras-resnet" package (0.x).
__distribution__ = "keras-residual"
__version__ = "2026.11.0"

from .cli_util import quiet_commands as _quiet_commands

_quiet_commands()  # in keras_resnet's own commands, before TensorFlow is imported

from .layers import (  # noqa: F401
    BasicBlock,
    BottleneckBlock,
    DropPath,
    GroupedConv2D,
    FusedBatchNormalization,
    ProjectionShortcut,
    ZeroPadShortcut,
    basic_block,
    bottleneck_block,
)
from .growth import deepen  # noqa: F401
from .preprocessing import preprocess_input  # noqa: F401
from .models import NAMED_MODELS, VARIANT_MODELS, ResNet, feature_extractor, resnet_cifar, resnet_imagenet  # noqa: F401

globals().update(NAMED_MODELS)
globals().update(VARIANT_MODELS)

__all__ = [
    "BasicBlock", "BottleneckBlock", "DropPath", "GroupedConv2D", "FusedBatchNormalization", "ProjectionShortcut", "ZeroPadShortcut",
    "basic_block", "bottleneck_block", "ResNet", "feature_extractor",
    "resnet_cifar", "resnet_imagenet", "deepen", "preprocess_input", *NAMED_MODELS, *VARIANT_MODELS,
]
