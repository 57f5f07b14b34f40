"""Importing keras.applications ResNet / ResNetV2 weights.

The expectation is keras.applications itself: a keras.applications model with random
weights (random conv biases and BatchNorm statistics, so every array matters) and the
keras_resnet model converted from it must compute the same outputs on random images.
"""


import keras
import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import weights as W

from conftest import randomize_weights, run_python

SIZE = 64  # keras.applications' minimum is 32; small inputs keep the tests fast
ARCHS = ["ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2"]


def randomize(model, seed=0):
    """Random biases and BN statistics too (their defaults are 0/1); kernels as initialized."""
    return randomize_weights(model, np.random.default_rng(seed), bias_noise=0.1)


def app_model(arch, **kwargs):
    kwargs.setdefault("input_shape", (SIZE, SIZE, 3))
    kwargs.setdefault("classes", 10)
    kwargs.setdefault("classifier_activation", None)
    return randomize(getattr(keras.applications, arch)(weights=None, **kwargs))


def images(n=2, size=SIZE, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_model_computes_what_keras_applications_computes(arch):
    app = app_model(arch)
    model = W.convert(app)
    assert isinstance(model, kr.ResNet)
    x = images()
    want = np.asarray(app(x, training=False))
    assert np.std(want) > 1e-3  # a non-degenerate function
    assert max_diff(model(x, training=False), want) <= 1e-4
    # Every keras.applications weight array was carried over (same count, same total size).
    assert len(model.weights) == len(app.weights)
    assert model.count_params() == app.count_params()


def test_converted_model_keeps_top_options_of_the_source():
    app = app_model("ResNet50V2", include_top=False, pooling="max")
    model = W.convert(app)
    x = images()
    assert model.output_shape == app.output_shape == (None, 2048)
    assert max_diff(model(x), app(x)) <= 1e-4


def test_softmax_source_converts_to_softmax_model():
    app = app_model("ResNet50", classifier_activation="softmax")
    model = W.convert(app)
    x = images()
    out = np.asarray(model(x))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert max_diff(out, app(x)) <= 1e-5


@pytest.mark.slow
def test_keras2_h5_weights_file_as_keras_applications_downloads_it(tmp_path):
    # tf_keras (Keras 2) writes the HDF5 layout of the files keras.applications downloads.
    path, ref = tmp_path / "resnet50v2_tf_kernels.h5", tmp_path / "ref.npz"
    run_python(f"""
        import numpy as np, tf_keras
        rng = np.random.default_rng(0)
        m = tf_keras.applications.ResNet50V2(weights=None, input_shape=({SIZE}, {SIZE}, 3), classes=10)
        for layer in m.layers:
            ws = layer.get_weights()
            if len(ws) == 4:
                ws = [rng.uniform(0.5, 1.5, w.shape).astype("float32") if i in (0, 3)
                      else rng.normal(0, 0.2, w.shape).astype("float32") for i, w in enumerate(ws)]
            elif len(ws) == 2:
                ws = [ws[0], rng.normal(0, 0.1, ws[1].shape).astype("float32")]
            layer.set_weights(ws)
        m.save_weights({str(path)!r})
        x = rng.uniform(-1, 1, (2, {SIZE}, {SIZE}, 3)).astype("float32")
        np.savez({str(ref)!r}, x=x, y=m.predict(x, verbose=0))
    """, env={"TF_USE_LEGACY_KERAS": "1"})
    data = np.load(ref)
    model = W.convert(str(path))
    assert model.name == "resnet50v2"
    assert max_diff(model(data["x"]), data["y"]) <= 1e-4
    # weights=<path> in a constructor, with the layout the checkpoint needs.
    options = W.checkpoint_options(str(path))
    assert options["use_bias"] == "unnormalized" and options["stride_block"] == "last"
    named = kr.PreActResNet50(weights=str(path), input_shape=(SIZE, SIZE, 3), **options)
    assert max_diff(named(data["x"]), data["y"]) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".keras", ".weights.h5", ".h5"])
