"""Training state in TensorFlow's own checkpoints, the single commit point of a run.

``<run_dir>/checkpoint/`` is a :class:`tf.train.CheckpointManager` directory holding one
``tf.train.Checkpoint`` of the model, the optimizer (its step counter included) and the
run's progress: epoch and step, the partial sums of the current epoch, every finished
epoch's metrics, the best epoch and the settings. TensorFlow writes a checkpoint's files
first and then names it in the ``checkpoint`` state file with one atomic rename; that
rename commits it. A kill before it leaves the previous checkpoint in force (and files
that :meth:`TrainingState.sweep` removes); a kill after it, the new one.

Every other file of the run directory derives from the committed checkpoint and is written
after it (see :mod:`.artifacts`); a resumed run rewrites them from the checkpoint before it
trains on. Multi-worker: every worker saves (saving may take part in collectives), but only
the chief's files are kept; the others write to a temporary directory of their own.
"""

import errno
import glob
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

from .. import files
from .config import TrainingError

DIRECTORY = "checkpoint"  # inside the run directory
STATE_FILE = "checkpoint"  # CheckpointManager's index of checkpoints, inside DIRECTORY
PROGRESS_KEY = "progress/.ATTRIBUTES/VARIABLE_VALUE"

# Settings a resumed run must share with the run it resumes (lr may change: the usual fix
# for divergence).
RESUME_KEYS = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "momentum",
               "nesterov", "weight_decay", "schedule", "step_boundaries", "warmup_epochs",
               "label_smoothing", "augment", "seed", "precision", "sync_bn", "val_split",
               "init_from", "include_preprocessing", "freeze_epochs", "backbone_lr_mult",
               "model_kwargs", "train_image_size", "rand_augment", "trivial_augment",
               "random_erasing", "mixup_alpha", "cutmix_alpha", "mix_switch_prob", "mix_prob",
               "loss", "bce_target_threshold", "ema_decay", "repeated_augment",
               "clip_grad_norm")


def _first_line(error):
    """TensorFlow's message without its ``{{function_node ...}}`` and ``[Op:...]`` noise."""
    text = str(getattr(error, "message", None) or error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\]", "", text)
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def _damaged_file(prefix):
    """Which file of the checkpoint ``prefix`` is damaged: its index when the index cannot be
    opened, else its data file(s)."""
    if not prefix.endswith((".index", STATE_FILE)) and os.path.exists(prefix + ".index"):
        try:
            tf.train.load_checkpoint(prefix)
        except Exception:  # noqa: BLE001 - truncated or corrupt index
            return prefix + ".index"
        data = sorted(glob.glob(glob.escape(prefix) + ".data-*"))
        if data:
            return ", ".join(data)
    return prefix


def _unreadable(path, error):
    return TrainingError(
        f"the checkpoint file {_damaged_file(path)} is unreadable ({type(error).__name__}: "
        f"{_first_line(error)}); remove {os.path.dirname(path) or path} to start the run "
        "again from its first epoch, or pass --overwrite")


# The operating system's words in TensorFlow's file errors, for one-line advice.
_OS_ERRORS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
              "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}


def write_error(error, target, what="a checkpoint", kept="the last committed checkpoint is kept"):
    """One line for a file TensorFlow (or the OS) could not write to ``target``."""
    if isinstance(error, OSError):
        cause = files.describe_os_error(error, target)
    else:
        found = [code for words, code in _OS_ERRORS.items() if words in str(error)]
        cause = (files.describe_os_error(OSError(found[0], os.strerror(found[0])), target)
                 if found else f"cannot write {target}: {_first_line(error)}")
    return TrainingError(f"{cause} ({what}); {kept}")


def latest(run_dir):
    """The path prefix of ``run_dir``'s committed checkpoint, or None when there is none.
    Raises :class:`TrainingError` when the checkpoint directory exists but cannot be read."""
    directory = os.path.join(run_dir, DIRECTORY)
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise TrainingError(f"{directory} is not a directory; remove it, or pass --overwrite")
        return None
    state = os.path.join(directory, STATE_FILE)
    try:
        path = tf.train.latest_checkpoint(directory)
    except Exception as e:  # noqa: BLE001 - a damaged state file: text-format parse errors
        raise _unreadable(state, e) from None
    if path is None and os.path.exists(state):
        raise _unreadable(state, ValueError("it names no checkpoint whose files exist"))
    return path


def read_progress(path):
    """The progress record (a dict) stored in the checkpoint ``path``."""
    try:
        return json.loads(tf.train.load_checkpoint(path).get_tensor(PROGRESS_KEY).decode())
    except Exception as e:  # noqa: BLE001 - truncated index, missing key, bad JSON, ...
        raise _unreadable(path, e) from None


def read_checkpoint(run_dir):
    """The committed progress of the run in ``run_dir`` (``epoch``: finished epochs,
    ``step``: steps into the next one, ``history``, ``best``, ``settings``, ``path``), or
    None when nothing was committed yet."""
    path = latest(run_dir)
    if path is None:
        return None
    return dict(read_progress(path), path=path)


class TrainingState:
    """The model, its optimizer and the run's progress as one ``tf.train.Checkpoint``.

    Create it after the optimizer is built, outside the strategy's scope (its progress
    variable is a plain, per-process one). ``chief``: whether this
    process's files are the run's (the others save to a temporary directory, removed).
    """

    def __init__(self, run_dir, model, optimizer, chief=True, ema=None):
        """``ema``: a built :class:`.ema.WeightEMA`, whose averages are saved too."""
        self.directory = os.path.join(run_dir, DIRECTORY)
        self.chief = chief
        self.progress = tf.Variable("", dtype=tf.string, trainable=False)
        extra = {} if ema is None else {"ema": tf.train.Checkpoint(averages=list(ema.variables))}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              progress=self.progress, **extra)
        self.optimizer = optimizer
        self._scratch = None if chief else tempfile.mkdtemp(prefix="keras_resnet_worker_")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._scratch or self.directory, max_to_keep=1)

    def committed(self):
        """The path prefix of the committed checkpoint, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore(self, path):
        """Load the checkpoint ``path`` into the model and optimizer; returns its progress."""
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
            progress = json.loads(self.progress.numpy().decode())
        except Exception as e:  # noqa: BLE001 - truncated data, checksum mismatch, ...
            raise _unreadable(path, e) from None
        return progress

    def save(self, progress):
        """Commit ``progress`` with the current model and optimizer; returns the path."""
        self.progress.assign(json.dumps(progress))
        step = int(self.optimizer.iterations.numpy())
        target = self.directory if self.chief else self._scratch
        try:
            path = self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as e:
            raise write_error(e, target) from None
        finally:
            if not self.chief:
                for name in os.listdir(self._scratch):
                    files.remove(os.path.join(self._scratch, name))
        return path

    def sweep(self, log=None):
        """Remove what an interrupted save left in the checkpoint directory: files of
        checkpoints that were never committed, TensorFlow's temporaries."""
        if not os.path.isdir(self.directory):
            return []
        keep = self.committed()
        keep = os.path.basename(keep) if keep else None
        removed = []
        for name in sorted(os.listdir(self.directory)):
            if name == STATE_FILE or (keep and name.split(".")[0] == keep and "_temp" not in name):
                continue
            files.remove(os.path.join(self.directory, name))
            removed.append(name)
            if log:
                log(f"removed {DIRECTORY}/{name}, left by an interrupted checkpoint")
        return removed

    def close(self):
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
