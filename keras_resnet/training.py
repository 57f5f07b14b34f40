"""Training with ``tf.distribute``: one custom loop for every strategy.

    from keras_resnet.training import TrainConfig, train
    result = train(TrainConfig(dataset="digits", run_dir="runs/digits"))
    print(result.test_accuracy, result.run_dir)

Why one custom loop: Keras 3 ``Model.fit`` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585) while ``strategy.run`` inside a ``tf.function`` works for
one device, MirroredStrategy, MultiWorkerMirroredStrategy and TPUStrategy alike. The
loop runs ``steps_per_execution`` steps per ``tf.function`` call (a ``tf.range`` loop),
so the host is not a bottleneck on accelerators.

Batch size and learning rate follow the linear scaling rule: ``batch_size`` is per
replica (global batch = ``batch_size x replicas``) and ``lr`` is the rate for one
replica's batch (effective rate = ``lr x replicas``). Epoch counts are unchanged.

BatchNormalization statistics: the moving mean/variance are updated by each replica from
its own batch; unless ``sync_bn=True`` they differ between replicas (trainable weights
never do: gradients are all-reduced). What is saved (``best.keras``, ``last.keras``,
checkpoints) is the chief's first replica's statistics, or, with ``sync_bn=True``,
statistics of the global batch, identical on every replica.

Run directory layout (written by the chief only, every file atomically):

=====================  ==============================================================
``run.json``           dataset facts (``input_shape``, ``num_classes``, ``class_names``,
                       ``preprocessing``), ``outputs`` ("probabilities"), the settings,
                       ``test_accuracy`` of ``last.keras``, ``best`` (epoch, accuracy)
``best.keras``         the model with the best validation accuracy so far (``val_split``;
                       without it, test accuracy), float32, softmax outputs, no
                       preprocessing
``last.keras``         the model after the last finished epoch
``metrics.csv``        one row per finished epoch
``checkpoint.npz``     weights, optimizer state, epoch/step and history: resuming state
``curves.png``         training curves
``tensorboard/``       TensorBoard event files
=====================  ==============================================================

Rerunning the same command resumes from ``checkpoint.npz``: the data order and every
augmentation draw are functions of ``(seed, epoch, example index)``, so a resumed run
sees the same batches as an uninterrupted one, and no finished epoch is lost or repeated.
"""

import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import os
import re
import time

import numpy as np

from . import data as kdata
from . import files

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
        cfg = dataclasses.replace(self, preset=preset)
        for key, value in values.items():
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
        if self.epochs is not None:  # explicit epochs win over the preset's iterations
            cfg.iterations = self.iterations
        if cfg.step_boundaries is None:
            cfg.step_boundaries = (0.5, 0.75)
        cfg.step_boundaries = tuple(float(b) for b in cfg.step_boundaries)
        return cfg


def _check_config(cfg):
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
    if cfg.val_split:
        kdata._check_fraction(cfg.val_split)
    if not 0 <= cfg.label_smoothing < 1:
        raise ValueError(f"label_smoothing={cfg.label_smoothing!r} is not supported; expected 0 <= value < 1")
    if cfg.momentum >= 1:
        raise ValueError(f"momentum={cfg.momentum!r} is not supported; expected 0 <= value < 1")
    if any(not 0 < b < 1 for b in cfg.step_boundaries):
        raise ValueError(f"step_boundaries={cfg.step_boundaries!r}: expected fractions between 0 and 1")
    resolve_model(cfg.model)


# ----------------------------------------------------------------------------------------
# Strategy


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e


