"""One training run: plan it, resume it from its checkpoint, train epoch by epoch, commit
each epoch and write the files that derive from it."""

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from .. import data as kdata
from .. import files, rundir
from .._compat import keras
from ..preprocessing import identity_preprocessing
from . import artifacts, checkpoints, notice
from .config import (TrainConfig, TrainingError, check_config, check_plan, shortened_warmup,
                     small_data_recipe)
from .loop import eval_dataset, make_eval_fn, make_train_chunk, named_data_errors, train_input_fn
from .recipes import recipe_facts
from .recipe import (build_model, decayed_variables, learning_rate_schedule, make_optimizer,
                     pixel_model)
from .strategy import is_chief, make_strategy, num_workers, strategy_name

# A mean training cross-entropy above -ln(1e-7) ~ 16.1: the average training image gets a
# probability below 1e-7 for its true class (chance level is ln(classes), 2.3 for 10 classes,
# 6.9 for 1000), which only exploded logits produce.
SATURATED_LOSS = -math.log(1e-7)
ADDED_SETTINGS = {"val_split": 0.0, "init_from": None, "include_preprocessing": False,
                  "freeze_epochs": 0, "backbone_lr_mult": 1.0, "model_kwargs": {},
                  "train_image_size": None, "rand_augment": None, "trivial_augment": False,
                  "random_erasing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
                  "mix_switch_prob": 0.5, "mix_prob": 1.0, "loss": "ce",
                  "bce_target_threshold": None, "ema_decay": 0.0, "repeated_augment": 1,
                  "clip_grad_norm": 0.0}
EMA = "ema.keras"  # the EMA of the weights (ema_decay), saved beside last.keras
MODEL_SETTINGS = ("input_shape", "num_classes")


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    test_accuracy: float
    history: list
    best: dict
    model: object = None  # the training model (lives in the strategy)
    strategy: object = None


@dataclasses.dataclass
class _Plan:
    """What a run's settings and data amount to."""

    replicas: int
    global_batch: int
    lr: float  # linear scaling rule: lr x replicas
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch


def default_run_dir(cfg):
    name = cfg.dataset.replace(":", "_").replace("/", "_")
    return os.path.join("runs", f"{name}_{cfg.model}")


def train(config=None, *, on_epoch_end=None, **overrides):
    """Trains (or resumes) the run described by ``config`` (a :class:`TrainConfig`, or
    keyword arguments); returns a :class:`TrainResult`.

    ``on_epoch_end(epoch, model)``, if given, is called on every worker after epoch
    ``epoch`` (1-based) is committed and its files are written, with the training model.
    """
    lock = rundir.RunLock(TrainingError)
    try:
        return _train(dataclasses.replace(config or TrainConfig(), **overrides), lock,
                      on_epoch_end)
    finally:
        lock.release()


