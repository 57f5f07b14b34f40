"""One training run: plan it, resume it from its checkpoint, train epoch by epoch, commit
each epoch and write the files that derive from it."""

import dataclasses
import fcntl
import math
import os
import time

import numpy as np
import tensorflow as tf

from .. import data as kdata
from .. import files
from .._compat import keras
from . import artifacts, checkpoints
from .config import TrainConfig, TrainingError, check_config, small_data_recipe
from .loop import eval_dataset, make_eval_fn, make_train_chunk, named_data_errors, train_input_fn
from .recipe import build_model, decayed_variables, learning_rate_schedule, make_optimizer
from .strategy import is_chief, make_strategy, num_workers, strategy_name

# A mean training cross-entropy above -ln(1e-7) ~ 16.1: the average training image gets a
# probability below 1e-7 for its true class (chance level is ln(classes), 2.3 for 10 classes,
# 6.9 for 1000), which only exploded logits produce.
SATURATED_LOSS = -math.log(1e-7)
ADDED_SETTINGS = {"val_split": 0.0, "init_from": None, "include_preprocessing": False}


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


class _RunLock:
    """An exclusive lock on a run directory for the life of one training run: ``flock`` on
    the directory itself (no lock file), which the kernel releases when the process ends, so
    a killed run never leaves it stuck."""

    def __init__(self):
        self.fd = None

    def acquire(self, run_dir):
        if self.fd is not None:
            return
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


def train(config=None, *, on_epoch_end=None, **overrides):
    """Trains (or resumes) the run described by ``config`` (a :class:`TrainConfig`, or
    keyword arguments); returns a :class:`TrainResult`.

    ``on_epoch_end(epoch, model)``, if given, is called on every worker after epoch
    ``epoch`` (1-based) is committed and its files are written, with the training model.
    """
    lock = _RunLock()
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
    cfg = cfg.resolved(dataset)
    check_config(cfg)
    adapted = small_data_recipe(cfg, dataset.sizes.get("train"), given)
    if adapted:
        log(adapted)
    if cfg.val_split:
        dataset = kdata.with_validation(dataset, cfg.val_split)
    cfg.run_dir = cfg.run_dir or default_run_dir(cfg)
    replicas = strategy.num_replicas_in_sync
    global_batch = cfg.batch_size * replicas
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
    return dataset, cfg, _Plan(replicas, global_batch, cfg.lr * replicas, steps_per_epoch,
                               cfg.epochs)


def _settings(cfg, plan):
    settings = {k: getattr(cfg, k) for k in checkpoints.RESUME_KEYS}
    settings["step_boundaries"] = list(cfg.step_boundaries)
    settings.update(global_batch=plan.global_batch, steps_per_epoch=plan.steps_per_epoch)
    return settings


def _check_resumable(run_dir, old, settings, log):
    diff = sorted(k for k in settings if old.get(k, ADDED_SETTINGS.get(k)) != settings[k])
    if diff == ["lr"]:  # the one change a resume allows: the usual fix for divergence
        log(f"resuming with --lr {settings['lr']:g} (the run so far used {old['lr']:g}); "
            "the schedule continues from the current step with the new base rate")
    elif diff:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in diff)
        raise TrainingError(
            f"{run_dir} holds a run with different settings ({detail}); use another "
            "--run-dir, or --overwrite to start it again")


def _log(cfg, chief):
    def log(msg):
        if chief and cfg.verbose:
            print(msg, flush=True)

    return log