def make_strategy(name="auto", cpu_replicas=None):
    """A ``tf.distribute`` strategy.

    ``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names more than one task,
    else MirroredStrategy when more than one GPU (or ``cpu_replicas`` > 1) is visible,
    else OneDeviceStrategy. ``mirrored`` uses every visible GPU, or ``cpu_replicas``
    logical CPU devices on a machine without GPUs. ``multi_worker`` reads the cluster
    from ``TF_CONFIG``. ``tpu`` connects to the TPU named by the environment.
    ``cpu_replicas`` splits the CPU into that many logical devices (must be set before
    TensorFlow starts its runtime): a way to exercise MirroredStrategy without GPUs.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not supported; accepted: {', '.join(STRATEGIES)}")
    if cpu_replicas and cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError as e:
            raise RuntimeError(f"cpu_replicas must be set before TensorFlow initialises: {e}") from e
    tf_config = _tf_config()
    if name == "auto":
        cluster = (tf_config or {}).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
    if name == "multi_worker":
        # Before anything lists devices: collectives must be configured at startup.
        if not tf_config or "cluster" not in tf_config or "task" not in tf_config:
            raise ValueError("strategy 'multi_worker' needs TF_CONFIG with 'cluster' and 'task' "
                             "(see tf.distribute.cluster_resolver.TFConfigClusterResolver)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 or (not gpus and len(cpus) > 1) else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in (gpus or cpus)]
        return tf.distribute.MirroredStrategy(devices)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy):
    """The public ``tf.distribute`` class name of ``strategy``."""
    import tensorflow as tf

    for cls in ("TPUStrategy", "MultiWorkerMirroredStrategy", "MirroredStrategy",
                "OneDeviceStrategy"):
        if isinstance(strategy, getattr(tf.distribute, cls)):
            return cls
    return type(strategy).__name__


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


# ----------------------------------------------------------------------------------------
# Model, optimizer, schedule


def resolve_model(name):
    """A keras_resnet constructor from ``resnet20``, ``resnet50``, ``ResNet56CIFAR``,
    ``preactresnet110cifar``, ... (case-insensitive; CIFAR and ImageNet depths never
    clash, so ``resnet20`` is CIFAR ResNet-20 and ``resnet50`` ImageNet ResNet-50)."""
    from . import models

    names = {k.lower(): v for k, v in models.NAMED_MODELS.items()}
    if isinstance(name, str):
        key = name.lower().replace("-", "").replace("_", "")
        if key in names:
            return names[key]
        if key + "cifar" in names and key not in names:
            return names[key + "cifar"]
        # plain20, plain56, resnet8, preactresnet56cifar, ...: any depth of a family.
        m = re.fullmatch(r"(plain|resnet|preactresnet)(\d+)(cifar)?", key)
        if m:
            depth, kind = int(m.group(2)), m.group(1)
            options = dict(plain=kind == "plain", preact=kind == "preactresnet")
            if depth in models.IMAGENET_DEPTHS and not m.group(3):
                return functools.partial(models.resnet_imagenet, depth, **options)
            if depth >= 8 and (depth - 2) % 6 == 0:
                return functools.partial(models.resnet_cifar, depth, **options)
    raise ValueError(
        f"model={name!r} is not supported; accepted: resnet20/32/44/56/110/1202 (CIFAR, any "
        "6n+2), resnet18/34/50/101/152/200 (ImageNet), plain<depth> for the plain network "
        "(e.g. plain20, plain56), or a constructor name such as "
        f"{', '.join(sorted(models.NAMED_MODELS)[:4])}, ..."
    )


def build_model(name, input_shape, num_classes, classifier_activation="softmax", sync_bn=False,
                preprocessing=None):
    """The keras_resnet model ``name`` for ``input_shape``/``num_classes``; with
    ``preprocessing`` (``{"scale", "offset"}``) it is inside the model, which takes pixels."""
    extra = {} if preprocessing is None else dict(include_preprocessing=True, preprocessing=preprocessing)
    model = resolve_model(name)(input_shape=tuple(input_shape), classes=num_classes,
                                classifier_activation=classifier_activation, **extra)
    if sync_bn:
        from ._compat import keras

        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    return model


def _schedule_class():
    from ._compat import keras

    class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warmup from 0, then ``step`` (÷10 at each boundary), ``cosine`` (to 0)
        or ``constant``; ``total_steps`` counts the warmup too."""

        def __init__(self, lr, total_steps, warmup_steps=0, kind="step", boundaries=(0.5, 0.75)):
            self.lr = float(lr)
            self.total_steps = int(total_steps)
            self.warmup_steps = int(warmup_steps)
            self.kind = kind
            self.boundaries = tuple(float(b) for b in boundaries)

        def __call__(self, step):
            ops = keras.ops
            step = ops.cast(step, "float32")
            total = float(max(self.total_steps, 1))
            if self.kind == "step":
                factor = ops.ones_like(step)
                for b in self.boundaries:
                    factor = factor * ops.where(step >= b * total, 0.1, 1.0)
                lr = self.lr * factor
            elif self.kind == "cosine":
                start = float(self.warmup_steps)
                progress = ops.clip((step - start) / max(total - start, 1.0), 0.0, 1.0)
                lr = self.lr * 0.5 * (1.0 + ops.cos(math.pi * progress))
            else:
                lr = self.lr * ops.ones_like(step)
            if self.warmup_steps > 0:
                warm = self.lr * (step + 1.0) / float(self.warmup_steps)
                lr = ops.where(step < self.warmup_steps, warm, lr)
            return lr

        def get_config(self):
            return dict(lr=self.lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                        kind=self.kind, boundaries=list(self.boundaries))

    return WarmupSchedule


def learning_rate_schedule(lr, total_steps, warmup_steps=0, kind="step", boundaries=(0.5, 0.75)):
    """A Keras ``LearningRateSchedule``: linear warmup, then step (÷10 at ``boundaries``,
    fractions of ``total_steps``), cosine or constant."""
    if kind not in SCHEDULES:
        raise ValueError(f"schedule={kind!r} is not supported; accepted: {', '.join(SCHEDULES)}")
    return _schedule_class()(lr, total_steps, warmup_steps, kind, boundaries)


