"""Loading weights into keras_resnet models.

``load_weights(model, path)`` is what ``weights=<path>`` in the constructors calls. Every
reader turns a file into ``{layer name: [arrays in Keras order]}``; one assignment step
then checks the whole set against the model (missing, unexpected and mis-shaped entries,
a classifier whose class count differs) and only then writes, so a mismatch never leaves
a model partly loaded.

Readers by file name:

* ``*.keras``: a saved Keras model (loaded with ``safe_mode=True``).
* ``*.weights.h5``: weights saved by ``model.save_weights`` from a keras_resnet model of
  the same architecture.
"""

import os

import numpy as np

from ._compat import keras


def _arrays_from_model(model):
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def read_keras_file(path, model):
    """Arrays by layer name from a ``.keras`` file."""
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    return _arrays_from_model(source)


def _h5_classes(path):
    """(include_top, classes) of a keras_resnet ``.weights.h5`` file."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f.get("layers")
        if group is None:
            raise ValueError(f"weights={path!r} is not a Keras 3 .weights.h5 file (no 'layers' group)")
        dense = [k for k in group if k == "dense" or k.startswith("dense_")]
        if not dense:
            return False, None
        kernel = group[dense[0]]["vars"]["0"]
        return True, int(kernel.shape[-1])


def read_weights_h5(path, model):
    """Arrays by layer name from a ``.weights.h5`` written by ``save_weights``.

    Such a file stores weights by position, not by name, so a twin of ``model`` with the
    file's classifier is built, the file is loaded into it, and its arrays are read by name.
    """
    from .models import ResNet

    if not isinstance(model, ResNet):
        raise ValueError(".weights.h5 files can be loaded only into keras_resnet ResNet models")
    include_top, classes = _h5_classes(path)
    config = dict(model.get_config(), include_top=include_top, pooling=None, weights=None)
    if classes is not None:
        config["classes"] = classes
    twin = ResNet.from_config(config)
    try:
        twin.load_weights(path)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"weights={path!r} does not fit this architecture ({model.name}): {first}"
        ) from None
    return _arrays_from_model(twin)


READERS = [
    (".keras", read_keras_file),
    (".weights.h5", read_weights_h5),
]


def read(path, model):
    """Arrays by layer name from ``path``, with the reader its file name selects."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"weights={path!r}: no such file; pass None or the path of a local weights file")
    for suffix, reader in READERS:
        if path.endswith(suffix):
            return reader(path, model)
    accepted = ", ".join(s for s, _ in READERS)
    raise ValueError(f"weights={path!r}: unknown file type; accepted: None or a file ending in {accepted}")


def assign(model, arrays, source="weights"):
    """Set ``model``'s weights from ``{layer name: arrays}``, all or nothing.

    A classifier in ``arrays`` is skipped when the model has none (``include_top=False``).
    """
    top = _find(model, "predictions")
    if top is not None and "predictions" in arrays:
        have = arrays["predictions"][0].shape[-1]
        want = top.get_weights()[0].shape[-1]
        if have != want:
            raise ValueError(
                f"classes={want} does not match the {have} classes in {source}; "
                f"pass classes={have}, or include_top=False to load everything but the classifier"
            )
    plan, problems = [], []
    expected = {layer.name: layer for layer in model.layers if layer.weights}
    for name, layer in expected.items():
        if name not in arrays:
            problems.append(f"missing weights for layer '{name}'")
            continue
        current = layer.get_weights()
        given = arrays[name]
        if len(given) != len(current):
            problems.append(
                f"layer '{name}' has {len(current)} weight arrays; {source} has {len(given)}"
            )
            continue
        for i, (c, g) in enumerate(zip(current, given)):
            if tuple(c.shape) != tuple(np.shape(g)):
                problems.append(
                    f"layer '{name}' weight {i}: model shape {tuple(c.shape)}, "
                    f"{source} shape {tuple(np.shape(g))}"
                )
        plan.append((layer, given))
    unexpected = sorted(set(arrays) - set(expected) - ({"predictions"} if top is None else set()))
    problems += [f"unexpected weights for layer '{n}' (not in {model.name})" for n in unexpected]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{source} does not fit {model.name}: {problems[0]}{more}")
    for layer, given in plan:
        layer.set_weights(given)


def _find(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
    return None


def load_weights(model, path):
    """Load the weights in ``path`` into ``model`` (see the module docstring)."""
    assign(model, read(path, model), source=f"weights file {os.fspath(path)!r}")
    return model
