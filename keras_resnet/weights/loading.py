"""Checking a checkpoint against a model and assigning it, all or nothing.

:func:`load_weights` is what ``weights=<path>`` in the constructors calls; it needs no
model class of its own (it works on layer names and ``get_config``), so
:mod:`keras_resnet.models` can use it without :mod:`keras_resnet.weights` importing back.
"""

import os

import numpy as np

from .._compat import keras
from ..specs import KERAS_V1, KERAS_V2, LAYOUT_OPTIONS
from .checkpoint import (Checkpoint, checkpoint_from_model, array_shape, find_layer, from_torch_state_dict,
                         resnet_config)
from .readers import keras_applications_spec, h5_kind, read

_ARCH_OPTIONS = ("block", "stackwise_num_blocks", "stackwise_num_filters", "stem_filters")


def check_layout(model, checkpoint, source="weights"):
    """Raise ValueError if ``model`` does not compute what ``checkpoint``'s source did.

    Compares the layout options the checkpoint fixes (stride placement, biases, BN
    epsilon, pre-activation, ...) with the model's configuration. A torchvision
    checkpoint does not fix ``stride_on`` (caffe-style checkpoints with the same names
    stride on the 1x1 conv), so that one is left to the model.
    """
    config = getattr(checkpoint, "config", None)
    have = resnet_config(model)
    if not config or have is None:
        return
    wrong = []
    for option in LAYOUT_OPTIONS:
        if option not in config or (option == "stride_on" and checkpoint.origin == "torchvision"):
            continue
        if option == "stride_on" and have["block"] != "bottleneck":
            continue
        want, got = config[option], have.get(option)
        same = np.isclose(want, got, rtol=1e-9, atol=0) if option == "bn_epsilon" else want == got
        if not same:
            wrong.append(f"{option}={want!r} (model has {got!r})")
    if wrong:
        hint = ("build the model with those options (keras_resnet.weights.checkpoint_options(path) "
                "returns the layout ones), or let keras_resnet.weights.convert(path) build it")
        raise ValueError(
            f"{source} holds {checkpoint.describe()}, which needs {', '.join(wrong)}; {hint}"
        )


def arch_summary(config):
    return f"{config.get('block')} blocks {list(config.get('stackwise_num_blocks', []))}"


def assign(model, arrays, source="weights"):
    """Set ``model``'s weights from ``{layer name: arrays}``, all or nothing.

    A classifier in ``arrays`` is skipped when the model has none (``include_top=False``).
    When ``arrays`` is a :class:`Checkpoint`, errors name the checkpoint's own keys and
    shapes.
    """
    keys = arrays.source_keys if isinstance(arrays, Checkpoint) else {}
    shapes = arrays.source_shapes if isinstance(arrays, Checkpoint) else {}
    key_for = getattr(arrays, "key_for", None)
    top = find_layer(model, "predictions")
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
        current = layer.get_weights()
        if name not in arrays:
            if key_for is not None:
                problems.append(
                    f"key '{key_for(name, 0)}' is not in the checkpoint (model layer '{name}', "
                    f"shape {array_shape(current[0])})"
                )
            else:
                problems.append(f"missing weights for layer '{name}'")
            continue
        given = arrays[name]
        if len(given) != len(current):
            where = f" (keys {', '.join(keys[name])})" if name in keys else ""
            problems.append(
                f"layer '{name}' has {len(current)} weight arrays; {source} has {len(given)}{where}"
            )
            continue
        for i, (c, g) in enumerate(zip(current, given)):
            if tuple(c.shape) != array_shape(g):
                if name in keys:
                    src = shapes.get(name, [None] * len(given))[i]
                    layout = f" (as Keras {array_shape(g)})" if src is not None and tuple(src) != array_shape(g) else ""
                    problems.append(
                        f"key '{keys[name][i]}' has shape {tuple(src) if src else array_shape(g)}{layout}; "
                        f"model layer '{name}' weight {i} has shape {tuple(c.shape)}"
                    )
                else:
                    problems.append(
                        f"layer '{name}' weight {i}: model shape {tuple(c.shape)}, "
                        f"{source} shape {array_shape(g)}"
                    )
        plan.append((layer, given))
    unexpected = sorted(set(arrays) - set(expected) - ({"predictions"} if top is None else set()))
    for n in unexpected:
        if n in keys:
            problems.append(
                f"unexpected key '{keys[n][0]}' (shape {tuple(shapes[n][0])}): the model has no layer '{n}'"
            )
        else:
            problems.append(f"unexpected weights for layer '{n}' (not in {model.name})")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        prefix = ""
        config = getattr(arrays, "config", None)
        if config and hasattr(model, "get_config") and isinstance(model.get_config(), dict):
            have = model.get_config()
            if any(have.get(k) is not None and config.get(k) != have.get(k) for k in _ARCH_OPTIONS):
                prefix = (
                    f"{source} holds {arrays.describe()} ({arch_summary(config)}); "
                    f"{model.name} has {arch_summary(have)}: "
                )
        if not prefix:
            prefix = f"{source} does not fit {model.name}: "
        raise ValueError(f"{prefix}{problems[0]}{more}")
    for layer, given in plan:
        layer.set_weights(given)