def decayed_variables(model):
    """Variables weight decay applies to: kernels only (BN gammas/betas and biases are
    1-D and skipped)."""
    return [v for v in model.trainable_variables if len(v.shape) > 1]


def make_optimizer(cfg, schedule, model):
    """SGD with momentum (weight decay as an L2 term in the loss, as in the paper) or
    AdamW (decoupled weight decay); both skip BN parameters and biases. Wrapped in a
    ``LossScaleOptimizer`` for ``mixed_float16``."""
    from ._compat import keras

    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum,
                                   nesterov=bool(cfg.nesterov))
    else:
        opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
        decayed = {id(v) for v in decayed_variables(model)}
        opt.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in decayed])
    if cfg.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


# ----------------------------------------------------------------------------------------
# Files


def _atomic_write(path, write, suffix=""):
    """Calls ``write(tmp_path)``; the temporary file then replaces ``path`` in one rename."""
    with files.atomic_path(path, suffix=suffix) as tmp:
        write(tmp)


def _write_text(path, text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(path, write)


def _save_keras(model, path):
    # Keras insists on a ".keras" file name; the temporary name keeps it.
    _atomic_write(path, lambda tmp: model.save(tmp), suffix=".keras")


CSV_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "lr", "seconds",
              "images_per_second")
VAL_FIELDS = ("val_loss", "val_accuracy")  # appended when the run has a validation split


def _write_csv(path, history):
    fields = CSV_FIELDS + (VAL_FIELDS if history and "val_accuracy" in history[0] else ())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in fields})
    _write_text(path, buf.getvalue())


def read_metrics(path):
    """Rows of a run's ``metrics.csv`` as dicts of numbers."""
    with open(path) as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot_history(history, path):
    """Loss and accuracy curves (train, validation if any, test) to a PNG, atomically."""
    import matplotlib.pyplot as plt

    fig = _curves_figure(history)
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80), suffix=".png")
    plt.close(fig)