def _train(cfg, lock, on_epoch_end):
    # The strategy comes first: multi-worker collectives must start before other TF work.
    strategy = make_strategy(cfg.strategy, cfg.cpu_replicas)
    chief = is_chief(strategy)
    log = _log(cfg, chief)
    dataset, cfg, plan = _plan(cfg, strategy, log)
    run_dir = cfg.run_dir
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    # Resume a compatible run, or start afresh. The lock is taken before the checkpoint is
    # read, so that a run in progress is never read half-way through a save.
    settings = _settings(cfg, plan)
    if chief and os.path.isdir(run_dir):
        lock.acquire(run_dir)
    resume = None if cfg.overwrite else checkpoints.latest(run_dir)
    if resume is None and not cfg.overwrite and os.path.exists(os.path.join(run_dir, "checkpoint.npz")):
        raise TrainingError(
            f"{run_dir} holds checkpoint.npz, the training state of keras_resnet before "
            "2026.11 (now kept in checkpoint/), which this version cannot resume; pass "
            "--overwrite to start the run again, or use another --run-dir")
    if resume is not None:
        _check_resumable(run_dir, checkpoints.read_progress(resume)["settings"], settings, log)
    source = None
    if cfg.init_from and resume is None:
        from ..growth import init_from_source, load_source

        source, source_path = load_source(cfg.init_from)
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    try:
        with strategy.scope():
            model = build_model(cfg.model, dataset.input_shape, dataset.num_classes,
                                classifier_activation=None, sync_bn=cfg.sync_bn)
            init_info = (init_from_source(source, source_path, model, cfg.init_from)
                         if source is not None else None)
            schedule = learning_rate_schedule(
                plan.lr, plan.total_steps, int(round(cfg.warmup_epochs * plan.steps_per_epoch)),
                cfg.schedule, cfg.step_boundaries)
            optimizer = make_optimizer(cfg, schedule, model)
            optimizer.build(model.trainable_variables)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    state = checkpoints.TrainingState(run_dir, model, optimizer, chief)  # outside the scope:
    # a string variable cannot be broadcast by MultiWorkerMirroredStrategy
    try:
        return _run(cfg, lock, on_epoch_end, strategy, chief, log, dataset, plan, settings,
                    resume, model, optimizer, schedule, state, init_info)
    finally:
        state.close()


