"""A run's settings: :class:`TrainConfig`, the recipes (``PRESETS``) and their validation."""

import dataclasses
import math

from .. import data as kdata
from ..specs import MAX_CLASSES, MAX_INPUT_SIZE, check_memory

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# Recipes. batch_size is per replica; lr is for that batch (linear scaling rule).
PRESETS = {
    # The default job: CIFAR ResNet-20 on the 8x8 digits, about a minute on a laptop CPU.
    "digits": dict(
        model="resnet20", epochs=30, batch_size=64, lr=0.1, optimizer="sgd", momentum=0.9,
        nesterov=True, weight_decay=5e-4, schedule="cosine", warmup_epochs=1,
        label_smoothing=0.0, augment="shift",
    ),
    # He et al. 2015, section 4.2: batch 128, lr 0.1, momentum 0.9, weight decay 1e-4,
    # 64k iterations, lr / 10 at 32k and 48k; pad-4 random crops and flips.
    "cifar": dict(
        model="resnet20", iterations=64000, batch_size=128, lr=0.1, optimizer="sgd",
        momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="step",
        step_boundaries=(0.5, 0.75), warmup_epochs=0, label_smoothing=0.0, augment="cifar",
    ),
    # He et al. 2015, section 3.4 with the usual 90-epoch schedule (lr / 10 every 30).
    "imagenet": dict(
        model="resnet50", epochs=90, batch_size=256, lr=0.1, optimizer="sgd", momentum=0.9,
        nesterov=False, weight_decay=1e-4, schedule="step", step_boundaries=(1 / 3, 2 / 3),
        warmup_epochs=0, label_smoothing=0.0, augment="imagenet",
    ),
}
PRESET_FOR_AUGMENT = {"shift": "digits", "cifar": "cifar", "imagenet": "imagenet", "none": "imagenet"}


# The range of every numeric setting, inclusive ((low, high); a low in parentheses, such as
# lr's, is exclusive: see LOW_OPEN). The command line refuses a value outside it when it
# parses its flags, before any work; check_config refuses it for the Python API. The bounds
# are generous for real training (ImageNet's 90 epochs, the largest published batches of
# 32k-64k images over many replicas, LARS's peak rates of ~30) and keep every count
# (epochs x steps, warmup steps) an exact integer. docs/safety.md lists them.
MAX_EPOCHS = 100_000
MAX_STEPS = 10 ** 9
MAX_BATCH_SIZE = 65_536  # per replica
RANGES = {
    "image_size": (8, MAX_INPUT_SIZE), "num_classes": (2, MAX_CLASSES),
    "label_offset": (-MAX_CLASSES, MAX_CLASSES),
    "epochs": (1, MAX_EPOCHS), "iterations": (1, MAX_STEPS), "steps_per_epoch": (1, MAX_STEPS),
    "batch_size": (1, MAX_BATCH_SIZE), "lr": (0, 100), "weight_decay": (0, 1),
    "warmup_epochs": (0, MAX_EPOCHS), "freeze_epochs": (0, MAX_EPOCHS),
    "backbone_lr_mult": (0, 100), "cpu_replicas": (1, 256), "steps_per_execution": (1, 100_000),
    "checkpoint_steps": (1, MAX_STEPS), "seed": (0, 2 ** 32 - 1),
}
LOW_OPEN = ("lr", "backbone_lr_mult")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible run directory, ...)."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of a run. ``None`` fields take the preset's value (see ``PRESETS``)."""

    dataset: str = "digits"
    data_dir: str = None
    image_size: int = None
    num_classes: int = None
    label_offset: int = 0
    on_corrupt: str = "fail"
    download: bool = False
    preset: str = None
    model: str = None
    epochs: int = None
    iterations: int = None
    steps_per_epoch: int = None
    batch_size: int = None
    lr: float = None
    optimizer: str = None
    momentum: float = None
    nesterov: bool = None
    weight_decay: float = None
    schedule: str = None
    step_boundaries: tuple = None
    warmup_epochs: float = None
    label_smoothing: float = None
    augment: str = None
    val_split: float = 0.0
    init_from: str = None
    freeze_epochs: int = 0
    backbone_lr_mult: float = 1.0
    include_preprocessing: bool = True
    strategy: str = "auto"
    cpu_replicas: int = None
    sync_bn: bool = False
    precision: str = "float32"
    jit: bool = False
    steps_per_execution: int = 16
    checkpoint_steps: int = None
    seed: int = 0
    deterministic: bool = False
    run_dir: str = None
    overwrite: bool = False
    tensorboard: bool = True
    plot: bool = True
    verbose: int = 1

    def resolved(self, dataset):
        """A copy with every ``None`` filled from the preset for ``dataset``."""
        preset = self.preset or PRESET_FOR_AUGMENT[dataset.augment]
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is not supported; accepted: {', '.join(PRESETS)}")
        values = dict(PRESETS[preset])
        if self.epochs is not None and self.iterations is not None:
            raise ValueError(f"epochs={self.epochs!r} and iterations={self.iterations!r} both set "
                             "the length of training; give one of them")
        cfg = dataclasses.replace(self, preset=preset)
        for key, value in values.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        # The length given beats the preset's, whichever way the preset counts it.
        if self.epochs is not None:  # explicit epochs win over the preset's iterations
            cfg.iterations = None
        elif self.iterations is not None:  # explicit iterations win over the preset's epochs
            cfg.epochs = None
        if cfg.step_boundaries is None:
            cfg.step_boundaries = (0.5, 0.75)
        cfg.step_boundaries = tuple(float(b) for b in cfg.step_boundaries)
        return cfg


