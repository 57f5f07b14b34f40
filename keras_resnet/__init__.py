"""keras_resnet: residual networks as Keras layers and models.

    import keras_resnet
    model = keras_resnet.ResNet50(weights=None, classes=10)
    block = keras_resnet.BasicBlock(64, strides=2, shortcut="A")
"""

__version__ = "0.1.0"

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
from .models import NAMED_MODELS, VARIANT_MODELS, ResNet, feature_extractor, resnet_cifar, resnet_imagenet  # noqa: F401

globals().update(NAMED_MODELS)
globals().update(VARIANT_MODELS)

__all__ = [
    "BasicBlock", "BottleneckBlock", "DropPath", "GroupedConv2D", "FusedBatchNormalization", "ProjectionShortcut", "ZeroPadShortcut",
    "basic_block", "bottleneck_block", "ResNet", "feature_extractor",
    "resnet_cifar", "resnet_imagenet", *NAMED_MODELS, *VARIANT_MODELS,
]
