"""A run's settings: :class:`TrainConfig`, the recipes they resolve from (files, see
:mod:`.recipes`; ``PRESETS``: today's names) and their validation."""

import dataclasses
import math

from .. import data as kdata
from ..specs import MAX_CLASSES, MAX_INPUT_SIZE, check_memory
from .recipes import ALIASES, ConfigError, recipe_settings

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("sgd", "adamw", "lamb", "lars")
SCHEDULES = ("step", "cosine", "constant")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# Recipes are data: keras_resnet/recipes/<name>.yaml (see .recipes). batch_size is per
# replica; lr is for that batch (linear scaling rule). Today's --preset names are aliases.
PRESETS = {alias: recipe_settings(name) for alias, name in ALIASES.items()}
LOSSES = ("ce", "bce")
# The ingredients' settings when neither the recipe nor the user gives them: all off.
INGREDIENT_DEFAULTS = dict(
    rand_augment=None, trivial_augment=False, random_erasing=0.0, mixup_alpha=0.0,
    cutmix_alpha=0.0, mix_switch_prob=0.5, mix_prob=1.0, loss="ce", bce_target_threshold=None,
    ema_decay=0.0, repeated_augment=1, clip_grad_norm=0.0, model_kwargs={},
    train_image_ratio=None, momentum=0.9, nesterov=False,
)
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
    "train_image_size": (8, MAX_INPUT_SIZE), "repeated_augment": (1, 64),
    "random_erasing": (0, 1), "mixup_alpha": (0, 100), "cutmix_alpha": (0, 100),
    "mix_switch_prob": (0, 1), "mix_prob": (0, 1), "ema_decay": (0, 1),
    "clip_grad_norm": (0, 1e6), "train_image_ratio": (0, 4),
}
LOW_OPEN = ("lr", "backbone_lr_mult", "train_image_ratio")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible run directory, ...)."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of a run. ``None`` fields take the recipe's value (``recipe``, or the one
    the dataset implies: digits, he2015-cifar or he2015-imagenet), then the defaults
    (ingredients off)."""

    dataset: str = "digits"
    data_dir: str = None
    image_size: int = None
    num_classes: int = None
    label_offset: int = 0
    on_corrupt: str = "fail"
    download: bool = False
    preset: str = None  # today's names: digits, cifar, imagenet (aliases of recipes)
    recipe: str = None
    model: str = None
    model_kwargs: dict = None
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
    train_image_size: int = None
    train_image_ratio: float = None
    rand_augment: str = None
    trivial_augment: bool = None
    random_erasing: float = None
    mixup_alpha: float = None
    cutmix_alpha: float = None
    mix_switch_prob: float = None
    mix_prob: float = None
    loss: str = None
    bce_target_threshold: float = None
    ema_decay: float = None
    repeated_augment: int = None
    clip_grad_norm: float = None
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

    def recipe_name(self, dataset=None):
        """The recipe this run takes its unset settings from."""
        if self.preset is not None and self.preset not in ALIASES:
            raise ValueError(f"preset={self.preset!r} is not supported; accepted: "
                             f"{', '.join(ALIASES)} (or recipe=NAME)")
        alias = ALIASES.get(self.preset) if self.preset else None
        if self.recipe is not None and alias is not None and alias != self.recipe:
            raise ValueError(f"preset={self.preset!r} (recipe {alias!r}) and recipe={self.recipe!r} "
                             "disagree; give one of them")
        name = self.recipe or alias
        if name is None and dataset is not None:
            name = ALIASES[PRESET_FOR_AUGMENT[dataset.augment]]
        return ALIASES.get(name, name)

    def resolved(self, dataset):
        """A copy with every ``None`` filled from the recipe, then the defaults."""
        name = self.recipe_name(dataset)
        try:
            values = recipe_settings(name)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        preset = {r: a for a, r in ALIASES.items()}.get(name)
        if self.epochs is not None and self.iterations is not None:
            raise ValueError(f"epochs={self.epochs!r} and iterations={self.iterations!r} both set "
                             "the length of training; give one of them")
        cfg = dataclasses.replace(self, preset=preset, recipe=name)
        for key, value in values.items():
            if key == "model_kwargs":  # the user's options win, key by key
                cfg.model_kwargs = {**(value or {}), **(self.model_kwargs or {})}
            elif getattr(cfg, key) is None:
                setattr(cfg, key, value)
        for key, value in INGREDIENT_DEFAULTS.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, dict(value) if isinstance(value, dict) else value)
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
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss={cfg.loss!r} is not supported; accepted: {', '.join(LOSSES)}")
    if cfg.bce_target_threshold is not None and (cfg.loss != "bce" or not (
            isinstance(cfg.bce_target_threshold, (int, float)) and 0 <= cfg.bce_target_threshold < 1)):
        raise ValueError(f"bce_target_threshold={cfg.bce_target_threshold!r}: expected a number in "
                         "[0, 1) with loss='bce'")
    if cfg.rand_augment is not None and not isinstance(cfg.rand_augment, str):
        raise ValueError(f"rand_augment={cfg.rand_augment!r}: expected a spec such as "
                         "'rand-m9-mstd0.5-inc1'")
    if cfg.rand_augment and cfg.trivial_augment:
        raise ValueError("rand_augment and trivial_augment are two policies for the same place; "
                         "give one of them")
    for name in ("trivial_augment",):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name}={getattr(cfg, name)!r}: expected true or false")
    for name in ("random_erasing", "mixup_alpha", "cutmix_alpha", "mix_switch_prob", "mix_prob",
                 "ema_decay", "clip_grad_norm", "train_image_ratio"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{name}={v!r} is not supported; expected a number ({_range(name)})")
    for name in ("repeated_augment", "train_image_size"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"{name}={v!r} is not supported; expected an integer ({_range(name)})")
    if cfg.ema_decay and cfg.ema_decay >= 1:
        raise ValueError(f"ema_decay={cfg.ema_decay!r}: expected 0 (off) or a decay in (0, 1)")
    if cfg.mix_prob and not (cfg.mixup_alpha or cfg.cutmix_alpha) and cfg.mix_prob != 1.0:
        raise ValueError("mix_prob applies to mixup or cutmix; set mixup_alpha or cutmix_alpha")
    resolve_model(cfg.model)
    if cfg.rand_augment:
        from ..data.randaug import parse_rand_augment

        parse_rand_augment(cfg.rand_augment)  # a bad spec: ValueError naming the key
    from .recipes import check_model_kwargs

    try:
        check_model_kwargs(cfg.model, cfg.model_kwargs)
    except ConfigError as e:
        raise ValueError(str(e)) from None


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


IMAGENET_RECIPES = ("he2015-imagenet", "torchvision-v1", "torchvision-v2", "rsb-a1", "rsb-a2",
                    "rsb-a3")


def shortened_warmup(cfg):
    """A recipe's warmup that does not fit a run shortened with --epochs or --iterations is
    shortened with it, in proportion (``warmup x epochs / the recipe's epochs``), in place;
    returns the message saying so, or None. A warmup the user gave is never changed
    (:func:`check_plan` refuses one longer than training)."""
    full = recipe_settings(cfg.recipe).get("epochs") if cfg.recipe else None
    if not cfg.warmup_epochs or cfg.warmup_epochs <= cfg.epochs or not full or full <= cfg.epochs:
        return None
    old = cfg.warmup_epochs
    cfg.warmup_epochs = old * cfg.epochs / full
    return (f"warmup {cfg.warmup_epochs:.3g} epochs: the {cfg.recipe} recipe's {old:g} of its "
            f"{full:g} epochs, scaled to this run's {cfg.epochs}; pass --warmup-epochs to choose")


def small_data_recipe(cfg, train_size, given):
    """Adapt an ImageNet recipe's batch size and lr to a small training set (in place);
    returns the message saying what was chosen, or None."""
    if cfg.recipe not in IMAGENET_RECIPES or not train_size or given:
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
            f"instead of the {cfg.recipe} recipe's {old_batch} and {old_lr:g} (linear scaling rule); "
            "pass --batch-size and --lr to choose yourself")


def resolve_model(name):
    """A keras_resnet constructor by name: :func:`keras_resnet.registry.resolve_model`
    (``resnet20``, ``resnet50``, ``ResNet50D``, ``preactresnet110``, ...)."""
    from .. import registry  # not at the top: the CLI parses flags before TensorFlow loads

    return registry.resolve_model(name)