def check_config(cfg):
    def positive(name, integer=True, allow_none=False, zero=False):
        v = getattr(cfg, name)
        if v is None and allow_none:
            return
        ok = (isinstance(v, int) and not isinstance(v, bool)) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or v < 0 or (v == 0 and not zero) or (
                not integer and not math.isfinite(v)):
            kind = "integer" if integer else "number"
            raise ValueError(f"{name}={v!r} is not supported; expected a {'non-negative' if zero else 'positive'} {kind}")

    for name, choices in (("strategy", STRATEGIES), ("optimizer", OPTIMIZERS),
                          ("schedule", SCHEDULES), ("precision", PRECISIONS),
                          ("augment", kdata.AUGMENTATIONS), ("on_corrupt", ("fail", "skip"))):
        if getattr(cfg, name) not in choices:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not supported; accepted: {', '.join(choices)}")
    positive("batch_size")
    positive("epochs", allow_none=cfg.iterations is not None)
    positive("iterations", allow_none=True)
    positive("steps_per_epoch", allow_none=True)
    positive("steps_per_execution")
    positive("checkpoint_steps", allow_none=True)
    positive("cpu_replicas", allow_none=True)
    positive("lr", integer=False)
    positive("momentum", integer=False, zero=True)
    positive("weight_decay", integer=False, zero=True)
    positive("warmup_epochs", integer=False, zero=True)
    positive("freeze_epochs", zero=True)
    positive("backbone_lr_mult", integer=False)
    for name, (low, high) in RANGES.items():
        v = getattr(cfg, name)
        if v is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and not (
                (low < v if name in LOW_OPEN else low <= v) and v <= high):
            raise ValueError(f"{name}={v!r} is not supported; expected {_range(name)}")
    for name, default in (("freeze_epochs", 0), ("backbone_lr_mult", 1.0)):
        if getattr(cfg, name) != default and not cfg.init_from:
            raise ValueError(f"{name}={getattr(cfg, name)!r} applies to fine-tuning; pass "
                             "init_from (--init-from) with it")
    if cfg.backbone_lr_mult != 1.0 and cfg.optimizer != "sgd":
        raise ValueError(f"backbone_lr_mult={cfg.backbone_lr_mult!r} applies to optimizer "
                         f"'sgd' (it scales the backbone's gradients, which Adam's update "
                         f"ignores), not {cfg.optimizer!r}")
    if cfg.epochs and cfg.freeze_epochs > cfg.epochs:
        raise ValueError(f"freeze_epochs={cfg.freeze_epochs} is more than epochs={cfg.epochs}; "
                         "expected at most the number of epochs")
    if cfg.val_split:
        kdata.check_val_split(cfg.val_split)
    if not 0 <= cfg.label_smoothing < 1:
        raise ValueError(f"label_smoothing={cfg.label_smoothing!r} is not supported; expected 0 <= value < 1")
    if cfg.momentum >= 1:
        raise ValueError(f"momentum={cfg.momentum!r} is not supported; expected 0 <= value < 1")
    if any(not 0 < b < 1 for b in cfg.step_boundaries):
        raise ValueError(f"step_boundaries={cfg.step_boundaries!r}: expected fractions between 0 and 1")
    resolve_model(cfg.model)


def _range(name):
    low, high = RANGES[name]
    return f"a value in {'(' if name in LOW_OPEN else '['}{low:,}, {high:,}]"


def check_plan(cfg, input_shape, num_classes, host_batch):
    """Refuses, in one line and before the model is built, a warmup longer than training
    (``cfg.epochs`` is resolved by then, from --iterations too) and a batch whose images and
    logits alone clearly exceed this machine's memory."""
    if cfg.warmup_epochs > cfg.epochs:
        raise ValueError(f"warmup_epochs={cfg.warmup_epochs:g} (--warmup-epochs) is longer than "
                         f"training ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}); expected "
                         "at most the number of epochs")
    pixels = math.prod(int(d) for d in input_shape)
    check_memory(4 * host_batch * (pixels + int(num_classes)),
                 f"a training batch of {host_batch:,} images of {'x'.join(str(int(d)) for d in input_shape)} "
                 f"and {num_classes:,} classes (its float32 images and logits alone; the network's "
                 "activations come on top)", "lower --batch-size or --image-size")




# The imagenet recipe's batch (256) needs ~50 batches an epoch to train well; smaller
# training sets get a smaller batch with the learning rate scaled by the linear scaling rule
# (Goyal et al. 2017: lr 0.1 per 256 images), unless --batch-size or --lr is given.
SMALL_DATA_STEPS = 50
SMALL_DATA_MIN_BATCH = 8


def small_data_recipe(cfg, train_size, given):
    """Adapt the imagenet preset's batch size and lr to a small training set (in place);
    returns the message saying what was chosen, or None."""
    if cfg.preset != "imagenet" or not train_size or given:
        return None
    if train_size >= SMALL_DATA_STEPS * cfg.batch_size:
        return None
    batch = SMALL_DATA_MIN_BATCH
    while batch * 2 * SMALL_DATA_STEPS <= train_size and batch * 2 <= cfg.batch_size:
        batch *= 2
    batch = min(batch, max(1, train_size // 2))
    old_batch, old_lr = cfg.batch_size, cfg.lr
    cfg.batch_size, cfg.lr = batch, old_lr * batch / old_batch
    return (f"small training set ({train_size} images): batch size {batch} and lr {cfg.lr:g} "
            f"instead of the imagenet recipe's {old_batch} and {old_lr:g} (linear scaling rule); "
            "pass --batch-size and --lr to choose yourself")


def resolve_model(name):
    """A keras_resnet constructor by name: :func:`keras_resnet.registry.resolve_model`
    (``resnet20``, ``resnet50``, ``ResNet50D``, ``preactresnet110``, ...)."""
    from .. import registry  # not at the top: the CLI parses flags before TensorFlow loads

    return registry.resolve_model(name)
