"""The training run directory: the one place that knows its layout, its ``run.json``, which
``.keras`` file stands for a run, and its lock.

A run directory (``train.py --run-dir``, default ``runs/<dataset>_<model>``)::

    .keras_resnet_run   the marker: this folder is a keras_resnet run (written first)
    checkpoint/         the training state (keras_resnet.training.checkpoints)
    run.json            the dataset's facts, the settings and the progress (below)
    metrics.csv         one row per finished epoch
    best.keras          the model chosen on the validation split (without one: last.keras)
    last.keras          the model after the last finished epoch
    ema.keras           the moving average of the weights (runs with ema_decay)
    curves.png          loss and accuracy curves
    tensorboard/        TensorBoard scalars

Training writes it (:func:`write_run_json`, under :class:`RunLock`); evaluation, export and
``--init-from`` read it through :func:`resolve` (a run directory or a ``.keras`` file to the
model file and the run's settings) and :func:`read_run_json`, which checks the type of every
field it knows, so a hand-edited or foreign ``run.json`` is refused in one line naming the
file, the field and the type expected.

Nothing here imports TensorFlow.
"""

import dataclasses
import fcntl
import json
import os
import zipfile

from . import files
from .preprocessing import identity_preprocessing

# ----------------------------------------------------------------------------------------
# Layout

RUN_JSON = "run.json"
METRICS = "metrics.csv"
BEST = "best.keras"
LAST = "last.keras"
EMA = "ema.keras"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
# Written first into every run directory: the proof that the folder is a keras_resnet run,
# whose files a rerun may replace (runs from before the marker are known by their run.json).
RUN_MARKER = ".keras_resnet_run"
MODEL_FILES = (BEST, LAST)
# The files derived from the checkpoint (``--overwrite`` removes them).
DERIVED = (RUN_JSON, METRICS, BEST, LAST, EMA, CURVES, TENSORBOARD)
ACCEPTED = "a training run directory (holding best.keras or last.keras) or a .keras file saved by Keras 3"


class RunDirError(ValueError):
    """A run directory, ``.keras`` path or ``run.json`` that cannot be used (the message names
    the path, what was wrong and what is accepted)."""


# ----------------------------------------------------------------------------------------
# run.json: its fields, their types and defaults

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(check):
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


_KINDS = {  # name of a JSON type -> its check
    "a string": lambda v: isinstance(v, str),
    "an integer": _is_int,
    "a number": _is_number,
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a list of strings": _list_of(lambda x: isinstance(x, str)),
    "a list of integers or nulls": _list_of(lambda x: x is None or _is_int(x)),
}

# Every field a run writes and a reader may use: (expected type, null allowed).
FIELDS = {
    "dataset": ("a string", False),
    "input_shape": ("a list of integers or nulls", False),
    "num_classes": ("an integer", False),
    "class_names": ("a list of strings", True),
    "preprocessing": ("an object", True),
    "model_preprocessing": ("an object", True),
    "model_input": ("a string", False),
    "dataset_kwargs": ("an object", False),
    "outputs": ("a string", False),
    "test_accuracy": ("a number", True),
    "test_accuracy_of": ("a string", False),
    "best": ("an object", False),
    "status": ("a string", False),
    "epochs_finished": ("an integer", False),
    "saved_models": ("an object", False),
    "model": ("a string", False),
    "strategy": ("a string", False),
    "replicas": ("an integer", False),
    "global_batch_size": ("an integer", False),
    "effective_lr": ("a number", False),
    "steps_per_epoch": ("an integer", False),
    "init_from": ("an object", True),
    "pretrained_cfg": ("an object", True),
    "bn_statistics": ("a string", False),
    "unreadable_images_skipped": ("a list", False),
    "config": ("an object", False),
    "chosen_on": ("a string", True),
    "scored_on": ("a string", False),
    "recipe": ("an object", True),
}
# What a reader gets for a field an older run.json lacks.
DEFAULTS = {"outputs": "probabilities", "dataset_kwargs": {}, "config": {}}


def _json_kind(value):
    if value is None:
        return "null"
    for kind in ("a string", "an integer", "a number", "an object", "a list"):
        if _KINDS[kind](value):
            return kind
    return "true or false" if isinstance(value, bool) else type(value).__name__