def _curves_figure(history):
    """The figure of :func:`plot_history`: loss (log scale) and accuracy by whole epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r["loss"] for r in history], label="train")
    if "val_loss" in history[0]:
        ax1.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax1.plot(epochs, [r["test_loss"] for r in history], label="test")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(epochs, [r["accuracy"] for r in history], label="train")
    if "val_accuracy" in history[0]:
        ax2.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
    ax2.plot(epochs, [r["test_accuracy"] for r in history], label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    return fig


RESUME_KEYS = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "momentum",
               "nesterov", "weight_decay", "schedule", "step_boundaries", "warmup_epochs",
               "label_smoothing", "augment", "seed", "precision", "sync_bn", "val_split",
               "init_from", "include_preprocessing")
ADDED_SETTINGS = {"val_split": 0.0, "init_from": None, "include_preprocessing": False}  # settings newer than some checkpoints: their old value


def _save_checkpoint(path, model, optimizer, meta):
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)


def _load_checkpoint(path):
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            weights = [z[f"w{i}"] for i in range(meta["num_weights"])]
            opt = [z[f"o{i}"] for i in range(meta["num_optimizer_variables"])]
    except Exception as e:  # noqa: BLE001 - truncated zip, missing arrays, bad JSON, ...
        raise TrainingError(
            f"the checkpoint {path} is unreadable ({type(e).__name__}: {e}); remove it to start "
            "the run again from its first epoch, or pass --overwrite") from None
    return meta, weights, opt


# ----------------------------------------------------------------------------------------
# The loop


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    test_accuracy: float
    history: list
    best: dict
    model: object = None  # the training model (lives in the strategy)
    strategy: object = None


def _log(cfg, chief):
    def log(msg):
        if chief and cfg.verbose:
            print(msg, flush=True)

    return log


def default_run_dir(cfg):
    name = cfg.dataset.replace(":", "_").replace("/", "_")
    return os.path.join("runs", f"{name}_{cfg.model}")


class _RunLock:
    """An exclusive lock on a run directory for the life of one training run: ``flock`` on
    the directory itself (no lock file), which the kernel releases when the process ends, so
    a killed run never leaves it stuck."""

    def __init__(self):
        self.fd = None

    def acquire(self, run_dir):
        import fcntl

        self.fd = os.open(run_dir, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise TrainingError(f"{run_dir} is in use by another training run; wait for it to "
                                "finish, or use another --run-dir") from None

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None




def train(config=None, **overrides):
    """Trains (or resumes) the run described by ``config`` (a :class:`TrainConfig`, or
    keyword arguments); returns a :class:`TrainResult`. See the module docstring."""
    lock = _RunLock()
    try:
        return _train(dataclasses.replace(config or TrainConfig(), **overrides), lock)
    finally:
        lock.release()


def _train(cfg, lock):
    # The strategy comes first: multi-worker collectives must start before other TF work.
    strategy = make_strategy(cfg.strategy, cfg.cpu_replicas)
    import tensorflow as tf

    from ._compat import keras

    chief = is_chief(strategy)
    log = _log(cfg, chief)
    dataset = kdata.get_dataset(
        cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size,
        num_classes=cfg.num_classes, on_corrupt=cfg.on_corrupt, download=cfg.download,
        label_offset=cfg.label_offset, progress=log)
    given = {k for k in ("batch_size", "lr") if getattr(cfg, k) is not None}
    cfg = cfg.resolved(dataset)
    _check_config(cfg)
    adapted = _small_data_recipe(cfg, dataset.sizes.get("train"), given)
    if adapted:
        log(adapted)
    if cfg.val_split:
        dataset = kdata.with_validation(dataset, cfg.val_split)
    run_dir = cfg.run_dir or default_run_dir(cfg)
    cfg.run_dir = run_dir

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    lr = cfg.lr * replicas  # linear scaling rule
    workers = _num_workers(strategy)
    train_size = dataset.sizes.get("train")
    if cfg.steps_per_epoch:
        steps_per_epoch = cfg.steps_per_epoch
    else:
        if train_size is None:
            log("counting training records (pass --steps-per-epoch to skip this)...")
            train_size = int(dataset.examples("train").reduce(np.int64(0), lambda n, _: n + 1))
        steps_per_epoch = (train_size // workers) // (global_batch // workers)
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size={cfg.batch_size} x {replicas} replicas = {global_batch} "
                             f"is larger than the training set ({train_size} images); lower --batch-size")
    epochs = cfg.epochs or math.ceil(cfg.iterations / steps_per_epoch)
    cfg.epochs = epochs
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))

    # Run directory: fresh, or resume a compatible run.
    ckpt_path = os.path.join(run_dir, "checkpoint.npz")
    settings = {k: getattr(cfg, k) for k in RESUME_KEYS}
    settings["step_boundaries"] = list(cfg.step_boundaries)
    settings.update(global_batch=global_batch, steps_per_epoch=steps_per_epoch)
    resume = None
    if os.path.exists(ckpt_path) and not cfg.overwrite:
        resume = _load_checkpoint(ckpt_path)
        old = resume[0]["settings"]
        diff = sorted(k for k in settings if old.get(k, ADDED_SETTINGS.get(k)) != settings[k])
        if diff == ["lr"]:  # the one change a resume allows: the usual fix for divergence
            log(f"resuming with --lr {settings['lr']:g} (the run so far used {old['lr']:g}); "
                "the schedule continues from the current step with the new base rate")
        elif diff:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in diff)
            raise TrainingError(
                f"{run_dir} holds a run with different settings ({detail}); use another "
                "--run-dir, or --overwrite to start it again")
    source = None
    if cfg.init_from and resume is None:
        from .growth import init_from_source, load_source

        source, source_path = load_source(cfg.init_from)
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    try:
        with strategy.scope():
            model = build_model(cfg.model, dataset.input_shape, dataset.num_classes,
                                classifier_activation=None, sync_bn=cfg.sync_bn)
            init_info = (init_from_source(source, source_path, model, cfg.init_from)
                         if source is not None else None)
            schedule = learning_rate_schedule(lr, total_steps, warmup_steps, cfg.schedule,
                                              cfg.step_boundaries)
            optimizer = make_optimizer(cfg, schedule, model)
            optimizer.build(model.trainable_variables)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    # Float32 model with softmax outputs: what is evaluated and saved.
    # The saved models (best.keras, last.keras): softmax outputs, and by default the
    # preprocessing inside, so they take pixels in 0..255.
    host = build_model(cfg.model, dataset.input_shape, dataset.num_classes, "softmax",
                       preprocessing=dataset.preprocessing if cfg.include_preprocessing else None)
    if chief:  # only now: bad settings above leave nothing behind
        os.makedirs(run_dir, exist_ok=True)
        lock.acquire(run_dir)
        files.remove_stale_temporaries(run_dir, log)
        if cfg.overwrite:
            for f in ("checkpoint.npz", "metrics.csv", "best.keras", "last.keras", "run.json",
                      "curves.png"):
                if os.path.exists(os.path.join(run_dir, f)):
                    os.remove(os.path.join(run_dir, f))

    start_epoch, start_step, history, best = 0, 0, [], {"epoch": 0, "test_accuracy": -1.0}
    acc_state = [0.0, 0.0, 0.0]
    if resume is not None:
        meta, weights, opt_values = resume
        with strategy.scope():
            model.set_weights(weights)
            for v, value in zip(optimizer.variables, opt_values):
                v.assign(value)
        start_epoch, start_step = meta["epoch"], meta["step"]
        history, best, acc_state = meta["history"], meta["best"], meta["accumulators"]
        init_info = meta.get("init_from")
        log(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} "
            f"({len(history)} epochs finished)")
    if chief and resume is not None:
        # Rows of epochs the checkpoint has not committed are dropped.
        _write_csv(os.path.join(run_dir, "metrics.csv"), history)

    decayed = decayed_variables(model) if cfg.optimizer == "sgd" and cfg.weight_decay else []
    train_iter, input_fn = None, None
    if start_epoch < epochs:
        input_fn = _train_input_fn(dataset, cfg, global_batch, steps_per_epoch, start_epoch,
                                   start_step, epochs)
        dist_ds = strategy.distribute_datasets_from_function(input_fn)
        train_iter = iter(dist_ds)
    train_chunk = _make_train_chunk(strategy, model, optimizer, train_iter, cfg, global_batch,
                                    decayed, dataset.num_classes)
    host_input = _identity(dataset) if cfg.include_preprocessing else None  # host takes pixels
    test_ds = _eval_dataset(dataset, cfg.augment, preprocessing=host_input)
    val_ds = (_eval_dataset(dataset, cfg.augment, preprocessing=host_input, split="validation")
              if cfg.val_split else None)
    evaluate_fn = _make_eval_fn(host, cfg.jit)
    writer = (tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
              if chief and cfg.tensorboard else None)

    log(f"training {cfg.model} on {dataset.name} {list(dataset.input_shape)} "
        f"({dataset.sizes.get('train')} train / "
        + (f"{dataset.sizes.get('validation')} validation / " if cfg.val_split else "")
        + f"{dataset.sizes.get('test')} test images), "
        f"{strategy_name(strategy)} with {replicas} replica(s), global batch {global_batch}, "
        f"lr {lr:g}, {epochs} epochs x {steps_per_epoch} steps, {cfg.precision}")

    def meta(epoch, step, accs):
        return dict(epoch=epoch, step=step, history=history, best=best, accumulators=accs,
                    settings=settings, init_from=init_info, num_weights=len(model.get_weights()),
                    num_optimizer_variables=len(optimizer.variables))

    reported = []
    for epoch in range(start_epoch, epochs):
        step = start_step if epoch == start_epoch else 0
        sums = list(acc_state) if epoch == start_epoch else [0.0, 0.0, 0.0]
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=cfg.verbose if chief else 0,
                                      stateful_metrics=["loss", "accuracy"])
        if chief and cfg.verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        t0, images = time.time(), 0
        while step < steps_per_epoch:
            n = min(cfg.steps_per_execution, steps_per_epoch - step)
            if cfg.checkpoint_steps:
                n = min(n, cfg.checkpoint_steps - step % cfg.checkpoint_steps)
            per_pipeline = global_batch // input_fn.shard[0]
            with _named_data_errors(dataset, "train", ckpt_path, seed=cfg.seed, epoch=epoch,
                                    shard=input_fn.shard, shuffle=True,
                                    start=max(0, step - cfg.steps_per_execution) * per_pipeline):
                loss_sum, correct, count = (float(t) for t in train_chunk(tf.constant(n)))
            if not math.isfinite(loss_sum):
                raise _diverged(f"the loss became {loss_sum} in epoch {epoch + 1} (steps "
                                f"{step + 1}-{step + n})", ckpt_path, history)
            sums = [sums[0] + loss_sum, sums[1] + correct, sums[2] + count]
            step += n
            images += count
            progbar.update(step, [("loss", sums[0] / sums[2]), ("accuracy", sums[1] / sums[2])])
            if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < steps_per_epoch:
                m = meta(epoch, step, sums)
                if chief:
                    _save_checkpoint(ckpt_path, model, optimizer, m)
        seconds = time.time() - t0
        host.set_weights(model.get_weights())
        with _named_data_errors(dataset, "test", ckpt_path):
            test_loss, test_acc, _ = evaluate_fn(test_ds)
        _log_unreadable(dataset, log, reported)
        if not math.isfinite(test_loss):
            # e.g. a NaN weight whose effect ReLU hides from the training loss, or
            # overflowed BN statistics (used only at evaluation); this epoch is not committed.
            raise _diverged(f"the test loss became {test_loss} after epoch {epoch + 1} (the "
                            "model's weights or BatchNormalization statistics are no longer "
                            "finite)", ckpt_path, history)
        if evaluate_fn.saturated > 0.5 and sums[0] / sums[2] > SATURATED_LOSS:
            # Exploded logits: finite losses, the test loss stuck at its clip. (Saturated test
            # predictions alone are not enough: early epochs' BN moving statistics can lag.)
            raise _diverged(f"the softmax saturated after epoch {epoch + 1}: "
                            f"{evaluate_fn.saturated:.0%} of the test images get probability "
                            f"<= 1e-7 for their true class and the mean training loss is "
                            f"{sums[0] / sums[2]:.3g} (the logits have exploded; test loss "
                            f"{test_loss:.4f} is at its clip)", ckpt_path, history)
        row = dict(epoch=epoch + 1, loss=sums[0] / sums[2], accuracy=sums[1] / sums[2],
                   test_loss=test_loss, test_accuracy=test_acc,
                   lr=float(schedule(float(int(optimizer.iterations.numpy()) - 1))),
                   seconds=seconds, images_per_second=images / max(seconds, 1e-9))
        val = ""
        if val_ds is not None:
            with _named_data_errors(dataset, "validation", ckpt_path):
                row["val_loss"], row["val_accuracy"], _ = evaluate_fn(val_ds)
            val = f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} "
        history.append(row)
        log(f"epoch {epoch + 1}: loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} {val}"
            f"test_loss {test_loss:.4f} test_accuracy {test_acc:.4f} "
            f"({row['images_per_second']:.0f} images/s)")
        selected_on, score = (("validation", row["val_accuracy"]) if val_ds is not None
                              else ("test", test_acc))
        improved = score > best.get("score", best["test_accuracy"])
        if improved:
            best = {"epoch": epoch + 1, "test_accuracy": test_acc, "selected_on": selected_on,
                    "score": score}
        if chief:
            if improved:
                _save_keras(host, os.path.join(run_dir, "best.keras"))
            if writer is not None:
                with writer.as_default(step=epoch + 1):
                    for k in ("loss", "accuracy", "test_loss", "test_accuracy", "lr",
                              "images_per_second"):
                        _scalar_summary(k, row[k])
                writer.flush()
            # The checkpoint is the commit point of the epoch; the files below derive from it.
            _save_checkpoint(ckpt_path, model, optimizer, meta(epoch + 1, 0, [0.0, 0.0, 0.0]))
            _save_keras(host, os.path.join(run_dir, "last.keras"))
            _write_csv(os.path.join(run_dir, "metrics.csv"), history)
            _write_run_json(run_dir, dataset, cfg, history, best, "running", replicas,
                            global_batch, lr, steps_per_epoch,
                            strategy_label=strategy_name(strategy), init_from=init_info)

    if start_epoch >= epochs:
        log(f"{run_dir} already finished its {epochs} epochs")
    host.set_weights(model.get_weights())
    with _named_data_errors(dataset, "test", ckpt_path):
        test_loss, test_acc, _ = evaluate_fn(test_ds)
    _log_unreadable(dataset, log, reported)
    if chief:
        if not os.path.exists(os.path.join(run_dir, "last.keras")):
            _save_keras(host, os.path.join(run_dir, "last.keras"))
        _write_run_json(run_dir, dataset, cfg, history, best, "finished", replicas,
                        global_batch, lr, steps_per_epoch, test_acc,
                        strategy_label=strategy_name(strategy), init_from=init_info)
        if cfg.plot and history:
            plot_history(history, os.path.join(run_dir, "curves.png"))
    log(f"test accuracy {test_acc:.4f} (last model, {dataset.sizes.get('test')} test images); "
        f"best.keras: epoch {best['epoch']}, {best.get('selected_on', 'test')} accuracy "
        f"{best.get('score', best['test_accuracy']):.4f}")
    log(f"run directory: {os.path.abspath(run_dir)}")
    return TrainResult(run_dir=run_dir, test_accuracy=test_acc, history=history, best=best,
                       model=model, strategy=strategy)


# The imagenet recipe's batch (256) needs ~50 batches an epoch to train well; smaller
# training sets get a smaller batch with the learning rate scaled by the linear scaling rule
# (Goyal et al. 2017: lr 0.1 per 256 images), unless --batch-size or --lr is given.
SMALL_DATA_STEPS = 50
SMALL_DATA_MIN_BATCH = 8


def _small_data_recipe(cfg, train_size, given):
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


# A mean training cross-entropy above -ln(1e-7) ~ 16.1: the average training image gets a
# probability below 1e-7 for its true class (chance level is ln(classes), 2.3 for 10 classes,
# 6.9 for 1000), which only exploded logits produce.
SATURATED_LOSS = -math.log(1e-7)


def _diverged(what, ckpt_path, history):
    if os.path.exists(ckpt_path):
        keep = (f"The last good checkpoint ({len(history)} finished epochs) is kept in "
                f"{ckpt_path}; rerun with a lower --lr to resume from it")
    else:
        keep = "No checkpoint had been written yet; try a lower --lr"
    return TrainingError(f"{what}; training stopped. {keep}")


def _log_unreadable(dataset, log, reported):
    """Logs the unreadable images skipped since the last call (``--on-corrupt skip``)."""
    new = [p for p in dataset.unreadable if p not in reported]
    for path in new:
        log(f"skipping unreadable image {path}")
    reported += new
    if new:
        log(f"skipped {len(reported)} unreadable image(s) so far")


def _scalar_summary(tag, value):
    """A TensorBoard scalar without needing the tensorboard package installed."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)


