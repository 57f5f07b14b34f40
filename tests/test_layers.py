"""Public layers: behaviour against independent NumPy computations, configs, user models."""

import keras
import numpy as np
import pytest

from conftest import as_numpy

import keras_resnet as kr


def _numpy_option_a(x, filters, stride):
    sub = x[:, ::stride, ::stride, :]
    extra = filters - x.shape[-1]
    before = extra // 2
    return np.pad(sub, [(0, 0), (0, 0), (0, 0), (before, extra - before)])


@pytest.mark.parametrize("shape,filters,stride", [((2, 8, 8, 16), 32, 2), ((1, 7, 9, 3), 8, 2), ((2, 6, 6, 4), 4, 3)])
def test_zero_pad_shortcut_matches_numpy(shape, filters, stride, rng):
    x = rng.standard_normal(shape).astype("float32")
    layer = kr.ZeroPadShortcut(filters, stride)
    y = as_numpy(layer(x))
    np.testing.assert_array_equal(y, _numpy_option_a(x, filters, stride))
    assert layer.count_params() == 0
    assert tuple(layer.compute_output_shape(shape)) == y.shape


def test_zero_pad_shortcut_rejects_fewer_filters_than_inputs():
    with pytest.raises(ValueError, match="filters=8 must be at least"):
        kr.ZeroPadShortcut(8)(np.zeros((1, 4, 4, 16), "float32"))


def _conv_numpy(x, kernel, stride, pad):
    """Direct convolution with PyTorch's symmetric zero padding (an independent reference)."""
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    k = kernel.shape[0]
    n, h, w, _ = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, oh, ow, kernel.shape[-1]), "float64")
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _bn_numpy(x, layer):
    gamma, beta, mean, var = (as_numpy(w, "float64") for w in layer.get_weights())
    return gamma * (x - mean) / np.sqrt(var + layer.epsilon) + beta


def _randomise(layer_or_model, rng):
    for w in layer_or_model.weights:
        value = rng.standard_normal(w.shape) * 0.3
        if "variance" in w.path:
            value = rng.uniform(0.5, 2.0, w.shape)
        w.assign(value.astype("float32"))