def _run(cfg, lock, on_epoch_end, strategy, chief, log, dataset, plan, settings, resume,
         model, optimizer, schedule, state, init_info):
    run_dir, epochs, steps_per_epoch = cfg.run_dir, plan.epochs, plan.steps_per_epoch
    # The saved models (best.keras, last.keras): float32, softmax outputs, and by default
    # the preprocessing inside, so they take pixels in 0..255.
    host = build_model(cfg.model, dataset.input_shape, dataset.num_classes, "softmax",
                       preprocessing=dataset.preprocessing if cfg.include_preprocessing else None)
    progress = dict(epoch=0, step=0, accumulators=[0.0, 0.0, 0.0], history=[],
                    best={"epoch": 0, "test_accuracy": -1.0})
    if resume is not None:
        progress = state.restore(resume)
        init_info = progress.get("init_from")
    if chief:  # only now: bad settings above leave nothing behind
        os.makedirs(run_dir, exist_ok=True)
        lock.acquire(run_dir)
        files.remove_stale_temporaries(run_dir, log)
        if cfg.overwrite:
            files.remove(state.directory)
            artifacts.remove_derived(run_dir)
        state.sweep(log)
    start_epoch, start_step = progress["epoch"], progress["step"]
    history, best = progress["history"], progress["best"]
    facts = dict(strategy=strategy_name(strategy), replicas=plan.replicas,
                 global_batch_size=plan.global_batch, effective_lr=plan.lr,
                 steps_per_epoch=steps_per_epoch, init_from=init_info)

    def write_files(models):
        """The files derived from the committed checkpoint (chief only); ``models``: the
        checkpoint is at the end of an epoch, whose weights last.keras (and best.keras when
        it was the best) hold."""
        if models:
            host.set_weights(model.get_weights())
            artifacts.save_keras(host, os.path.join(run_dir, "last.keras"))
            if best["epoch"] == len(history):
                artifacts.save_keras(host, os.path.join(run_dir, "best.keras"))
        artifacts.write_metrics(os.path.join(run_dir, "metrics.csv"), history)
        artifacts.write_run_json(run_dir, dataset, cfg, facts, history, best, "running")

    if resume is not None:
        log(f"resuming {run_dir} at epoch {start_epoch + 1}, step {start_step} "
            f"({len(history)} epochs finished)")
        if chief:  # a kill may have come between the commit and these files
            write_files(models=start_step == 0 and start_epoch > 0)

    train_chunk = input_fn = None
    if start_epoch < epochs:
        input_fn = train_input_fn(dataset, cfg, plan.global_batch, steps_per_epoch, start_epoch,
                                  start_step, epochs)
        train_iter = iter(strategy.distribute_datasets_from_function(input_fn))
        decayed = decayed_variables(model) if cfg.optimizer == "sgd" and cfg.weight_decay else []
        train_chunk = make_train_chunk(strategy, model, optimizer, train_iter, cfg,
                                       plan.global_batch, decayed, dataset.num_classes)
    host_input = artifacts.identity_preprocessing(dataset) if cfg.include_preprocessing else None
    test_ds = eval_dataset(dataset, cfg.augment, preprocessing=host_input)
    val_ds = (eval_dataset(dataset, cfg.augment, preprocessing=host_input, split="validation")
              if cfg.val_split else None)
    evaluate_fn = make_eval_fn(host, cfg.jit)
    writer = (tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
              if chief and cfg.tensorboard else None)

    log(f"training {cfg.model} on {dataset.name} {list(dataset.input_shape)} "
        f"({dataset.sizes.get('train')} train / "
        + (f"{dataset.sizes.get('validation')} validation / " if cfg.val_split else "")
        + f"{dataset.sizes.get('test')} test images), "
        f"{strategy_name(strategy)} with {plan.replicas} replica(s), global batch "
        f"{plan.global_batch}, lr {plan.lr:g}, {epochs} epochs x {steps_per_epoch} steps, "
        f"{cfg.precision}")

    def commit(epoch, step, sums):
        state.save(dict(epoch=epoch, step=step, accumulators=sums, history=history, best=best,
                        settings=settings, init_from=init_info))

    def diverged(what):
        committed = state.committed()
        if committed:
            keep = (f"The last good checkpoint ({len(history)} finished epochs) is kept in "
                    f"{committed}; rerun with a lower --lr to resume from it")
        else:
            keep = "No checkpoint had been written yet; try a lower --lr"
        return TrainingError(f"{what}; training stopped. {keep}")

    reported = []
    for epoch in range(start_epoch, epochs):
        step = start_step if epoch == start_epoch else 0
        sums = list(progress["accumulators"]) if epoch == start_epoch else [0.0, 0.0, 0.0]
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=cfg.verbose if chief else 0,
                                      stateful_metrics=["loss", "accuracy"])
        if chief and cfg.verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        t0, images = time.time(), 0
        while step < steps_per_epoch:
            n = min(cfg.steps_per_execution, steps_per_epoch - step)
            if cfg.checkpoint_steps:
                n = min(n, cfg.checkpoint_steps - step % cfg.checkpoint_steps)
            per_pipeline = plan.global_batch // input_fn.shard[0]
            with named_data_errors(dataset, "train", state, seed=cfg.seed, epoch=epoch,
                                   shard=input_fn.shard, shuffle=True,
                                   start=max(0, step - cfg.steps_per_execution) * per_pipeline):
                loss_sum, correct, count = (float(t) for t in train_chunk(n))
            if not math.isfinite(loss_sum):
                raise diverged(f"the loss became {loss_sum} in epoch {epoch + 1} (steps "
                               f"{step + 1}-{step + n})")
            sums = [sums[0] + loss_sum, sums[1] + correct, sums[2] + count]
            step += n
            images += count
            progbar.update(step, [("loss", sums[0] / sums[2]), ("accuracy", sums[1] / sums[2])])
            if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < steps_per_epoch:
                commit(epoch, step, sums)
        seconds = time.time() - t0
        host.set_weights(model.get_weights())
        with named_data_errors(dataset, "test", state):
            test_loss, test_acc, _ = evaluate_fn(test_ds)
        _log_unreadable(dataset, log, reported)
        if not math.isfinite(test_loss):
            # e.g. a NaN weight whose effect ReLU hides from the training loss, or
            # overflowed BN statistics (used only at evaluation); this epoch is not committed.
            raise diverged(f"the test loss became {test_loss} after epoch {epoch + 1} (the "
                           "model's weights or BatchNormalization statistics are no longer "
                           "finite)")
        if evaluate_fn.saturated > 0.5 and sums[0] / sums[2] > SATURATED_LOSS:
            # Exploded logits: finite losses, the test loss stuck at its clip. (Saturated test
            # predictions alone are not enough: early epochs' BN moving statistics can lag.)
            raise diverged(f"the softmax saturated after epoch {epoch + 1}: "
                           f"{evaluate_fn.saturated:.0%} of the test images get probability "
                           f"<= 1e-7 for their true class and the mean training loss is "
                           f"{sums[0] / sums[2]:.3g} (the logits have exploded; test loss "
                           f"{test_loss:.4f} is at its clip)")
        row = dict(epoch=epoch + 1, loss=sums[0] / sums[2], accuracy=sums[1] / sums[2],
                   test_loss=test_loss, test_accuracy=test_acc,
                   lr=float(schedule(float(int(optimizer.iterations.numpy()) - 1))),
                   seconds=seconds, images_per_second=images / max(seconds, 1e-9))
        val = ""
        if val_ds is not None:
            with named_data_errors(dataset, "validation", state):
                row["val_loss"], row["val_accuracy"], _ = evaluate_fn(val_ds)
            val = f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} "
        history.append(row)
        log(f"epoch {epoch + 1}: loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} {val}"
            f"test_loss {test_loss:.4f} test_accuracy {test_acc:.4f} "
            f"({row['images_per_second']:.0f} images/s)")
        selected_on, score = (("validation", row["val_accuracy"]) if val_ds is not None
                              else ("test", test_acc))
        if score > best.get("score", best["test_accuracy"]):
            best = {"epoch": epoch + 1, "test_accuracy": test_acc, "selected_on": selected_on,
                    "score": score}
        commit(epoch + 1, 0, [0.0, 0.0, 0.0])  # the commit point of the epoch
        if chief:
            write_files(models=True)
            if writer is not None:
                artifacts.write_summaries(writer, row)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, model)

    if start_epoch >= epochs:
        log(f"{run_dir} already finished its {epochs} epochs")
    host.set_weights(model.get_weights())
    with named_data_errors(dataset, "test", state):
        test_loss, test_acc, _ = evaluate_fn(test_ds)
    _log_unreadable(dataset, log, reported)
    if chief:
        artifacts.write_run_json(run_dir, dataset, cfg, facts, history, best, "finished", test_acc)
        if cfg.plot and history:
            artifacts.plot_history(history, os.path.join(run_dir, "curves.png"))
    log(f"test accuracy {test_acc:.4f} (last model, {dataset.sizes.get('test')} test images); "
        f"best.keras: epoch {best['epoch']}, {best.get('selected_on', 'test')} accuracy "
        f"{best.get('score', best['test_accuracy']):.4f}")
    log(f"run directory: {os.path.abspath(run_dir)}")
    return TrainResult(run_dir=run_dir, test_accuracy=test_acc, history=history, best=best,
                       model=model, strategy=strategy)


def _log_unreadable(dataset, log, reported):
    """Logs the unreadable images skipped since the last call (``--on-corrupt skip``)."""
    new = [p for p in dataset.unreadable if p not in reported]
    for path in new:
        log(f"skipping unreadable image {path}")
    reported += new
    if new:
        log(f"skipped {len(reported)} unreadable image(s) so far")
