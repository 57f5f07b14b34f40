"""Saving, loading, configs, weights files, tf_keras, and argument errors."""

import json

import keras
import numpy as np
import pytest
from conftest import as_numpy, run_python

import keras_resnet as kr

VARIANTS = {
    "cifar_a": lambda: kr.ResNet20CIFAR(input_shape=(16, 16, 3), zero_init=True),
    "preact_bottleneck": lambda: kr.ResNet(
        [1, 2], [8, 16], block="bottleneck", stem="cifar", preact=True, shortcut="C",
        input_shape=(16, 16, 3), classes=5, classifier_activation=None, name="pb"),
    "v2_layout": lambda: kr.ResNet(
        [2, 2, 1], [8, 16, 32], stackwise_strides=[2, 2, 1], block="bottleneck", preact=True,
        stride_block="last", use_bias="unnormalized", bn_epsilon=1.001e-5, input_shape=(32, 32, 3),
        classes=4, name="v2like"),
    "v1_layout_features": lambda: kr.ResNet(
        [1, 1, 1, 1], [8, 8, 16, 16], block="bottleneck", stride_on="1x1", use_bias=True,
        include_top=False, pooling="avg", input_shape=(None, None, 3), name="v1like"),
}


def _randomise(model, seed=1):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in w.path else rng.normal(0, 0.2, shape)
        w.assign(value.astype("float32"))


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_keras_files_load_in_a_fresh_process_with_safe_mode(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    x16 = x[:, :16, :16]
    for name, build in VARIANTS.items():
        model = build()
        _randomise(model)
        inp = x16 if model.input_shape[1] == 16 else x
        np.save(tmp_path / f"{name}_in.npy", inp)
        np.save(tmp_path / f"{name}_out.npy", as_numpy(model(inp, training=False)))
        model.save(tmp_path / f"{name}.keras")
    proc = run_python(f"""
        import json, numpy as np, keras
        import keras_resnet
        result = {{}}
        for name in {sorted(VARIANTS)!r}:
            m = keras.saving.load_model("{tmp_path}/" + name + ".keras", safe_mode=True)
            x = np.load("{tmp_path}/" + name + "_in.npy")
            want = np.load("{tmp_path}/" + name + "_out.npy")
            got = keras.ops.convert_to_numpy(m(x, training=False))
            result[name] = [type(m).__name__, float(np.abs(got - want).max())]
        print(json.dumps(result))
    """)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (cls, diff) in result.items():
        assert cls == "ResNet", name
        assert diff == 0.0, name


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_resnet_config_round_trip(name):
    model = VARIANTS[name]()
    config = model.get_config()
    json.dumps(config)  # plain JSON
    clone = kr.ResNet.from_config(config)
    assert clone.get_config() == config
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]


def test_weights_argument_loads_keras_and_weights_h5_files(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16, 3), dtype=np.float32)
    source = kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=7)
    _randomise(source)
    want = as_numpy(source(x, training=False))
    source.save(tmp_path / "m.keras")
    source.save_weights(tmp_path / "m.weights.h5")
    for path in (tmp_path / "m.keras", tmp_path / "m.weights.h5"):
        model = kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=7, weights=str(path))
        np.testing.assert_array_equal(as_numpy(model(x, training=False)), want)
        # include_top=False takes everything but the classifier.
        body = kr.ResNet20CIFAR(input_shape=(16, 16, 3), include_top=False, weights=path)
        full = keras.Model(source.input, source.get_layer("stage3_block3_out").output)
        np.testing.assert_array_equal(as_numpy(body(x, training=False)), as_numpy(full(x, training=False)))


def test_weights_file_errors(tmp_path):
    source = kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=7)
    source.save(tmp_path / "m.keras")
    source.save_weights(tmp_path / "m.weights.h5")
    for path in (tmp_path / "m.keras", tmp_path / "m.weights.h5"):
        with pytest.raises(ValueError, match=r"classes=10 does not match the 7 classes"):
            kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=10, weights=str(path))
    with pytest.raises(ValueError, match=r"does not fit resnet_cifar32: missing weights for layer 'stage1_block4_conv1'"):
        kr.ResNet32CIFAR(input_shape=(16, 16, 3), classes=7, weights=str(tmp_path / "m.keras"))
    with pytest.raises(ValueError, match="no such file"):
        kr.ResNet18(weights=str(tmp_path / "missing.keras"))
    (tmp_path / "w.txt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown file type"):
        kr.ResNet18(weights=str(tmp_path / "w.txt"))


