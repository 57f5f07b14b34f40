"""What a model costs: parameters, multiply-adds (two independent counts) and measured time.

    from keras_resnet import complexity
    model = keras_resnet.ResNet50()
    complexity.multiply_adds(model)             # 4,089,184,256: conv and dense layers, batch 1
    complexity.profiler_multiply_adds(model)    # the same, from TensorFlow's profiler

Multiply-adds are counted as the ResNet paper counts its "FLOPs" (He et al. 2015, Table 1:
ResNet-34 3.6 x 10^9, ResNet-50 3.8 x 10^9): one per multiply-accumulate of a convolution or
fully connected layer, for one image; batch normalization, activations, additions and
pooling are not counted.

Two methods that share no code:

* :func:`multiply_adds` reads each layer's configuration and the shapes of the built Keras
  graph: a convolution costs ``output height x output width x filters x kernel area x
  input channels / groups``, a dense layer ``inputs x units``;
* :func:`profiler_multiply_adds` freezes the model's inference function into a TensorFlow
  graph and asks TensorFlow's profiler (``tf.compat.v1.profiler``) for the floating-point
  operations that TensorFlow registers for each ``Conv2D`` and ``MatMul`` op, which count
  a multiply-add as two operations.

:func:`time_steps` measures training-step and inference time of several models, alternated
in one process so that a shared machine's load affects them alike.
"""

import re
import statistics
import time

_BLOCK = re.compile(r"(stage\d+_block\d+)_")


def _dims(shape):
    return [int(d) for d in shape[1:]]


def layer_costs(model):
    """``[(layer name, class name, parameters, multiply-adds)]`` for every layer of a
    built functional ``model`` (multiply-adds for one image; 0 for layers without any)."""
    import keras

    out = []
    for layer in model.layers:
        params = int(layer.count_params()) if layer.weights else 0
        macs = 0
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv1D)) and not isinstance(
                layer, keras.layers.DepthwiseConv2D):
            cfg = layer.get_config()
            in_channels = _dims(layer.input.shape)[-1]
            out_positions = 1
            for d in _dims(layer.output.shape)[:-1]:
                out_positions *= d
            kernel = 1
            for k in cfg["kernel_size"]:
                kernel *= int(k)
            groups = int(cfg.get("groups", 1))
            macs = out_positions * cfg["filters"] * kernel * (in_channels // groups)
        elif isinstance(layer, keras.layers.Dense):
            dims = _dims(layer.input.shape)
            positions = 1
            for d in dims[:-1]:
                positions *= d
            macs = positions * dims[-1] * int(layer.get_config()["units"])
        out.append((layer.name, type(layer).__name__, params, macs))
    return out


def multiply_adds(model):
    """Multiply-adds of one forward pass of ``model`` for one image, counted from the
    layers' configurations and the built graph's shapes (convolutions and dense layers)."""
    _check_built(model)
    return sum(c[3] for c in layer_costs(model))


def block_costs(model):
    """``{"stage{s}_block{b}": (parameters, multiply-adds)}``: each residual block's share
    (its convolutions, batch normalizations and shortcut), from :func:`layer_costs`."""
    _check_built(model)
    out = {}
    for name, _, params, macs in layer_costs(model):
        m = _BLOCK.match(name)
        if m:
            p, a = out.get(m.group(1), (0, 0))
            out[m.group(1)] = (p + params, a + macs)
    return out


def _check_built(model):
    shape = getattr(model, "input_shape", None)
    if not shape or any(d is None for d in tuple(shape)[1:]):
        raise ValueError(f"model {getattr(model, 'name', model)!r} has input shape {shape}; "
                         "counting multiply-adds needs a fixed image size (build it with "
                         "input_shape=(height, width, channels))")


def profiler_multiply_adds(model):
    """Multiply-adds of one inference pass of ``model`` for one image, from TensorFlow's
    profiler on the frozen graph: the ``Conv2D`` and ``MatMul`` floating-point operations
    TensorFlow registers (two per multiply-add), halved. Returns ``(multiply-adds,
    {op type: floating-point operations})`` with every op type the profiler counted."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    _check_built(model)
    spec = tf.TensorSpec((1,) + tuple(model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(fn)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, cmd="op", options=options)
    # The "op" view nests each op type under the previous one, with cumulative totals:
    # walk it and take each type's own operations.
    by_op, nodes = {}, list(profile.children)
    while nodes:
        node = nodes.pop()
        by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops)
        nodes.extend(node.children)
    flops = sum(v for k, v in by_op.items() if k in ("Conv2D", "MatMul"))
    if flops % 2:
        raise RuntimeError(f"TensorFlow's profiler counted an odd number of Conv2D/MatMul "
                           f"operations ({flops}); expected two per multiply-add")
    return flops // 2, by_op


def time_steps(models, batch_size=8, steps=5, warmup=2, seed=0):
    """Median seconds of one training step and of one inference batch of each model in
    ``models`` (``{label: model}``), on random images and labels of ``batch_size``.

    Each model is compiled with SGD and sparse cross-entropy (``train_on_batch``) and run
    ``warmup`` times untimed (tracing); then the models take turns, one step each,
    ``steps`` rounds, so that a change in the machine's load hits all of them. Returns
    ``{label: {"train_step_s", "inference_s", "train_steps", "inference_steps"}}``."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    data = {}
    for label, model in models.items():
        shape = (batch_size,) + tuple(model.input_shape[1:])
        classes = int(model.output_shape[-1])
        data[label] = (rng.uniform(0, 1, shape).astype("float32"),
                       rng.integers(0, classes, batch_size).astype("int32"))
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    for label, model in models.items():
        x, y = data[label]
        for _ in range(warmup):
            model.train_on_batch(x, y)
            model.predict_on_batch(x)
    train = {label: [] for label in models}
    infer = {label: [] for label in models}
    for _ in range(steps):
        for label, model in models.items():
            x, y = data[label]
            t = time.perf_counter()
            model.train_on_batch(x, y)
            train[label].append(time.perf_counter() - t)
            t = time.perf_counter()
            np.asarray(model.predict_on_batch(x))
            infer[label].append(time.perf_counter() - t)
    return {label: dict(train_step_s=statistics.median(train[label]),
                        inference_s=statistics.median(infer[label]),
                        train_steps=len(train[label]), inference_steps=len(infer[label]))
            for label in models}