def _plan(cfg, strategy, log):
    """The dataset, the resolved configuration and the :class:`_Plan` of a run."""
    dataset = kdata.get_dataset(
        cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size,
        num_classes=cfg.num_classes, on_corrupt=cfg.on_corrupt, download=cfg.download,
        label_offset=cfg.label_offset, progress=log)
    given = {k for k in ("batch_size", "lr") if getattr(cfg, k) is not None}
    warmup_given = cfg.warmup_epochs is not None
    cfg = cfg.resolved(dataset)
    check_config(cfg)
    if cfg.train_image_size is None and cfg.train_image_ratio:
        size = max(8, int(round(dataset.input_shape[0] * cfg.train_image_ratio)))
        if size != dataset.input_shape[0]:
            cfg.train_image_size = size
            log(f"train resolution {size} (the {cfg.recipe} recipe's {cfg.train_image_ratio:.3g} "
                f"of the test resolution {dataset.input_shape[0]}); pass --train-image-size to choose")
    if cfg.train_image_size == dataset.input_shape[0]:
        cfg.train_image_size = None
    train_size = dataset.sizes.get("train")
    if train_size is None and not cfg.steps_per_epoch:
        # Counted now (it is needed for the epoch length anyway), so that TFRecords and
        # TFDS get the same small-data recipe as a folder of the same images.
        log("counting training records (pass --steps-per-epoch to skip this)...")
        with named_data_errors(dataset, "train"):
            train_size = int(dataset.examples("train").reduce(np.int64(0), lambda n, _: n + 1))
    adapted = small_data_recipe(cfg, train_size, given)
    if adapted:
        log(adapted)
    if cfg.val_split:
        dataset = kdata.with_validation(dataset, cfg.val_split)
    cfg.run_dir = cfg.run_dir or default_run_dir(cfg)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
    if cfg.val_split:
        train_size = dataset.sizes.get("train")
    if cfg.steps_per_epoch:
        steps_per_epoch = cfg.steps_per_epoch
    else:
        if train_size is None:
            log("counting training records (pass --steps-per-epoch to skip this)...")
            with named_data_errors(dataset, "train"):
                train_size = int(dataset.examples("train").reduce(np.int64(0), lambda n, _: n + 1))
        workers = num_workers(strategy)
        steps_per_epoch = (train_size // workers) // (global_batch // workers)
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size={cfg.batch_size} x {replicas} replicas = {global_batch} "
                             f"is larger than the training set ({train_size} images); lower --batch-size")
    cfg.epochs = cfg.epochs or math.ceil(cfg.iterations / steps_per_epoch)
    shortened = None if warmup_given else shortened_warmup(cfg)
    if shortened:
        log(shortened)
    check_plan(cfg, dataset.input_shape, dataset.num_classes, global_batch // num_workers(strategy))
    return dataset, cfg, _Plan(replicas, global_batch, cfg.lr * replicas, steps_per_epoch,
                               cfg.epochs)


def _settings(cfg, plan):
    settings = {k: getattr(cfg, k) for k in checkpoints.RESUME_KEYS}
    settings["model_kwargs"] = dict(cfg.model_kwargs or {})
    settings["step_boundaries"] = list(cfg.step_boundaries)
    settings.update(global_batch=plan.global_batch, steps_per_epoch=plan.steps_per_epoch)
    return settings


def _model_settings(dataset):
    """Settings that change the model itself, compared on every rerun, finished or not."""
    return {"input_shape": [int(d) for d in dataset.input_shape],
            "num_classes": int(dataset.num_classes)}


def _check_resumable(run_dir, old, settings, log):
    # Settings a run from before they were recorded lacks are not compared.
    diff = sorted(k for k in settings if old.get(k, ADDED_SETTINGS.get(k)) != settings[k]
                  and not (k in MODEL_SETTINGS and k not in old))
    # A larger --epochs (or --iterations) extends the run: its finished epochs are kept and
    # training continues from the last commit, on the schedule of the new length.
    extended = "epochs" in diff and settings["epochs"] > old["epochs"]
    if extended:
        diff.remove("epochs")
    if diff == ["lr"]:  # the one change a resume allows: the usual fix for divergence
        log(f"resuming with --lr {settings['lr']:g} (the run so far used {old['lr']:g}); "
            "the schedule continues from the current step with the new base rate")
    elif diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in diff)
        raise TrainingError(
            f"{run_dir} holds a run with different settings ({detail}); use another "
            "--run-dir, or --overwrite to start it again")
    if extended:
        log(f"extending {run_dir} from {old['epochs']} to {settings['epochs']} epochs: the "
            f"finished epochs are kept and training continues from the last commit; the "
            f"{settings['schedule']} schedule is stretched to {settings['epochs']} epochs")


def _check_checkpoint_link(run_dir):
    """A ``checkpoint`` symlink is never followed: its target's files would be swept."""
    link = os.path.join(run_dir, checkpoints.DIRECTORY)
    if os.path.islink(link):
        raise TrainingError(
            f"{link} is a symbolic link (to {os.readlink(link)}); keras_resnet keeps a run's "
            "checkpoint in a folder of its own and never follows a link out of the run directory; "
            "use another --run-dir, or --overwrite to start the run again (the link is removed, "
            "not what it points to)")


def _check_ours(run_dir, resume):
    """A folder that is not a keras_resnet run is never trained into without --overwrite,
    and a run whose committed checkpoint is missing is not retrained over its saved models."""
    foreign = rundir.foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise TrainingError(
            f"{run_dir} is not a keras_resnet run directory (it holds {shown}, and no "
            f"{rundir.RUN_MARKER} or run.json of a run); use another --run-dir, or --overwrite "
            "to train into it (replacing its checkpoint/, run.json, metrics.csv, best.keras, "
            "last.keras, curves.png and tensorboard/)")
    if resume is None and os.path.isdir(run_dir):
        saved = [n for n in (rundir.LAST, rundir.BEST, rundir.METRICS)
                 if os.path.lexists(os.path.join(run_dir, n))]
        if saved:
            raise TrainingError(
                f"{run_dir} holds a trained run ({', '.join(saved)}) but no committed checkpoint "
                f"({os.path.join(run_dir, checkpoints.DIRECTORY, checkpoints.STATE_FILE)} is "
                "missing), so it can neither resume nor be trained again over its saved models "
                "silently; pass --overwrite to train it again from epoch 1, or use another --run-dir")