def _num_workers(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(v) for k, v in spec.items() if k in ("chief", "worker")))


def _write_run_json(run_dir, dataset, cfg, history, best, status, replicas, global_batch, lr,
                    steps_per_epoch, test_acc=None, strategy_label=None, init_from=None):
    info = dataset.describe()
    if cfg.include_preprocessing:  # inside the saved models: they take pixels as they are
        info.update(model_input="pixels", model_preprocessing=info["preprocessing"],
                    preprocessing=_identity(dataset))
    else:
        info.update(model_input="preprocessed")
    # What get_dataset needs to read this dataset again (--evaluate, exports).
    info["dataset_kwargs"] = {k: v for k, v in dict(
        data_dir=os.path.abspath(cfg.data_dir) if cfg.data_dir else None,
        image_size=cfg.image_size or (dataset.input_shape[0] if cfg.data_dir or cfg.dataset == "synthetic" else None),
        num_classes=cfg.num_classes, label_offset=cfg.label_offset or None,
        on_corrupt=cfg.on_corrupt if cfg.on_corrupt != "fail" else None).items() if v is not None}
    info.update(
        outputs="probabilities",
        test_accuracy=test_acc if test_acc is not None else (history[-1]["test_accuracy"] if history else None),
        test_accuracy_of="last.keras",
        best=best,
        status=status,
        epochs_finished=len(history),
        model=cfg.model,
        strategy=strategy_label,
        replicas=replicas,
        global_batch_size=global_batch,
        effective_lr=lr,
        steps_per_epoch=steps_per_epoch,
        bn_statistics="synchronized (global batch)" if cfg.sync_bn else "chief's first replica",
        init_from=init_from,
        unreadable_images_skipped=list(dataset.unreadable),
        config={k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(cfg).items()},
    )
    _write_text(os.path.join(run_dir, "run.json"), json.dumps(info, indent=2) + "\n")