def test_mismatched_load_leaves_model_untouched(tmp_path):
    source = kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=7)
    source.save(tmp_path / "m.keras")
    target = kr.ResNet32CIFAR(input_shape=(16, 16, 3), classes=7)
    before = [np.array(w) for w in target.weights]
    with pytest.raises(ValueError):
        kr.weights.load_weights(target, tmp_path / "m.keras")
    for b, w in zip(before, target.weights):
        np.testing.assert_array_equal(b, as_numpy(w))


@pytest.mark.parametrize("ctor,kwargs,match", [
    (kr.resnet_imagenet, dict(depth=19), r"depth=19.*\[18, 34, 50, 101, 152, 200\]"),
    (kr.resnet_cifar, dict(depth=21), r"depth=21.*6n\+2"),
    (kr.ResNet18, dict(shortcut="D"), r"shortcut='D'.*'A', 'B', 'C'"),
    (kr.ResNet18, dict(classes=0), r"classes=0.*positive integer"),
    (kr.ResNet18, dict(classes=-3), r"classes=-3"),
    (kr.ResNet18, dict(input_shape=(224, 224)), r"input_shape=\(224, 224\).*\(height, width, channels\)"),
    (kr.ResNet18, dict(input_shape=(3, 224, 224, 1)), r"input_shape"),
    (kr.ResNet18, dict(input_shape=(16, 224, 3)), r"height 16 is below.*minimum input size 32"),
    (kr.ResNet20CIFAR, dict(input_shape=(32, 2, 3)), r"width 2 is below.*minimum input size 4"),
    (kr.ResNet18, dict(pooling="mean"), r"pooling='mean'.*None, 'avg', 'max'"),
    (kr.ResNet, dict(stackwise_num_blocks=[1], stackwise_num_filters=[8], stem="tiny"),
     r"stem='tiny'.*'imagenet', 'cifar'"),
    (kr.ResNet18, dict(use_bias="some"), r"use_bias='some'"),
])
def test_bad_arguments_name_the_argument_and_accepted_values(ctor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ctor(**kwargs)


def test_general_constructor_bad_lists():
    with pytest.raises(ValueError, match=r"stackwise_num_filters=\[64\] has 1 entries; expected one per stage \(2\)"):
        kr.ResNet([2, 2], [64])
    with pytest.raises(ValueError, match=r"stackwise_num_blocks=\[2, 0\]"):
        kr.ResNet([2, 0], [64, 128])
    with pytest.raises(ValueError, match=r"block='wide'.*'basic', 'bottleneck'"):
        kr.ResNet([2, 2], [64, 128], block="wide")


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_same_model_code_runs_under_tf_keras(tmp_path):
    """The models build under tf_keras (TF_USE_LEGACY_KERAS=1) and compute the same function."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    builders = {
        "cifar_a": "kr.ResNet20CIFAR(input_shape=(32, 32, 3))",
        "preact18": "kr.PreActResNet18(input_shape=(32, 32, 3), classes=10, zero_init=False)",
        "v2_layout": VARIANTS_SRC,
    }
    ns = {"kr": kr}
    for name, src in builders.items():
        model = eval(src, ns)
        _randomise(model)
        arrays = {f"{l.name}/{i}": as_numpy(w) for l in model.layers for i, w in enumerate(l.get_weights())}
        np.savez(tmp_path / f"{name}.npz", **arrays)
        np.save(tmp_path / f"{name}_out.npy", as_numpy(model(x, training=False)))
    np.save(tmp_path / "x.npy", x)
    proc = run_python(f"""
        import json, numpy as np
        import keras_resnet as kr
        from keras_resnet._compat import keras, LEGACY
        import tf_keras
        assert LEGACY and keras is tf_keras
        x = np.load("{tmp_path}/x.npy")
        out = {{}}
        for name, src in {builders!r}.items():
            model = eval(src)
            assert isinstance(model, tf_keras.Model)
            arrays = np.load("{tmp_path}/" + name + ".npz")
            for layer in model.layers:
                n = len(layer.get_weights())
                if n:
                    layer.set_weights([arrays[layer.name + "/" + str(i)] for i in range(n)])
            got = model(x, training=False).numpy()
            want = np.load("{tmp_path}/" + name + "_out.npy")
            out[name] = float(np.abs(got - want).max())
        print(json.dumps(out))
    """, env={"TF_USE_LEGACY_KERAS": "1"})
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(diffs) == set(builders)
    for name, diff in diffs.items():
        assert diff < 1e-5, (name, diff)


VARIANTS_SRC = (
    "kr.ResNet([2, 1], [8, 16], stackwise_strides=[2, 1], block='bottleneck', preact=True, "
    "stride_block='last', use_bias='unnormalized', input_shape=(32, 32, 3), classes=4)"
)
