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
from .registry import list_models, resolve_model  # noqa: F401
from .models import ResNet, feature_extractor, resnet_cifar, resnet_imagenet  # noqa: F401
from .models import (  # noqa: F401
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNet200, PreActResNet18,
    PreActResNet34, PreActResNet50, PreActResNet101, PreActResNet152, PreActResNet200,
    ResNet20CIFAR, ResNet32CIFAR, ResNet44CIFAR, ResNet56CIFAR, ResNet110CIFAR, ResNet1202CIFAR,
    PreActResNet110CIFAR, PreActResNet164CIFAR, PreActResNet1001CIFAR, ResNet18D, ResNet34D,
    ResNet50D, ResNet101D, ResNet152D, ResNet200D, ResNeXt50_32x4d, ResNeXt101_32x8d,
    ResNeXt101_64x4d, WideResNet50_2, WideResNet101_2, SEResNet50, SEResNet101, ECAResNet50D,
)

__all__ = [
    "BasicBlock", "BottleneckBlock", "DropPath", "GroupedConv2D", "FusedBatchNormalization", "ProjectionShortcut",
    "ZeroPadShortcut", "basic_block", "bottleneck_block", "ResNet", "feature_extractor",
    "resnet_cifar", "resnet_imagenet", "deepen", "preprocess_input", "list_models",
    "resolve_model",
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200", "PreActResNet18",
    "PreActResNet34", "PreActResNet50", "PreActResNet101", "PreActResNet152", "PreActResNet200",
    "ResNet20CIFAR", "ResNet32CIFAR", "ResNet44CIFAR", "ResNet56CIFAR", "ResNet110CIFAR",
    "ResNet1202CIFAR", "PreActResNet110CIFAR", "PreActResNet164CIFAR", "PreActResNet1001CIFAR",
    "ResNet18D", "ResNet34D", "ResNet50D", "ResNet101D", "ResNet152D", "ResNet200D",
    "ResNeXt50_32x4d", "ResNeXt101_32x8d", "ResNeXt101_64x4d", "WideResNet50_2",
    "WideResNet101_2", "SEResNet50", "SEResNet101", "ECAResNet50D",
]