@pytest.mark.parametrize("stride,shortcut", [(2, "B"), (1, "C"), (2, "A")])
def test_basic_block_matches_numpy_reference(stride, shortcut, rng):
    """Post-activation basic block = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
    x = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    block = kr.BasicBlock(6, strides=stride, shortcut=shortcut)
    block.build(x.shape)
    _randomise(block, rng)
    p = block.parts
    h = _conv_numpy(x, as_numpy(p["conv1"].kernel), stride, 1)
    h = np.maximum(_bn_numpy(h, p["bn1"]), 0)
    h = _bn_numpy(_conv_numpy(h, as_numpy(p["conv2"].kernel), 1, 1), p["bn2"])
    if shortcut == "A":
        s = _numpy_option_a(x, 6, stride)
    else:
        s = _bn_numpy(_conv_numpy(x, as_numpy(p["shortcut_conv"].kernel), stride, 0), p["shortcut_bn"])
    want = np.maximum(h + s, 0)
    got = as_numpy(block(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride_on", ["3x3", "1x1"])
def test_preact_bottleneck_matches_numpy_reference(stride_on, rng):
    """Pre-activation bottleneck; a projection reads the pre-activated input."""
    x = rng.standard_normal((2, 9, 9, 8)).astype("float32")
    block = kr.BottleneckBlock(4, strides=2, preact=True, stride_on=stride_on)
    block.build(x.shape)
    _randomise(block, rng)
    p = block.parts
    a = np.maximum(_bn_numpy(x, p["preact_bn"]), 0)
    s1, s2 = (2, 1) if stride_on == "1x1" else (1, 2)
    h = np.maximum(_bn_numpy(_conv_numpy(a, as_numpy(p["conv1"].kernel), s1, 0), p["bn1"]), 0)
    h = np.maximum(_bn_numpy(_conv_numpy(h, as_numpy(p["conv2"].kernel), s2, 1), p["bn2"]), 0)
    h = _conv_numpy(h, as_numpy(p["conv3"].kernel), 1, 0)
    s = _conv_numpy(a, as_numpy(p["shortcut_conv"].kernel), 2, 0)
    got = as_numpy(block(x, training=False))
    assert got.shape == (2, 5, 5, 16)
    np.testing.assert_allclose(got, h + s, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls,kwargs", [
    (kr.BasicBlock, dict(preact=False)),
    (kr.BasicBlock, dict(preact=True)),
    (kr.BottleneckBlock, dict(preact=False)),
    (kr.BottleneckBlock, dict(preact=True, stride_on="1x1")),
])
def test_zero_init_block_is_identity(cls, kwargs, rng):
    channels = 16 if cls is kr.BasicBlock else 64
    filters = 16
    x = rng.standard_normal((3, 6, 6, channels)).astype("float32")
    if not kwargs["preact"]:
        x = np.maximum(x, 0)  # a post-activation block's input comes out of a ReLU
    block = cls(filters, zero_init=True, **kwargs)
    for training in (False, True):
        np.testing.assert_array_equal(as_numpy(block(x, training=training)), x)
    # Without zero-init the same block is not the identity.
    other = cls(filters, zero_init=False, **kwargs)
    assert not np.allclose(as_numpy(other(x, training=False)), x)


def _identity_blocks(model):
    """(input layer name, output layer name) of every identity-shortcut block."""
    out, previous = [], None
    names = [l.name for l in model.layers]
    for name in names:
        if name.endswith("_out") and name.startswith("stage"):
            prefix = name[: -len("out")]
            has_shortcut_layer = any(n.startswith(prefix + "shortcut") for n in names)
            if previous is not None and not has_shortcut_layer:
                out.append((previous, name))
            previous = name
    return out


@pytest.mark.parametrize("ctor,kwargs", [
    (kr.ResNet20CIFAR, {}),
    (kr.ResNet18, dict(input_shape=(64, 64, 3))),
    (kr.ResNet50, dict(input_shape=(64, 64, 3))),
    (kr.PreActResNet164CIFAR, {}),
    (kr.PreActResNet34, dict(input_shape=(64, 64, 3))),
])
def test_zero_init_models_identity_blocks_return_their_input(ctor, kwargs, rng):
    model = ctor(zero_init=True, **kwargs)
    pairs = _identity_blocks(model)
    assert len(pairs) >= 3
    tensors = [t for a, b in pairs for t in (model.get_layer(a).output, model.get_layer(b).output)]
    probe = keras.Model(model.input, tensors)
    x = rng.standard_normal((2, *model.input_shape[1:])).astype("float32")
    values = [as_numpy(v) for v in probe(x, training=False)]
    for i, (a, b) in enumerate(pairs):
        np.testing.assert_allclose(values[2 * i + 1], values[2 * i], rtol=0, atol=1e-6, err_msg=b)
    # And without zero-init they are not.
    model = ctor(zero_init=False, **kwargs)
    a, b = pairs[-1]
    probe = keras.Model(model.input, [model.get_layer(a).output, model.get_layer(b).output])
    u, v = (as_numpy(t) for t in probe(x, training=False))
    assert not np.allclose(u, v, atol=1e-3)


PUBLIC_LAYERS = [
    (kr.ZeroPadShortcut, dict(filters=24, strides=2)),
    (kr.ProjectionShortcut, dict(filters=24, strides=2, normalize=True)),
    (kr.ProjectionShortcut, dict(filters=24, strides=1, normalize=False, use_bias=True)),
    (kr.BasicBlock, dict(filters=24, strides=2, shortcut="A", zero_init=True)),
    (kr.BasicBlock, dict(filters=16, preact=True, use_bias="unnormalized", residual=False)),
    (kr.BottleneckBlock, dict(filters=8, strides=2, shortcut="C", stride_on="1x1", bn_epsilon=1.001e-5)),
    (kr.BottleneckBlock, dict(filters=4, preact=True, expansion=2)),
]


@pytest.mark.parametrize("cls,kwargs", PUBLIC_LAYERS)
def test_public_layer_config_round_trip(cls, kwargs, rng):
    x = rng.standard_normal((2, 8, 8, 16)).astype("float32")
    layer = cls(**kwargs)
    y = layer(x, training=False) if cls is not kr.ZeroPadShortcut else layer(x)
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(as_numpy(clone(x)), as_numpy(layer(x)))
    assert as_numpy(y).shape == as_numpy(clone(x)).shape
    # Also through keras' generic (de)serialisation, as .keras files use it.
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is cls and again.get_config() == config


def test_layers_in_sequential_functional_and_subclassed_models(rng, tmp_path):
    x = rng.standard_normal((2, 16, 16, 3)).astype("float32")
    seq = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(16, 3, padding="same"),
        kr.BasicBlock(16),
        kr.BasicBlock(32, strides=2, shortcut="A"),
        kr.BottleneckBlock(16, strides=2),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4),
    ])
    assert tuple(seq(x).shape) == (2, 4)

    inp = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same")(inp)
    h = kr.basic_block(h, 8, name="mine1")
    h = kr.bottleneck_block(h, 8, strides=2, name="mine2", preact=True)
    fn = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(h))
    assert tuple(fn(x).shape) == (2, 32)
    assert fn.get_layer("mine2_shortcut_conv").strides == (2, 2)

    class Tiny(keras.Model):
        def __init__(self):
            super().__init__()
            self.stem = keras.layers.Conv2D(16, 3, padding="same")
            self.block = kr.BasicBlock(16, zero_init=True)
            self.head = keras.layers.GlobalAveragePooling2D()

        def call(self, t, training=False):
            return self.head(self.block(self.stem(t), training=training))

    tiny = Tiny()
    assert tuple(tiny(x).shape) == (2, 16)

    # A Sequential with block layers survives a .keras round trip (safe mode).
    path = tmp_path / "seq.keras"
    seq.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(as_numpy(loaded(x)), as_numpy(seq(x)), rtol=1e-6, atol=1e-6)


def test_block_functions_and_layers_share_one_definition():
    x = keras.Input((8, 8, 16))
    y = kr.bottleneck_block(x, 8, strides=2, preact=True, name="x")
    roles = sorted(layer.name[len("x_"):] for layer in keras.Model(x, y).layers[1:])
    assert roles == sorted([
        "preact_bn", "preact_relu", "conv1", "bn1", "relu1", "pad2", "conv2", "bn2", "relu2",
        "conv3", "shortcut_conv", "out",
    ])
    layer = kr.BottleneckBlock(8, strides=2, preact=True)
    layer.build((None, 8, 8, 16))
    assert sorted(part.name for part in layer.parts.values()) == roles


@pytest.mark.parametrize("kwargs,match", [
    (dict(filters=0), "filters=0"),
    (dict(filters=8, shortcut="D"), r"shortcut='D'.*'A', 'B', 'C'"),
    (dict(filters=8, strides=0), "strides=0"),
    (dict(filters=8, use_bias="yes"), "use_bias='yes'"),
])
def test_block_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kr.BasicBlock(**kwargs)


def test_bottleneck_bad_stride_on():
    with pytest.raises(ValueError, match=r"stride_on='2x2'.*'3x3', '1x1'"):
        kr.BottleneckBlock(8, stride_on="2x2")
