"""The run directory's files other than the checkpoint: ``run.json``, ``metrics.csv``,
``best.keras``, ``last.keras``, ``curves.png`` and TensorBoard scalars.

All derive from the committed checkpoint (:mod:`.checkpoints`) and are written after it,
each atomically through :mod:`keras_resnet.files`; a resumed run rewrites them from the
checkpoint, so a kill between any two writes leaves nothing that disagrees with it.
"""

import csv
import dataclasses
import io
import json
import os

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from .. import files

CSV_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "lr", "seconds",
              "images_per_second")
VAL_FIELDS = ("val_loss", "val_accuracy")  # appended when the run has a validation split
SUMMARY_FIELDS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr", "images_per_second")
DERIVED = ("run.json", "metrics.csv", "best.keras", "last.keras", "curves.png", "tensorboard")
# Written first into every run directory: the proof that the folder is a keras_resnet run,
# whose files a rerun may replace (runs from before the marker are known by their run.json).
RUN_MARKER = ".keras_resnet_run"


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
    doc = files.read_json_object(os.path.join(run_dir, "run.json"))
    return (doc is not None and isinstance(doc.get("config"), dict)
            and doc.get("status") in ("running", "finished") and "saved_models" in doc)


def foreign_entries(run_dir):
    """What ``run_dir`` holds when it is not a keras_resnet run directory (sorted names;
    our marker's own temporaries left by a kill do not count); [] for a run or an empty folder."""
    if not os.path.isdir(run_dir) or is_run_dir(run_dir):
        return []
    return sorted(n for n in os.listdir(run_dir)
                  if not (n.startswith(f".{RUN_MARKER}") and files.is_temporary(n)))


def save_keras(model, path):
    """``model.save`` to ``path`` atomically (the temporary keeps the ``.keras`` ending
    Keras insists on)."""
    with files.atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def write_metrics(path, history):
    """``metrics.csv``: one row per finished epoch."""
    fields = CSV_FIELDS + (VAL_FIELDS if history and "val_accuracy" in history[0] else ())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in fields})
    files.write_text(path, buf.getvalue())


def read_metrics(path):
    """Rows of a run's ``metrics.csv`` as dicts of numbers."""
    with open(path) as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def write_summaries(writer, row):
    """One epoch's scalars to TensorBoard at step = epoch: ``tf.summary.write`` with the
    scalars plugin's metadata (``tf.summary.scalar`` itself needs the tensorboard package,
    which TensorFlow does not install)."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    with writer.as_default(step=row["epoch"]):
        for key in SUMMARY_FIELDS:
            tf.summary.write(key, tf.constant(float(row[key]), tf.float32), metadata=metadata)
    writer.flush()


def plot_history(history, path):
    """Loss and accuracy curves (train, validation if any, test) to a PNG, atomically."""
    import matplotlib.pyplot as plt  # an optional dependency (the "data" extra)

    fig = curves_figure(history)
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def curves_figure(history):
    """The figure of :func:`plot_history`: loss (log scale) and accuracy by whole epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in ((ax1, "loss"), (ax2, "accuracy")):
        ax.plot(epochs, [r[metric] for r in history], label="train")
        if f"val_{metric}" in history[0]:
            ax.plot(epochs, [r[f"val_{metric}"] for r in history], label="validation")
        ax.plot(epochs, [r[f"test_{metric}"] for r in history], label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax1.set_yscale("log")
    fig.tight_layout()
    return fig


def identity_preprocessing(dataset):
    channels = dataset.input_shape[-1]
    return {"scale": [1.0] * channels, "offset": [0.0] * channels}


def write_run_json(run_dir, dataset, cfg, facts, history, best, status, test_acc=None):
    """``run.json``: the dataset's facts, the settings, ``facts`` (strategy, replicas,
    batch, ...), the progress and which epoch ``last.keras`` and ``best.keras`` hold."""
    info = dataset.describe()
    if cfg.include_preprocessing:  # inside the saved models: they take pixels as they are
        info.update(model_input="pixels", model_preprocessing=info["preprocessing"],
                    preprocessing=identity_preprocessing(dataset))
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
        saved_models={"last.keras": {"epoch": len(history)},
                      "best.keras": {"epoch": best["epoch"]}} if history else {},
        model=cfg.model,
        **facts,
        bn_statistics="synchronized (global batch)" if cfg.sync_bn else "chief's first replica",
        unreadable_images_skipped=list(dataset.unreadable),
        config={k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(cfg).items()},
    )
    files.write_text(os.path.join(run_dir, "run.json"), json.dumps(info, indent=2) + "\n")


def remove_derived(run_dir):
    """Remove the checkpoint's derived files (``--overwrite``), and the training state of
    keras_resnet before 2026.11 (``checkpoint.npz``), which this version cannot resume."""
    for name in DERIVED + ("checkpoint.npz",):
        files.remove(os.path.join(run_dir, name))
