"""keras_resnet: residual networks as Keras layers and models.

    import keras_resnet
    model = keras_resnet.ResNet50(weights=None, classes=10)
    block = keras_resnet.BasicBlock(64, strides=2, shortcut="A")
    deeper = keras_resnet.deepen(trained_resnet20, depth=56)   # same function, more blocks
    mine = keras_resnet.fine_tune("resnet18.keras", classes=3)   # same backbone, new head
    keras_resnet.list_models("*50*")                          # the registry's names
    timm = keras_resnet.create_model("resnet50d.ra2_in1k", checkpoint_path="w.safetensors")
    hub = keras_resnet.from_preset("resnet_50_imagenet/")     # a keras-hub preset directory
    keras_resnet.explain.grad_cam(model, images)              # what the model looks at

The names below are imported on first use (PEP 562), so ``import keras_resnet`` changes
nothing of the host process (no environment variable, file descriptor or ``sys.argv``)
and a command can print its ``--help`` without loading TensorFlow. keras_resnet's layers
and models are registered with Keras as soon as both are imported, in either order (or
Keras through TensorFlow), so ``keras.saving.load_model(...)`` loads keras_resnet models
after ``import keras_resnet``; docs/layout.md says how.
"""

import warnings

# Distribution "keras-residual" on PyPI (import name keras_resnet); calendar versions, so
# that no version is confused with the unrelated 2019 "keras-resnet" package (0.x).
__distribution__ = "keras-residual"
__version__ = "2026.11.0"

from ._lazy import after_import, attach, table  # noqa: E402

_NAMES = table(
    layers=("BasicBlock", "BottleneckBlock", "DropPath", "GroupedConv2D", "FusedBatchNormalization",
            "ProjectionShortcut", "ZeroPadShortcut", "basic_block", "bottleneck_block"),
    growth=("deepen",),
    finetune=("fine_tune", "set_backbone_trainable"),
    preprocessing=("preprocess_input",),
    registry=("list_models", "resolve_model"),
    pretrained=("create_model", "list_pretrained"),
    presets=("from_preset", "save_to_preset"),
    pyramid=("pyramid_outputs", "feature_pyramid"),
    models=(
        "ResNet", "feature_extractor", "resnet_cifar", "resnet_imagenet",
        "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200",
        "PreActResNet18", "PreActResNet34", "PreActResNet50", "PreActResNet101",
        "PreActResNet152", "PreActResNet200", "ResNet20CIFAR", "ResNet32CIFAR", "ResNet44CIFAR",
        "ResNet56CIFAR", "ResNet110CIFAR", "ResNet1202CIFAR", "PreActResNet110CIFAR",
        "PreActResNet164CIFAR", "PreActResNet1001CIFAR", "ResNet18D", "ResNet34D", "ResNet50D",
        "ResNet101D", "ResNet152D", "ResNet200D", "ResNeXt50_32x4d", "ResNeXt101_32x8d",
        "ResNeXt101_64x4d", "WideResNet50_2", "WideResNet101_2", "SEResNet50", "SEResNet101",
        "ECAResNet50D"),
)
_SUBMODULES = ("data", "export", "explain", "files", "finetune", "growth", "layers", "models",
               "preprocessing", "pretrained", "presets", "pyramid", "registry", "specs", "training",
               "weights", "experiments")
__getattr__, __dir__ = attach(__name__, _NAMES, _SUBMODULES)

__all__ = [
    "BasicBlock", "BottleneckBlock", "DropPath", "GroupedConv2D", "FusedBatchNormalization", "ProjectionShortcut",
    "ZeroPadShortcut", "basic_block", "bottleneck_block", "ResNet", "feature_extractor",
    "resnet_cifar", "resnet_imagenet", "deepen", "fine_tune", "set_backbone_trainable",
    "preprocess_input", "list_models", "resolve_model", "create_model", "list_pretrained",
    "from_preset", "save_to_preset", "pyramid_outputs", "feature_pyramid",
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet200", "PreActResNet18",
    "PreActResNet34", "PreActResNet50", "PreActResNet101", "PreActResNet152", "PreActResNet200",
    "ResNet20CIFAR", "ResNet32CIFAR", "ResNet44CIFAR", "ResNet56CIFAR", "ResNet110CIFAR",
    "ResNet1202CIFAR", "PreActResNet110CIFAR", "PreActResNet164CIFAR", "PreActResNet1001CIFAR",
    "ResNet18D", "ResNet34D", "ResNet50D", "ResNet101D", "ResNet152D", "ResNet200D",
    "ResNeXt50_32x4d", "ResNeXt101_32x8d", "ResNeXt101_64x4d", "WideResNet50_2",
    "WideResNet101_2", "SEResNet50", "SEResNet101", "ECAResNet50D",
]


def _register_with_keras():
    """Registers keras_resnet's layers and models with Keras (by importing
    :mod:`keras_resnet.models`), so that ``keras.saving.load_model`` finds them."""
    try:
        from . import models  # noqa: F401
    except Exception as e:  # never fail the user's own ``import keras`` for it
        warnings.warn(f"keras_resnet could not register its layers and models with Keras "
                      f"({type(e).__name__}: {e}); import keras_resnet.models to see why",
                      RuntimeWarning, stacklevel=2)


# Keras libraries register their classes with Keras on import. keras_resnet does so without
# importing Keras itself: now if Keras is loaded already, else right after Keras is imported
# (a post-import hook: one finder at the head of sys.meta_path, gone once it has fired).
after_import(("keras", "tf_keras"), _register_with_keras)