def check_run_json(doc, path=RUN_JSON):
    """``doc`` (a parsed ``run.json``) with the defaults of missing fields filled in; a
    :class:`RunDirError` naming ``path``, the field and the type expected when a field has
    the wrong type."""
    if not isinstance(doc, dict):
        raise RunDirError(f"{path} holds {_json_kind(doc)}; expected a JSON object (a training "
                          "run's run.json); remove it or fix it")
    for name, (kind, nullable) in FIELDS.items():
        if name not in doc or (doc[name] is None and nullable) or _KINDS[kind](doc[name]):
            continue
        shown = json.dumps(doc[name])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise RunDirError(f"{path}: field {name!r} is {_json_kind(doc[name])} ({shown}); expected "
                          f"{kind}{' or null' if nullable else ''}; remove the file or fix the field")
    return {**DEFAULTS, **doc}


def read_run_json(path):
    """The checked ``run.json`` at ``path`` (see :func:`check_run_json`); a one-line
    :class:`RunDirError` when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"could not read {path}: {' '.join(str(e).split())}; remove it or fix it") from e
    return check_run_json(doc, path)


def run_json_beside(model_path):
    """The ``run.json`` in the folder of ``model_path`` (a ``.keras`` file), or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_JSON)
    return path if os.path.isfile(path) else None


# Arguments of keras_resnet.data.get_dataset that a run records in run.json ("dataset_kwargs").
RUN_DATASET_ARGS = ("data_dir", "image_size", "num_classes", "label_offset", "on_corrupt")


def dataset_kwargs(run):
    """The :func:`keras_resnet.data.get_dataset` arguments of a training run, from its
    ``run.json`` dict. Runs record them as ``dataset_kwargs``; for older run.json files the
    image size and class count are taken from ``input_shape`` and ``num_classes``."""
    kwargs = dict(run.get("dataset_kwargs") or {})
    name = str(run.get("dataset") or "")
    if name in ("folder", "tfrecord", "synthetic") or name.startswith("tfds:"):
        if "image_size" not in kwargs and run.get("input_shape"):
            kwargs["image_size"] = int(run["input_shape"][0])
        if name in ("tfrecord", "synthetic") and "num_classes" not in kwargs and run.get("num_classes"):
            kwargs["num_classes"] = int(run["num_classes"])
    return {k: v for k, v in kwargs.items() if k in RUN_DATASET_ARGS and v is not None}


def write_run_json(run_dir, dataset, cfg, facts, history, best, status, test_acc=None):
    """``run.json``: the dataset's facts, the settings (``cfg``, a TrainConfig), ``facts``
    (strategy, replicas, batch, ...), the progress and which epoch ``last.keras`` and
    ``best.keras`` hold; written atomically."""
    info = dataset.describe()
    if cfg.include_preprocessing:  # inside the saved models: they take pixels as they are
        info.update(model_input="pixels", model_preprocessing=info["preprocessing"],
                    preprocessing=identity_preprocessing(dataset.input_shape[-1]))
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
        test_accuracy_of=LAST,
        # Which split chose best.keras ("validation", or "last epoch": none chose it) and
        # which scored the accuracies above: the test split never chooses.
        chosen_on=best.get("selected_on") if history else None,
        scored_on="test",
        best=best,
        status=status,
        epochs_finished=len(history),
        saved_models=dict({LAST: {"epoch": len(history)}, BEST: {"epoch": best["epoch"]}},
                          **({EMA: {"epoch": len(history), "decay": cfg.ema_decay}}
                             if getattr(cfg, "ema_decay", 0) else {})) if history else {},
        model=cfg.model,
        **facts,
        bn_statistics="synchronized (global batch)" if cfg.sync_bn else "chief's first replica",
        unreadable_images_skipped=list(dataset.unreadable),
        config={k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(cfg).items()},
    )
    files.write_text(os.path.join(run_dir, RUN_JSON), json.dumps(info, indent=2) + "\n")


# ----------------------------------------------------------------------------------------
# A run directory or a .keras file -> the model file and the run's settings