def _log(cfg, chief):
    def log(msg):
        if chief and cfg.verbose:
            print(msg, flush=True)

    return log


def _train(cfg, lock, on_epoch_end):
    # The strategy comes first: multi-worker collectives must start before other TF work.
    strategy = make_strategy(cfg.strategy, cfg.cpu_replicas,
                             log=(lambda m: print(m, flush=True)) if cfg.verbose else None)
    chief = is_chief(strategy)
    log = _log(cfg, chief)
    dataset, cfg, plan = _plan(cfg, strategy, log)
    run_dir = cfg.run_dir
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    # Resume a compatible run, or start afresh. The lock is taken before the checkpoint is
    # read, so that a run in progress is never read half-way through a save.
    settings = dict(_settings(cfg, plan), **_model_settings(dataset))
    if chief and os.path.isdir(run_dir):
        lock.acquire(run_dir)
    if not cfg.overwrite:
        _check_checkpoint_link(run_dir)
    resume = None if cfg.overwrite else checkpoints.latest(run_dir)
    if resume is None and not cfg.overwrite and os.path.exists(os.path.join(run_dir, "checkpoint.npz")):
        raise TrainingError(
            f"{run_dir} holds checkpoint.npz, the training state of keras_resnet before "
            "2026.11 (now kept in checkpoint/), which this version cannot resume; pass "
            "--overwrite to start the run again, or use another --run-dir")
    from ..finetune import adopt_preprocessing, source_preprocessing

    if not cfg.overwrite:
        _check_ours(run_dir, resume)
    if resume is not None:
        progress = checkpoints.read_progress(resume)
        _check_resumable(run_dir, progress["settings"], settings, log)
        adopt_preprocessing(dataset, (progress.get("init_from") or {}).get("preprocessing"))
    source = None
    if cfg.init_from and resume is None:
        from ..growth import init_from_source, load_source

        source, source_path = load_source(cfg.init_from)
        adopt_preprocessing(dataset, source_preprocessing(source, dataset.input_shape[-1]), log)
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    try:
        with strategy.scope():
            train_shape = (tuple(dataset.input_shape) if not cfg.train_image_size else
                           (cfg.train_image_size, cfg.train_image_size, dataset.input_shape[-1]))
            model = build_model(cfg.model, train_shape, dataset.num_classes,
                                classifier_activation=None, sync_bn=cfg.sync_bn,
                                model_kwargs=cfg.model_kwargs)
            # The training step's model: the pixels from the input pipeline, preprocessed
            # as its first layer; ``model`` (checkpointed, saved) is the same as ever.
            step_model = pixel_model(model, dataset.preprocessing)
            init_info = (init_from_source(source, source_path, model, cfg.init_from, log)
                         if source is not None else None)
            if init_info is not None:
                init_info["preprocessing"] = dataset.preprocessing
                if getattr(source, "pretrained_cfg", None):
                    # The weights' input configuration (interpolation, crop_pct, sizes):
                    # the saved models and run.json carry it on to the exports.
                    init_info["pretrained_cfg"] = source.pretrained_cfg
            schedule = learning_rate_schedule(
                plan.lr, plan.total_steps, int(round(cfg.warmup_epochs * plan.steps_per_epoch)),
                cfg.schedule, cfg.step_boundaries)
            optimizer = make_optimizer(cfg, schedule, model)
            optimizer.build(model.trainable_variables)
            ema = None
            if cfg.ema_decay:
                from .ema import WeightEMA

                ema = WeightEMA(decay=cfg.ema_decay)
                ema.build(model)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    state = checkpoints.TrainingState(run_dir, model, optimizer, chief, ema=ema)  # outside the scope:
    # a string variable cannot be broadcast by MultiWorkerMirroredStrategy
    try:
        run = _Run(cfg, strategy, chief, log, dataset, plan, settings, model, optimizer,
                   schedule, state, init_info, ema, step_model)
        run.open(lock, resume)
        run.build()
        return run.train(on_epoch_end)
    finally:
        state.close()