def test_keras3_files_of_a_keras_applications_model(tmp_path, suffix):
    app = app_model("ResNet50")
    path = str(tmp_path / f"resnet50{suffix}")
    if suffix == ".weights.h5":
        app.save_weights(path)
    else:
        app.save(path)  # .h5: Keras' legacy whole-model HDF5 file
    x = images()
    want = np.asarray(app(x))
    # A .keras file carries the classifier's activation (None here); weights files do not.
    model = W.convert(path) if suffix == ".keras" else W.convert(path, classifier_activation=None)
    assert max_diff(model(x), want) <= 1e-4
    options = W.checkpoint_options(path)
    assert options["stride_on"] == "1x1" and options["use_bias"] is True
    named = kr.ResNet50(weights=path, input_shape=(SIZE, SIZE, 3), classifier_activation=None, **options)
    assert max_diff(named(x), want) <= 1e-4


def test_layout_mismatch_is_reported_before_anything_is_written(tmp_path):
    app = app_model("ResNet50")
    path = str(tmp_path / "resnet50.weights.h5")
    app.save_weights(path)
    # The torchvision layout (ResNet's defaults) is not what these weights compute.
    with pytest.raises(ValueError, match=r"keras.applications ResNet50.*stride_on='1x1'.*use_bias=True"):
        kr.ResNet([3, 4, 6, 3], [64, 128, 256, 512], block="bottleneck", weights=path,
                  input_shape=(SIZE, SIZE, 3), classes=10)
    with pytest.raises(ValueError, match=r"preact=False \(model has True\)"):
        kr.PreActResNet50(weights=path, input_shape=(SIZE, SIZE, 3), **W.checkpoint_options(path))


def test_wrong_depth_names_the_key_and_both_shapes_and_loads_nothing(tmp_path):
    app = app_model("ResNet50")
    path = str(tmp_path / "resnet50.keras")
    app.save(path)
    options = W.checkpoint_options(path)
    model = kr.ResNet101(input_shape=(SIZE, SIZE, 3), **options)
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ValueError) as e:
        W.load_weights(model, path)
    msg = str(e.value)
    assert "keras.applications ResNet50 (bottleneck blocks [3, 4, 6, 3])" in msg
    assert "resnet101 has bottleneck blocks [3, 4, 23, 3]" in msg
    assert "conv4_block7_1_conv/kernel" in msg  # the keras.applications key the model needs
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))

    # A shape mismatch: a single-channel model.
    gray = kr.ResNet50(input_shape=(SIZE, SIZE, 1), **options)
    with pytest.raises(ValueError) as e:
        W.load_weights(gray, path)
    assert "key 'conv1_conv/kernel' has shape (7, 7, 3, 64)" in str(e.value)
    assert "'stem_conv' weight 0 has shape (7, 7, 1, 64)" in str(e.value)


def test_layer_name_mapping_round_trips():
    app = keras.applications.ResNet50V2(weights=None, input_shape=(SIZE, SIZE, 3))
    ours = kr.ResNet(
        [3, 4, 6, 3], [64, 128, 256, 512], block="bottleneck", preact=True, stride_block="last",
        stackwise_strides=[2, 2, 2, 1], use_bias="unnormalized", bn_epsilon=1.001e-5,
        input_shape=(SIZE, SIZE, 3),
    )
    mapped = {W.keras_applications_name(l.name) for l in app.layers if l.weights}
    assert mapped == {l.name for l in ours.layers if l.weights}
    assert all(W.to_keras_applications_name(W.keras_applications_name(l.name)) == l.name for l in app.layers if l.weights)


def test_preprocessing_matches_keras_applications_preprocess_input():
    from keras_resnet.data import apply_preprocessing

    pixels = np.random.default_rng(5).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    v2 = keras.applications.resnet_v2.preprocess_input(pixels.copy())
    np.testing.assert_allclose(
        apply_preprocessing(pixels, W.PREPROCESSING["keras.applications.resnet_v2"]), v2, rtol=1e-5, atol=1e-5)
    # caffe mode: keras.applications reverses RGB to BGR itself; here the caller does.
    v1 = keras.applications.resnet.preprocess_input(pixels.copy())
    np.testing.assert_allclose(
        apply_preprocessing(pixels[..., ::-1], W.PREPROCESSING["keras.applications.resnet"]), v1, rtol=1e-5, atol=1e-4)