def model_file(path, prefer=BEST, label=""):
    """The ``.keras`` file ``path`` stands for: ``path`` itself, or a run directory's
    ``prefer`` (``best.keras`` for evaluation and export, ``last.keras`` for ``--init-from``),
    else the other one. ``label`` starts each error message (e.g. ``"init_from="``).

    Raises :class:`RunDirError` when ``path`` is not a run directory holding a model, or not
    an existing ``.keras`` file (a zip archive, as Keras 3 saves them)."""
    if not isinstance(path, (str, os.PathLike)):
        raise RunDirError(f"{label}expected a run directory or a .keras file path; got "
                          f"{type(path).__name__}")
    path = os.fspath(path)
    shown = repr(path) if label else path
    if os.path.isdir(path):
        order = (prefer,) + tuple(n for n in MODEL_FILES if n != prefer)
        for name in order:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise RunDirError(f"{label}{shown} is a directory without {' or '.join(order)}; accepted: "
                          f"{ACCEPTED}")
    if not os.path.exists(path):
        raise RunDirError(f"{label}{shown} is not a run directory or an existing .keras file (it "
                          f"does not exist); accepted: {ACCEPTED}")
    if not path.endswith(".keras"):
        raise RunDirError(f"{label}{shown} is not a run directory or an existing .keras file: not "
                          f"a Keras .keras file (its name does not end in .keras); accepted: {ACCEPTED}")
    if not zipfile.is_zipfile(path):
        raise RunDirError(f"{label}{shown} is not a valid .keras file (not a zip archive: truncated, "
                          f"corrupt or another format), so not a Keras .keras file; accepted: {ACCEPTED}")
    return path


def resolve(path, prefer=BEST, label=""):
    """``(model file, run)`` for a run directory or a ``.keras`` file: the file of
    :func:`model_file` and the checked ``run.json`` beside it (:func:`read_run_json`; None
    when there is none)."""
    model_path = model_file(path, prefer, label)
    run_path = run_json_beside(model_path)
    return model_path, (read_run_json(run_path) if run_path else None)


# ----------------------------------------------------------------------------------------
# Whose folder it is, what --overwrite removes, and the lock

def write_run_marker(run_dir):
    """The marker: only its existence counts, so it is written in place (no rename; a kill
    mid-write still leaves the proof)."""
    path = os.path.join(run_dir, RUN_MARKER)
    if os.path.lexists(path):
        return
    try:
        with open(path, "x", encoding="utf-8") as f:
            f.write('{"writer": "keras_resnet training"}\n')
    except FileExistsError:
        pass
    except OSError as exc:
        raise files.file_write_error(exc, path) from exc


def is_run_dir(run_dir):
    """Whether ``run_dir`` is a keras_resnet run directory: our marker, or (a run written
    before the marker) a run.json of ours."""
    marker = os.path.join(run_dir, RUN_MARKER)
    if os.path.isfile(marker) and not os.path.islink(marker):
        return True
    doc = files.read_json_object(os.path.join(run_dir, RUN_JSON))
    return (doc is not None and isinstance(doc.get("config"), dict)
            and doc.get("status") in ("running", "finished") and "saved_models" in doc)


def foreign_entries(run_dir):
    """What ``run_dir`` holds when it is not a keras_resnet run directory (sorted names;
    our marker's own temporaries left by a kill do not count); [] for a run or an empty folder."""
    if not os.path.isdir(run_dir) or is_run_dir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir)
                  if not (n.startswith(f".{RUN_MARKER}") and files.is_temporary(n)))


def remove_derived(run_dir):
    """Remove the checkpoint's derived files (``--overwrite``), and the training state of
    keras_resnet before 2026.11 (``checkpoint.npz``), which this version cannot resume."""
    for name in DERIVED + ("checkpoint.npz",):
        files.remove(os.path.join(run_dir, name))


class RunLock:
    """An exclusive lock on a run directory for the life of one training run: ``flock`` on
    the directory itself (no lock file), which the kernel releases when the process ends, so
    a killed run never leaves it stuck. ``error``: the exception class a busy directory
    raises."""

    def __init__(self, error=RunDirError):
        self.fd = None
        self.error = error

    def acquire(self, run_dir):
        if self.fd is not None:
            return
        self.fd = os.open(run_dir, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise self.error(f"{run_dir} is in use by another training run; wait for it to "
                             "finish, or use another --run-dir") from None

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
