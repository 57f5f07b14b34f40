"""Keras conventions: misspelt arguments, preprocess_input, preprocessing inside the model,
and what weights="imagenet" says."""

import numpy as np
import pytest

import keras
import keras_resnet as kr
from keras_resnet.preprocessing import preprocess_input


def test_named_constructors_reject_unknown_keyword_arguments_like_keras_applications():
    with pytest.raises(TypeError):
        keras.applications.ResNet50(weights=None, clases=3)  # the behaviour to match
    with pytest.raises(TypeError, match="unexpected keyword argument 'clases'"):
        kr.ResNet18(weights=None, clases=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'input_shap'"):
        kr.ResNet20CIFAR(input_shap=(32, 32, 3))


def test_preprocess_input_matches_each_convention_written_out():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess_input(x, "torch"), (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(preprocess_input(x, "tf"), x / 127.5 - 1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(preprocess_input(x, "caffe"),
                               x[..., ::-1] - np.array([103.939, 116.779, 123.68]), atol=1e-4)
    np.testing.assert_array_equal(preprocess_input(x, "none"), x)
    # keras.applications' own functions agree (a second implementation).
    from keras.applications import resnet, resnet_v2

    np.testing.assert_allclose(preprocess_input(x, "caffe"), resnet.preprocess_input(x.copy()), atol=1e-4)
    np.testing.assert_allclose(preprocess_input(x, "tf"), resnet_v2.preprocess_input(x.copy()), atol=1e-5)
    run = {"scale": [0.5], "offset": [-1.0]}
    np.testing.assert_allclose(preprocess_input(x[..., :1], run), x[..., :1] * 0.5 - 1)
    t = preprocess_input(keras.ops.convert_to_tensor(x), "torch")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(t), preprocess_input(x, "torch"), rtol=1e-6)
    with pytest.raises(ValueError, match="accepted: torch, tf, caffe, none"):
        preprocess_input(x, "inception")


def test_preprocess_input_mode_is_named_or_follows_the_model():
    x = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    # No default: keras.applications.resnet.preprocess_input (the name users know) is caffe.
    with pytest.raises(TypeError, match=r"needs mode= .* or model=; it has no default"):
        preprocess_input(x)
    baked = kr.ResNet20CIFAR(include_preprocessing=True, preprocessing="tf")
    np.testing.assert_array_equal(preprocess_input(x, model=baked), x)  # it takes pixels
    np.testing.assert_array_equal(np.asarray(baked(preprocess_input(x, model=baked))),
                                  np.asarray(baked(x)))
    with pytest.raises(ValueError, match="has no preprocessing inside.*pass mode="):
        preprocess_input(x, model=kr.ResNet20CIFAR())
    assert kr.preprocess_input is preprocess_input


def test_include_preprocessing_takes_pixels_and_survives_a_keras_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    keras.utils.set_random_seed(0)
    plain = kr.ResNet20CIFAR(classifier_activation=None)
    baked = kr.ResNet20CIFAR(classifier_activation=None, include_preprocessing=True, preprocessing="tf")
    assert len(baked.layers) == len(plain.layers) + 1
    baked.set_weights(plain.get_weights())  # the preprocessing layer has no weights
    want = np.asarray(plain(preprocess_input(x, "tf"), training=False))
    np.testing.assert_allclose(np.asarray(baked(x, training=False)), want, rtol=1e-5, atol=1e-5)
    baked.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_config()["include_preprocessing"] is True
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="reverses the channels"):
        kr.ResNet20CIFAR(include_preprocessing=True, preprocessing="caffe")


def test_weights_imagenet_explains_how_to_import_public_weights():
    with pytest.raises(ValueError, match="downloads nothing.*keras-resnet-convert"):
        kr.ResNet50(weights="imagenet")