def _train_input_fn(dataset, cfg, global_batch, steps_per_epoch, start_epoch, start_step, epochs):
    """``dataset_fn`` for ``distribute_datasets_from_function``: epochs ``start_epoch..epochs``
    of :func:`keras_resnet.data.make_dataset` in per-replica batches, this input pipeline's
    shard, from ``start_step`` of the first epoch."""

    def dataset_fn(ctx):
        dataset_fn.shard = (ctx.num_input_pipelines, ctx.input_pipeline_id)
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        local = (global_batch // per_replica) // ctx.num_input_pipelines
        return kdata.make_dataset(
            dataset, "train", per_replica, training=True, augment=cfg.augment, seed=cfg.seed,
            epoch=start_epoch, epochs=epochs - start_epoch,
            steps_per_epoch=steps_per_epoch * local, skip_batches=start_step * local,
            shard=(ctx.num_input_pipelines, ctx.input_pipeline_id),
            deterministic=True if cfg.deterministic else None)

    dataset_fn.shard = (1, 0)
    return dataset_fn


def _identity(dataset):
    channels = dataset.input_shape[-1]
    return {"scale": [1.0] * channels, "offset": [0.0] * channels}


def _eval_dataset(dataset, augment, batch_size=256, preprocessing=None, split="test"):
    return kdata.make_dataset(dataset, split, batch_size, training=False, augment=augment,
                              preprocessing=preprocessing)


@contextlib.contextmanager
def _named_data_errors(dataset, split, ckpt_path=None, **where):
    """Turns an unreadable image's decoding error into a one-line :class:`DataError` naming
    the file (``where``: the iteration's seed, epoch, shard and start, to find it)."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as e:
        err = kdata.unreadable_image_error(e, dataset, split, **where)
        if err is None:
            raise
        where = (f"; the run stopped at its last committed checkpoint {ckpt_path}, which "
                 "rerunning resumes from" if ckpt_path and os.path.exists(ckpt_path) else
                 "; no checkpoint was committed yet")
        raise kdata.DataError(f"{err}{where if ckpt_path else ''}") from None


def _make_eval_fn(model, jit=False, outputs="probabilities"):
    import tensorflow as tf

    @tf.function(jit_compile=bool(jit), reduce_retracing=True)
    def stats(x, y):
        out = tf.cast(model(x, training=False), tf.float32)
        if outputs == "probabilities":
            log_p = tf.math.log(tf.clip_by_value(tf.gather(out, y, axis=1, batch_dims=1), 1e-7, 1.0))
        else:
            log_p = -tf.nn.sparse_softmax_cross_entropy_with_logits(y, out)
        correct = tf.cast(tf.equal(tf.argmax(out, axis=1, output_type=tf.int32), y), tf.float32)
        # True class at or below the 1e-7 clip: the softmax has saturated on a wrong class.
        saturated = tf.reduce_sum(tf.cast(log_p <= math.log(1e-7), tf.float32) * (1.0 - correct))
        return -tf.reduce_sum(log_p), tf.reduce_sum(correct), tf.cast(tf.size(y), tf.float32), saturated

    def evaluate(ds):
        """``(mean loss, accuracy, examples)``; ``evaluate.saturated`` is the fraction of
        examples whose true class got a probability <= 1e-7 (a wrong, saturated softmax)."""
        total = np.zeros(4)
        for x, y in ds:
            total += [float(t) for t in stats(x, y)]
        if total[2] == 0:
            raise kdata.DataError("the evaluation split is empty")
        evaluate.saturated = total[3] / total[2]
        return total[0] / total[2], total[1] / total[2], int(total[2])

    return evaluate


def _make_train_chunk(strategy, model, optimizer, iterator, cfg, global_batch, decayed,
                      num_classes):
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    smoothing = float(cfg.label_smoothing)
    wd = float(cfg.weight_decay)

    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            if smoothing:
                target = tf.one_hot(y, num_classes) * (1 - smoothing) + smoothing / num_classes
                per_example = tf.nn.softmax_cross_entropy_with_logits(target, logits)
            else:
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
            loss = tf.reduce_sum(per_example) / global_batch
            if decayed:
                # L2 term (coupled weight decay, as in the paper); gradients are summed
                # over replicas, hence the division.
                l2 = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32))) for v in decayed])
                loss += 0.5 * wd * l2 / replicas
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.float32))
        return grads, tf.reduce_sum(per_example), correct, tf.cast(tf.size(y), tf.float32)

    if cfg.jit:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def step(batch):
        x, y = batch
        grads, loss_sum, correct, count = forward_backward(x, y)
        optimizer.apply(grads, model.trainable_variables)
        return loss_sum, correct, count

    @tf.function
    def chunk(n):
        sums = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
        for _ in tf.range(n):
            out = strategy.run(step, args=(next(iterator),))
            out = [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in out]
            sums = tuple(a + b for a, b in zip(sums, out))
        return sums

    return chunk


# ----------------------------------------------------------------------------------------
# Evaluate-only


def evaluate(model_path, dataset=None, batch_size=256, verbose=1, **dataset_kwargs):
    """Accuracy and loss of a saved model on a dataset's test split.

    ``model_path`` is a ``.keras`` file or a training run directory (its ``best.keras``, else
    ``last.keras``). The dataset, its arguments (data directory, image size, ...) and the
    preprocessing come from the ``run.json`` beside the model when there is one; the
    arguments given here (those not None) override it. Without a run.json the dataset
    defaults to digits. Returns ``{"accuracy", "loss", "num_examples", "dataset", "model"}``.
    """
    from . import models  # noqa: F401  (registers keras_resnet classes for loading)
    from ._compat import keras

    if os.path.isdir(model_path):
        found = [os.path.join(model_path, n) for n in ("best.keras", "last.keras")
                 if os.path.isfile(os.path.join(model_path, n))]
        if not found:
            raise ValueError(f"{model_path} holds no best.keras or last.keras; expected a "
                             "training run directory or a .keras file")
        model_path = found[0]
    if not os.path.isfile(model_path):
        raise ValueError(f"model file {model_path!r} does not exist; expected a .keras file "
                         "or a training run directory (e.g. runs/<name>)")
    run_json = os.path.join(os.path.dirname(os.path.abspath(model_path)), "run.json")
    info = {}
    if os.path.exists(run_json):
        try:
            with open(run_json) as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"could not read {run_json}: {e}; remove it or fix it") from e
    given = {k: v for k, v in dataset_kwargs.items() if v is not None}
    if dataset is None:
        dataset = info.get("dataset", "digits")
    if isinstance(dataset, str) and dataset == info.get("dataset"):
        given = {**kdata.run_dataset_kwargs(info), **given}
    ds = dataset if isinstance(dataset, kdata.Dataset) else kdata.get_dataset(dataset, **given)
    outputs, pre = info.get("outputs", "probabilities"), ds.preprocessing
    if info.get("dataset") == ds.name:
        pre = info.get("preprocessing", pre)
    try:
        model = keras.saving.load_model(model_path, safe_mode=True)
    except Exception as e:
        raise ValueError(f"could not load {model_path!r} as a Keras model: {e}") from e
    want = tuple(model.input_shape[1:])
    if any(a is not None and a != b for a, b in zip(want, ds.input_shape)) or (
            model.output_shape[-1] != ds.num_classes):
        raise ValueError(
            f"{model_path} takes {want} inputs with {model.output_shape[-1]} classes; "
            f"dataset {ds.name!r} has {ds.input_shape} images and {ds.num_classes} classes")
    with _named_data_errors(ds, "test"):
        loss, acc, n = _make_eval_fn(model, outputs=outputs)(
            _eval_dataset(ds, ds.augment, batch_size, preprocessing=pre))
    result = {"accuracy": acc, "loss": loss, "num_examples": n, "dataset": ds.name,
              "model": model_path}
    if verbose:
        print(f"{model_path} on {ds.name} test split ({n} images): accuracy {acc:.4f}, "
              f"loss {loss:.4f}", flush=True)
    return result