class _Run:
    """A built run: resumes from its checkpoint, trains the remaining epochs, commits each
    one and (chief only) writes the files derived from each commit."""

    def __init__(self, cfg, strategy, chief, log, dataset, plan, settings, model, optimizer,
                 schedule, state, init_info, ema=None, step_model=None):
        self.cfg, self.strategy, self.chief, self.log = cfg, strategy, chief, log
        self.dataset, self.plan, self.settings = dataset, plan, settings
        self.model, self.optimizer, self.schedule, self.state = model, optimizer, schedule, state
        self.step_model = step_model if step_model is not None else model
        self.init_info = init_info
        self.run_dir = cfg.run_dir
        # The saved models (best.keras, last.keras): float32, softmax outputs, and by default
        # the preprocessing inside, so they take pixels in 0..255.
        self.host = build_model(
            cfg.model, dataset.input_shape, dataset.num_classes, "softmax",
            preprocessing=dataset.preprocessing if cfg.include_preprocessing else None,
            model_kwargs=cfg.model_kwargs)
        self.ema = ema  # EMAWeights, evaluated in (and saved from) a host model of its own
        self.ema_host = None if ema is None else build_model(
            cfg.model, dataset.input_shape, dataset.num_classes, "softmax",
            preprocessing=dataset.preprocessing if cfg.include_preprocessing else None,
            model_kwargs=cfg.model_kwargs)
        self.progress = dict(epoch=0, step=0, accumulators=[0.0, 0.0, 0.0], seconds=0.0,
                             history=[], best={"epoch": 0, "test_accuracy": -1.0})
        self.reported = []  # unreadable images already logged
        self.workers = num_workers(strategy)
        self.notice = notice.Notice()  # active while the loop runs (see train)

    def open(self, lock, resume):
        """Restores the checkpoint ``resume`` (if any); the chief takes the run directory:
        creates it, locks it and clears what an interrupted run may have left."""
        cfg, run_dir = self.cfg, self.run_dir
        if resume is not None:
            self.progress = self.state.restore(resume)
            self.init_info = self.progress.get("init_from")
        if self.chief:  # only now: bad settings above leave nothing behind
            os.makedirs(run_dir, exist_ok=True)
            lock.acquire(run_dir)
            rundir.write_run_marker(run_dir)  # first: the folder is a keras_resnet run
            files.remove_stale_temporaries(run_dir, self.log)
            if cfg.overwrite:
                files.discard(self.state.directory)  # first: the old run can no longer resume
                rundir.remove_derived(run_dir)
            self.state.sweep(self.log)
        self.history, self.best = self.progress["history"], self.progress["best"]
        plan = self.plan
        self.facts = dict(strategy=strategy_name(self.strategy), replicas=plan.replicas,
                          global_batch_size=plan.global_batch, effective_lr=plan.lr,
                          steps_per_epoch=plan.steps_per_epoch, init_from=self.init_info,
                          recipe=recipe_facts(cfg.recipe))
        pretrained_cfg = (self.init_info or {}).get("pretrained_cfg")
        if pretrained_cfg:
            self.facts["pretrained_cfg"] = pretrained_cfg
            self.host.pretrained_cfg = pretrained_cfg  # saved in best.keras and last.keras
        start_epoch, start_step = self.progress["epoch"], self.progress["step"]
        if resume is not None:
            self.log(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} of "
                     f"{plan.steps_per_epoch} ({len(self.history)} epochs finished)")
            if self.chief:  # a kill may have come between the commit and these files
                self.write_files(models=start_step == 0 and start_epoch > 0)

    def build(self):
        """The training step (when epochs remain), the evaluation data and function, and
        the TensorBoard writer."""
        cfg, dataset, plan = self.cfg, self.dataset, self.plan
        start_epoch, start_step = self.progress["epoch"], self.progress["step"]
        self.train_chunk = self.input_fn = self.frozen = None
        if start_epoch < plan.epochs:
            self.input_fn = train_input_fn(dataset, cfg, plan.global_batch, plan.steps_per_epoch,
                                           start_epoch, start_step, plan.epochs)
            self.train_iter = iter(self.strategy.distribute_datasets_from_function(self.input_fn))
        host_input = identity_preprocessing(dataset.input_shape[-1]) if cfg.include_preprocessing else None
        self.test_ds = eval_dataset(dataset, cfg.augment, preprocessing=host_input)
        self.val_ds = (eval_dataset(dataset, cfg.augment, preprocessing=host_input,
                                    split="validation") if cfg.val_split else None)
        self.evaluate_fn = make_eval_fn(self.host, cfg.jit)
        self.ema_evaluate_fn = None if self.ema is None else make_eval_fn(self.ema_host, cfg.jit)
        self.agree = _agreement(self.strategy) if self.workers > 1 else None
        self.writer = None
        if self.chief and cfg.tensorboard:
            with _tensorboard_errors(self.run_dir):
                self.writer = tf.summary.create_file_writer(os.path.join(self.run_dir, rundir.TENSORBOARD))
                if self.history and self.progress["step"] == 0:
                    # A kill may have come between the last epoch's commit and its summary:
                    # write it again (a repeated point at the same step draws as one).
                    artifacts.write_summaries(self.writer, self.history[-1])
        splits = ("train", "validation", "test") if cfg.val_split else ("train", "test")
        counts = " / ".join(f"{dataset.sizes[k]} {k}" for k in splits
                            if dataset.sizes.get(k) is not None)  # files: not counted up front
        self.log(f"training {cfg.model} on {dataset.name} {list(dataset.input_shape)} "
                 + (f"({counts} images), " if counts else "")
                 + f"{strategy_name(self.strategy)} with {plan.replicas} replica(s), global batch "
                 f"{plan.global_batch}, lr {plan.lr:g}, {plan.epochs} epochs x "
                 f"{plan.steps_per_epoch} steps, {cfg.precision}")

    def make_chunk(self, epoch):
        """The training step for epoch ``epoch`` (0-based): rebuilt when the backbone is
        frozen (the first ``freeze_epochs``) or unfrozen, since the trainable variables
        change."""
        cfg = self.cfg
        frozen = epoch < cfg.freeze_epochs
        if self.train_chunk is not None and frozen == self.frozen:
            return
        from ..finetune import backbone_variables, set_backbone_trainable

        set_backbone_trainable(self.model, not frozen)
        if frozen:
            self.log(f"backbone frozen for epochs 1-{cfg.freeze_epochs} (BatchNormalization in "
                     "inference mode): training the new head only")
        elif cfg.freeze_epochs:
            self.log(f"backbone unfrozen from epoch {epoch + 1}: training the whole network"
                     + (f" (backbone lr x {cfg.backbone_lr_mult:g})"
                        if cfg.backbone_lr_mult != 1 else ""))
        elif cfg.backbone_lr_mult != 1:
            self.log(f"backbone learning rate: the head's x {cfg.backbone_lr_mult:g}")
        decayed = (decayed_variables(self.model)
                   if cfg.optimizer == "sgd" and cfg.weight_decay else [])
        self.train_chunk = make_train_chunk(
            self.strategy, self.step_model, self.optimizer, self.train_iter, cfg,
            self.plan.global_batch, decayed, self.dataset.num_classes,
            backbone=backbone_variables(self.model), lr_mult=cfg.backbone_lr_mult, ema=self.ema)
        self.frozen = frozen

    def write_files(self, models, status="running"):
        """The files derived from the committed checkpoint (chief only); ``models``: the
        checkpoint is at the end of an epoch, whose weights last.keras (and best.keras when
        it was the best) hold; ``status``: run.json's."""
        if models:
            self.host.set_weights(self.model.get_weights())
            last = os.path.join(self.run_dir, rundir.LAST)
            artifacts.save_keras(self.host, last)
            if self.best["epoch"] == len(self.history):
                # The same weights: copied, not saved again (a save walks every layer).
                files.copy_file(last, os.path.join(self.run_dir, rundir.BEST))
            if self.ema is not None:
                self.ema_host.set_weights(self.ema.averaged_weights())
                artifacts.save_keras(self.ema_host, os.path.join(self.run_dir, EMA))
        artifacts.write_metrics(os.path.join(self.run_dir, rundir.METRICS), self.history)
        rundir.write_run_json(self.run_dir, self.dataset, self.cfg, self.facts, self.history,
                                 self.best, status)

    def commit(self, epoch, step, sums, seconds=0.0):
        return self.state.save(dict(epoch=epoch, step=step, accumulators=sums, seconds=seconds,
                                    history=self.history, best=self.best,
                                    settings=self.settings, init_from=self.init_info))

    def noticed(self, epoch, point):
        """The signal that asks this run to stop at ``point`` (a step number, "evaluate",
        "end") of ``epoch`` (1-based), or None. Alone, this process's own notice; in a
        cluster (called at points every worker reaches in the same order: chunk and epoch
        ends), the workers agree through one small all-reduce, so that one worker's signal
        stops every worker at the same step, as TensorFlow's PreemptionCheckpointHandler
        does."""
        self.notice.reached(epoch, point)
        if self.workers == 1:
            return self.notice.signum
        signum = self.notice.signum
        flags = [float(signum == signal.SIGTERM), float(signum == signal.SIGINT)]
        term, interrupt = (float(t) for t in self.agree(tf.constant(flags, tf.float32)))
        return signal.SIGTERM if term else signal.SIGINT if interrupt else None

    def stop(self, signum, epoch, step, sums=None, seconds=0.0):
        """Saves ``step`` of ``epoch`` (0-based; ``sums`` None: already committed), writes
        the derived files with the stopped status and raises :class:`TrainingStopped`."""
        if self.chief and self.cfg.verbose and 0 < step < self.plan.steps_per_epoch:
            print(flush=True)  # end the progress bar's line
        if sums is not None:
            if not _all_finite(self.model):  # as for every commit: never a NaN
                raise self.diverged(f"the weights or BatchNormalization statistics became "
                                    f"non-finite in epoch {epoch + 1} (by step {step})")
            path = self.commit(epoch, step, sums, seconds)
            path = os.path.join(self.state.directory, os.path.basename(path))
        else:
            path = self.state.committed()
        if self.chief:
            self.write_files(models=False, status=notice.RUN_STATUS[signum])
        raise notice.TrainingStopped(signum, epoch + 1, step, self.plan.steps_per_epoch,
                                     len(self.history), path)

    def diverged(self, what):
        committed = self.state.committed()
        if committed:
            keep = (f"The last good checkpoint ({len(self.history)} finished epochs) is kept in "
                    f"{committed}; rerun with a lower --lr to resume from it")
        else:
            keep = "No checkpoint had been written yet; try a lower --lr"
        return TrainingError(f"{what}; training stopped. {keep}")

    def train(self, on_epoch_end):
        """Every remaining epoch, then the final evaluation and files."""
        start_epoch, start_step = self.progress["epoch"], self.progress["step"]
        # SIGTERM and the first SIGINT: save the step and stop (see .notice).
        with self.notice:
            for epoch in range(start_epoch, self.plan.epochs):
                resumed = epoch == start_epoch
                sums, images, seconds = self.train_epoch(
                    epoch, start_step if resumed else 0,
                    list(self.progress["accumulators"]) if resumed else [0.0, 0.0, 0.0],
                    self.progress.get("seconds", 0.0) if resumed else 0.0)
                row = self.evaluate_epoch(epoch, sums, images, seconds)
                self.end_epoch(epoch, row, on_epoch_end)
                if epoch + 1 < self.plan.epochs:  # after the last one, finishing is short
                    signum = self.noticed(epoch + 1, "end")
                    if signum is not None:
                        self.stop(signum, epoch + 1, 0)
        if start_epoch >= self.plan.epochs:
            self.log(f"{self.run_dir} already finished its {self.plan.epochs} epochs")
        return self.finish()

    def train_epoch(self, epoch, step, sums, seconds=0.0):
        """Trains epoch ``epoch`` (0-based) from ``step`` on (``sums`` and ``seconds``: the
        epoch's so far), committing every ``checkpoint_steps`` and on notice; returns the
        loss/correct/count sums, images and seconds of the epoch."""
        cfg, plan = self.cfg, self.plan
        steps_per_epoch = plan.steps_per_epoch
        # A bar on a terminal; plain lines (as fit(verbose=2)) when stdout is a file or pipe.
        verbose = (cfg.verbose if sys.stdout.isatty() else 2) if self.chief and cfg.verbose else 0
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=verbose,
                                      stateful_metrics=["loss", "accuracy"])
        if self.chief and cfg.verbose:
            print(f"Epoch {epoch + 1}/{plan.epochs}", flush=True)
        self.make_chunk(epoch)
        t0 = time.time() - seconds
        per_pipeline = plan.global_batch // self.input_fn.shard[0]
        while step < steps_per_epoch:
            n = min(cfg.steps_per_execution, steps_per_epoch - step)
            if cfg.checkpoint_steps:
                n = min(n, cfg.checkpoint_steps - step % cfg.checkpoint_steps)
            # Alone, a notice ends the chunk after the running step; in a cluster, the
            # workers agree at the chunk's end.
            first = step
            stop = ((lambda done: self.noticed(epoch + 1, first + done) is not None)
                    if self.workers == 1 else None)
            with named_data_errors(self.dataset, "train", self.state, seed=cfg.seed, epoch=epoch,
                                   shard=self.input_fn.shard, shuffle=True,
                                   start=max(0, step - cfg.steps_per_execution) * per_pipeline):
                loss_sum, correct, count = (float(t) for t in self.train_chunk(n, stop))
            n = self.train_chunk.steps
            if not math.isfinite(loss_sum):
                raise self.diverged(f"the loss became {loss_sum} in epoch {epoch + 1} (steps "
                                    f"{step + 1}-{step + n})")
            sums = [sums[0] + loss_sum, sums[1] + correct, sums[2] + count]
            step += n
            progbar.update(step, [("loss", sums[0] / sums[2]), ("accuracy", sums[1] / sums[2])])
            signum = self.noticed(epoch + 1, step)
            if signum is not None:
                self.stop(signum, epoch, step, sums, time.time() - t0)
            if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < steps_per_epoch:
                # The loss is computed before each update, and BN statistics only show at
                # evaluation: check the state itself, so that no NaN is ever committed.
                if not _all_finite(self.model):
                    raise self.diverged(f"the weights or BatchNormalization statistics became "
                                        f"non-finite in epoch {epoch + 1} (by step {step})")
                self.commit(epoch, step, sums, time.time() - t0)
        return sums, sums[2], time.time() - t0

    def evaluate(self, split="test", stop=None, ema=False):
        """``(loss, accuracy)`` of the current weights (in the float32 host model; ``ema``:
        of their moving average); None when ``stop()`` said True after a batch."""
        ds = self.test_ds if split == "test" else self.val_ds
        fn = self.ema_evaluate_fn if ema else self.evaluate_fn
        if ema:
            self.ema_host.set_weights(self.ema.averaged_weights())
        with named_data_errors(self.dataset, split, self.state):
            result = fn(ds, stop)
        _log_unreadable(self.dataset, self.log, self.reported)
        return None if result is None else result[:2]

    def evaluate_epoch(self, epoch, sums, images, seconds):
        """Evaluates the epoch's weights, stops a diverged run, and returns the epoch's row
        of metrics.csv."""
        self.host.set_weights(self.model.get_weights())
        # Alone, a notice stops the evaluation at its next batch: the epoch's training steps
        # are saved (step N of N) and the rerun evaluates them. In a cluster the workers
        # evaluate apart, without collectives to agree in: they agree at the epoch's end.
        stop = None
        if self.workers == 1:
            self.noticed(epoch + 1, "evaluate")
            stop = lambda: self.notice.requested  # noqa: E731
        result = self.evaluate(stop=stop)
        if result is None:
            self.stop(self.notice.signum, epoch, self.plan.steps_per_epoch, sums, seconds)
        test_loss, test_acc = result
        if not math.isfinite(test_loss):
            # e.g. a NaN weight whose effect ReLU hides from the training loss, or
            # overflowed BN statistics (used only at evaluation); this epoch is not committed.
            raise self.diverged(f"the test loss became {test_loss} after epoch {epoch + 1} (the "
                                "model's weights or BatchNormalization statistics are no longer "
                                "finite)")
        saturated = self.evaluate_fn.saturated
        if saturated > 0.5 and sums[0] / sums[2] > SATURATED_LOSS:
            # Exploded logits: finite losses, the test loss stuck at its clip. (Saturated test
            # predictions alone are not enough: early epochs' BN moving statistics can lag.)
            raise self.diverged(f"the softmax saturated after epoch {epoch + 1}: "
                                f"{saturated:.0%} of the test images get probability "
                                f"<= 1e-7 for their true class and the mean training loss is "
                                f"{sums[0] / sums[2]:.3g} (the logits have exploded; test loss "
                                f"{test_loss:.4f} is at its clip)")
        step = float(int(self.optimizer.iterations.numpy()) - 1)
        row = dict(epoch=epoch + 1, loss=sums[0] / sums[2], accuracy=sums[1] / sums[2],
                   test_loss=test_loss, test_accuracy=test_acc, lr=float(self.schedule(step)),
                   seconds=seconds, images_per_second=images / max(seconds, 1e-9))
        val = ""
        if self.val_ds is not None:
            result = self.evaluate("validation", stop)
            if result is None:
                self.stop(self.notice.signum, epoch, self.plan.steps_per_epoch, sums, seconds)
            row["val_loss"], row["val_accuracy"] = result
            val = f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} "
        if self.ema is not None:
            for split in ("test",) + (("validation",) if self.val_ds is not None else ()):
                result = self.evaluate(split, stop, ema=True)
                if result is None:
                    self.stop(self.notice.signum, epoch, self.plan.steps_per_epoch, sums, seconds)
                prefix = "ema_test" if split == "test" else "ema_val"
                row[f"{prefix}_loss"], row[f"{prefix}_accuracy"] = result

        self.log(f"epoch {epoch + 1}: loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} "
                 f"{val}test_loss {test_loss:.4f} test_accuracy {test_acc:.4f} "
                 + (f"ema_test_accuracy {row['ema_test_accuracy']:.4f} " if self.ema is not None else "")
                 + f"({row['images_per_second']:.0f} images/s)")
        return row

    def end_epoch(self, epoch, row, on_epoch_end):
        """Records the epoch, commits it (the commit point) and writes its files."""
        self.history.append(row)
        self.best = choose_best(self.best, row, self.val_ds is not None)
        self.commit(epoch + 1, 0, [0.0, 0.0, 0.0])  # the commit point of the epoch
        self.notice.reached(epoch + 1, "writes")
        if self.chief:
            self.write_files(models=True)
            if self.writer is not None:
                with _tensorboard_errors(self.run_dir):
                    artifacts.write_summaries(self.writer, row)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, self.model)

    def finish(self):
        """Evaluates the last weights and writes the finished run.json and curves."""
        cfg, best = self.cfg, self.best
        self.host.set_weights(self.model.get_weights())
        _, test_acc = self.evaluate()
        if self.chief:
            rundir.write_run_json(self.run_dir, self.dataset, cfg, self.facts, self.history,
                                     best, "finished", test_acc)
            if cfg.plot and self.history:
                artifacts.plot_history(self.history, os.path.join(self.run_dir, rundir.CURVES))
        tested = self.dataset.sizes.get("test")
        chosen = (f"best.keras: epoch {best['epoch']}, chosen on the validation split "
                  f"(accuracy {best['score']:.4f})" if best.get("selected_on") == "validation"
                  else "best.keras = last.keras: no validation split, so no epoch was chosen "
                  "(--val-split F holds one out)")
        ema_note = ""
        if self.ema is not None and self.history and "ema_test_accuracy" in self.history[-1]:
            ema_note = f"; {EMA}: test accuracy {self.history[-1]['ema_test_accuracy']:.4f}"
        self.log(f"test accuracy {test_acc:.4f} (last model, chosen on nothing; "
                 + (f"{tested} test images" if tested is not None else "the test split")
                 + f"); {chosen}{ema_note}")
        self.log(f"run directory: {os.path.abspath(self.run_dir)}")
        return TrainResult(run_dir=self.run_dir, test_accuracy=test_acc, history=self.history,
                           best=best, model=self.model, strategy=self.strategy)


