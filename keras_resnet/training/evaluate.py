"""Evaluating a saved model on a dataset's test split (``train.py --evaluate``)."""

from .. import data as kdata
from .. import rundir
from .. import models  # noqa: F401  (registers keras_resnet classes for loading)
from .._compat import keras
from ..keras_file import load_model as load_keras_model
from .loop import eval_dataset, make_eval_fn, named_data_errors


def evaluate(model_path, dataset=None, batch_size=256, verbose=1, **dataset_kwargs):
    """Accuracy and loss of a saved model on a dataset's test split.

    ``model_path`` is a ``.keras`` file or a training run directory (its ``best.keras``, else
    ``last.keras``). The dataset, its arguments (data directory, image size, ...) and the
    preprocessing come from the ``run.json`` beside the model when there is one; the
    arguments given here (those not None) override it. Without a run.json the dataset
    defaults to digits. Returns ``{"accuracy", "loss", "num_examples", "dataset", "model"}``.
    """

    model_path, run = rundir.resolve(model_path, prefer=rundir.BEST)
    info = run or {}
    given = {k: v for k, v in dataset_kwargs.items() if v is not None}
    if dataset is None:
        dataset = info.get("dataset", "digits")
    if isinstance(dataset, str) and dataset == info.get("dataset"):
        given = {**rundir.dataset_kwargs(info), **given}
    ds = dataset if isinstance(dataset, kdata.Dataset) else kdata.get_dataset(dataset, **given)
    outputs, pre, augment = info.get("outputs", "probabilities"), ds.preprocessing, ds.augment
    if info.get("dataset") == ds.name:  # the run's data: read as the run evaluated it
        pre = info.get("preprocessing") or pre
        augment = info["config"].get("augment") or augment
    try:
        model = load_keras_model(model_path, safe_mode=True)
    except Exception as e:
        raise ValueError(f"could not load {model_path!r} as a Keras model: {e}") from e
    want = tuple(model.input_shape[1:])
    if any(a is not None and a != b for a, b in zip(want, ds.input_shape)) or (
            model.output_shape[-1] != ds.num_classes):
        raise ValueError(
            f"{model_path} takes {want} inputs with {model.output_shape[-1]} classes; "
            f"dataset {ds.name!r} has {ds.input_shape} images and {ds.num_classes} classes")
    with named_data_errors(ds, "test"):
        loss, acc, n = make_eval_fn(model, outputs=outputs)(
            eval_dataset(ds, augment, batch_size, preprocessing=pre))
    result = {"accuracy": acc, "loss": loss, "num_examples": n, "dataset": ds.name,
              "model": model_path}
    if verbose:
        print(f"{model_path} on {ds.name} test split ({n} images): accuracy {acc:.4f}, "
              f"loss {loss:.4f}", flush=True)
    return result