def source_checkpoint(source, model=None):
    """(Checkpoint, description) from a path, a keras model, or a state_dict."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return read(path, model), f"weights file {path!r}"
    if isinstance(source, keras.Model):
        return checkpoint_from_model(source, f"model '{source.name}'"), f"model '{source.name}'"
    if isinstance(source, dict):
        return from_torch_state_dict(source, "state_dict"), "state_dict"
    raise ValueError(
        f"weights source of type {type(source).__name__} is not supported; accepted: a file path, "
        "a keras.applications ResNet model, or a torchvision/timm state_dict"
    )


def load_weights(model, path):
    """Load the weights in ``path`` into ``model`` (see the module docstring).

    ``path`` may also be a keras.applications ResNet model or a torchvision/timm
    ``state_dict`` (a dict of arrays or tensors).
    """
    checkpoint, source = source_checkpoint(path, model)
    check_layout(model, checkpoint, source)
    assign(model, checkpoint, source=source)
    return model


# ----------------------------------------------------------------------------------------
# Building the model a checkpoint fits


def inspect_checkpoint(source):
    """The :class:`Checkpoint` of ``source`` (path, keras.applications model or state_dict)."""
    return source_checkpoint(source)[0]


def checkpoint_options(source):
    """``ResNet`` keyword arguments a checkpoint's layout needs, beyond its depth.

    For a named constructor::

        path = "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
        model = keras_resnet.ResNet50(weights=path, **keras_resnet.weights.checkpoint_options(path))

    gives a keras.applications ResNet50 file the v1 layout it was trained with
    (torchvision/timm checkpoints need nothing: theirs is the default layout). Includes
    ``classes`` when the checkpoint has a classifier. Options that choose the network
    (``preact``, ``stem``, ``shortcut``, ``residual``) are left out: they come with the
    constructor's name, and loading reports a conflict. Returns ``{}`` for keras_resnet's
    own ``.keras`` / ``.weights.h5`` files, which need no options.
    """
    keep = ("stride_on", "stride_block", "stackwise_strides", "use_bias", "bn_epsilon",
            "bn_momentum", "classes")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith(".h5") and os.path.isfile(path) and h5_kind(path) == "keras3":
            spec = keras_applications_spec(path)  # no need to build anything
            if spec is None:
                return {}
            name, kwargs = spec
            options = dict(KERAS_V2 if name.endswith("V2") else KERAS_V1)
            options["stackwise_strides"] = [2, 2, 2, 1] if name.endswith("V2") else [1, 2, 2, 2]
            if "classes" in kwargs:
                options["classes"] = kwargs["classes"]
            return {k: v for k, v in options.items() if k in keep}
    checkpoint = source if isinstance(source, Checkpoint) else inspect_checkpoint(source)
    options = {k: v for k, v in checkpoint.config.items() if k in keep}
    if checkpoint.origin == "torchvision":
        options.pop("stride_on", None)  # not fixed by the weights; 3x3 unless asked
    return options