def choose_best(best, row, validation):
    """The best epoch after ``row`` (a metrics row): with a validation split, the epoch of
    the best validation accuracy; without one, the last epoch. The test split never
    chooses: a model chosen on a split is never scored on it."""
    if validation:
        score = row["val_accuracy"]
        if best.get("selected_on") == "validation" and score <= best["score"]:
            return best
        return {"epoch": row["epoch"], "test_accuracy": row["test_accuracy"],
                "selected_on": "validation", "score": score}
    return {"epoch": row["epoch"], "test_accuracy": row["test_accuracy"],
            "selected_on": "last epoch", "score": None}


@contextlib.contextmanager
def _tensorboard_errors(run_dir):
    """TensorFlow's error writing TensorBoard events (a full disk, a read-only run
    directory) as one line naming the folder."""
    try:
        yield
    except tf.errors.OpError as e:
        raise checkpoints.write_error(e, os.path.join(run_dir, rundir.TENSORBOARD), "TensorBoard events",
                                      "the last committed checkpoint is kept; rerun once fixed"
                                      ) from None


def _agreement(strategy):
    """``agree(flags)``: the sum of ``flags`` (a float32 vector) over every replica of the
    cluster, one all-reduce."""

    @tf.function
    def agree(flags):
        per_replica = strategy.run(tf.identity, args=(flags,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return agree


def _all_finite(model):
    """Whether every floating-point variable of ``model`` (weights, BN statistics) is finite."""
    return all(bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))))
               for v in model.variables if "float" in str(v.dtype))


def _log_unreadable(dataset, log, reported):
    """Logs the unreadable images skipped since the last call (``--on-corrupt skip``)."""
    new = [p for p in dataset.unreadable if p not in reported]
    for path in new:
        log(f"skipping unreadable image {path}")
    reported += new
    if new:
        log(f"skipped {len(reported)} unreadable image(s) so far")
