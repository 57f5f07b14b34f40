"""The run directory's files other than the checkpoint and ``run.json``: ``metrics.csv``,
``best.keras``, ``last.keras``, ``curves.png`` and TensorBoard scalars. The layout, ``run.json``
and the lock belong to :mod:`keras_resnet.rundir`.

All derive from the committed checkpoint (:mod:`.checkpoints`) and are written after it,
each atomically through :mod:`keras_resnet.files`; a resumed run rewrites them from the
checkpoint, so a kill between any two writes leaves nothing that disagrees with it.
"""

import csv
import io

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from .. import files

CSV_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "lr", "seconds",
              "images_per_second")
VAL_FIELDS = ("val_loss", "val_accuracy")  # appended when the run has a validation split
EMA_FIELDS = ("ema_test_loss", "ema_test_accuracy", "ema_val_loss", "ema_val_accuracy")
SUMMARY_FIELDS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr", "images_per_second")


def save_keras(model, path):
    """``model.save`` to ``path`` atomically (the temporary keeps the ``.keras`` ending
    Keras insists on)."""
    with files.atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def write_metrics(path, history):
    """``metrics.csv``: one row per finished epoch."""
    fields = CSV_FIELDS + (VAL_FIELDS if history and "val_accuracy" in history[0] else ())
    fields += tuple(k for k in EMA_FIELDS if history and k in history[0])
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
