"""Grad-CAM (keras_resnet.explain) against the class activation map it must equal.

On a network whose last stage feeds global average pooling and a linear classifier,
the class score is ``y_c = sum_k w_kc * mean_ij A_k(ij) + b_c``, so the Grad-CAM channel
weights are ``alpha_k = w_kc / (h * w)`` and Grad-CAM is ``ReLU(CAM) / (h * w)``, with CAM
``sum_k w_kc A_k`` (Zhou et al. 2016). CAM is computed here independently, in NumPy, from
the feature map and the classifier's kernel.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet import explain

from conftest import randomize_weights


def _model(activation, preact=False):
    import keras

    keras.utils.set_random_seed(0)
    model = kr.ResNet([1, 1, 1], [16, 32, 64], stem="cifar", input_shape=(32, 32, 3), classes=5,
                      classifier_activation=activation, preact=preact)
    return randomize_weights(model, np.random.default_rng(0), kernel_noise=0.05, bias_noise=0.1)


def _cam(model, images, classes, layer):
    import keras

    features = np.asarray(keras.Model(model.input, model.get_layer(layer).output)(images), "float64")
    kernel = np.asarray(model.get_layer("predictions").kernel, "float64")       # [K, classes]
    return np.einsum("nhwk,nk->nhw", features, kernel[:, classes].T), features.shape[1] * features.shape[2]


@pytest.mark.parametrize("activation,preact", [(None, False), ("softmax", False), (None, True)])
def test_grad_cam_is_the_class_activation_map(activation, preact):
    model = _model(activation, preact)
    images = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    heat, classes = explain.grad_cam(model, images, return_classes=True)
    layer = explain.default_layer(model)
    assert layer == ("post_relu" if preact else "stage3_block1_out")
    cam, area = _cam(model, images, classes, layer)
    assert heat.shape == cam.shape == (3, 8, 8)
    want = np.maximum(cam, 0) / area          # the positive scale is 1 / (h * w)
    # float32 rounding: the sums run over 64 channels of values of the maps' scale.
    tol = 1e-5 * float(np.abs(cam).max()) / area
    assert float(np.abs(heat - want).max()) <= tol
    assert (heat > 0).any()
    # The lowest-scoring class: its map has negative parts, which the ReLU removes.
    import keras

    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)(images)
    logits = np.asarray(pooled) @ np.asarray(model.get_layer("predictions").kernel)
    np.testing.assert_array_equal(classes, np.argmax(logits, axis=1))
    low = np.argmin(logits, axis=1)
    heat_low = explain.grad_cam(model, images, class_index=low, layer=layer)
    cam_low, _ = _cam(model, images, low, layer)
    assert (cam_low < 0).any()   # with (heat > 0).any() above: neither half of the ReLU is vacuous
    tol = 1e-5 * float(np.abs(cam_low).max()) / area
    assert float(np.abs(heat_low - np.maximum(cam_low, 0) / area).max()) <= tol


def test_a_chosen_class_and_bad_arguments():
    model = _model(None)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    heat = explain.grad_cam(model, images, class_index=[4, 0])
    cam, area = _cam(model, images, np.array([4, 0]), "stage3_block1_out")
    assert float(np.abs(heat - np.maximum(cam, 0) / area).max()) <= 1e-5 * float(np.abs(cam).max()) / area
    with pytest.raises(ValueError, match=r"class_index=7 is not supported; expected None, an integer in 0..4"):
        explain.grad_cam(model, images, class_index=7)
    with pytest.raises(ValueError, match=r"layer='nope' is not a layer"):
        explain.grad_cam(model, images, layer="nope")
    with pytest.raises(ValueError, match=r"needs a convolutional feature map"):
        explain.grad_cam(model, images, layer="avg_pool")


@pytest.mark.slow
def test_explain_command_writes_one_overlay_per_image(tmp_path):
    """keras-resnet-explain on a .keras file and two photos: one PNG each, the photo's
    height, nothing else in the folder."""
    from PIL import Image

    model = _model("softmax")
    path = tmp_path / "m.keras"
    model.save(path)
    rng = np.random.default_rng(3)
    photos = []
    for i in range(2):
        p = tmp_path / f"photo{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(p)
        photos.append(str(p))
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\nowl\nbee\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-I", "-m", "keras_resnet.explain", str(path), *photos,
                        "--out", str(out), "--preprocessing", "none", "--labels", str(labels)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["photo0_gradcam.png", "photo1_gradcam.png"]
    with Image.open(out / "photo0_gradcam.png") as im:
        assert im.format == "PNG" and im.size[1] == 40 and im.size[0] > 48
    assert "top class" in r.stdout


def test_explain_command_refuses_a_missing_image_before_loading_anything(tmp_path):
    bad = subprocess.run([sys.executable, "-I", "-m", "keras_resnet.explain", str(tmp_path / "m.keras"),
                          str(tmp_path / "missing.png"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing.png does not exist" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["resnet20", "preactresnet20", "plain20", "ResNet18D",
                                  pytest.param("ResNeXt50_32x4d", marks=pytest.mark.slow),
                                  pytest.param("ECAResNet50D", marks=pytest.mark.slow)])
def test_grad_cam_on_registered_models_is_their_cam(name):
    """One model of each kind in the registry (CIFAR option A, pre-activation, plain,
    ResNet-D, grouped, ECA): the default layer feeds the linear head in every one."""
    import keras

    keras.utils.set_random_seed(0)
    model = kr.resolve_model(name)(input_shape=(32, 32, 3), classes=3)
    randomize_weights(model, np.random.default_rng(4), kernel_noise=0.01, bias_noise=0.1)
    images = np.random.default_rng(5).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    heat, classes = explain.grad_cam(model, images, return_classes=True)
    cam, area = _cam(model, images, classes, explain.default_layer(model))
    assert heat.shape == cam.shape
    tol = 1e-5 * float(np.abs(cam).max()) / area
    assert float(np.abs(heat - np.maximum(cam, 0) / area).max()) <= tol


# The other backends: a child process per backend (Keras picks its backend once, at import),
# isolated from the working directory. It computes Grad-CAM and the feature map with its own
# backend; CAM is computed here from that map and the classifier's kernel, as above.
_BACKEND_SIDE = r"""
import sys, numpy as np, keras
from keras_resnet import explain
folder, backend = sys.argv[1], sys.argv[2]
assert keras.backend.backend() == backend, keras.backend.backend()
out = {}
for name in ("logits", "softmax", "preact"):
    model = keras.saving.load_model(f"{folder}/{name}.keras", compile=False, safe_mode=True)
    images = np.load(f"{folder}/images.npy")
    layer = explain.default_layer(model)
    heat, top = explain.grad_cam(model, images, return_classes=True)
    low = np.load(f"{folder}/{name}_low.npy")
    heat_low = explain.grad_cam(model, images, class_index=low, layer=layer)
    features = keras.Model(model.input, model.get_layer(layer).output)(images)
    out.update({f"{name}_heat": heat, f"{name}_top": top, f"{name}_heat_low": heat_low,
                f"{name}_features": keras.ops.convert_to_numpy(features)})
np.savez(f"{folder}/{backend}.npz", **out)
print("OK", backend)
"""


@pytest.mark.slow  # ~40 s each: a fresh process loading Keras on another backend
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_grad_cam_is_the_class_activation_map_on_other_backends(backend, tmp_path):
    pytest.importorskip(backend)
    import keras

    images = np.random.default_rng(1).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    models = {"logits": _model(None), "softmax": _model("softmax"), "preact": _model(None, preact=True)}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        pooled = keras.Model(model.input, model.get_layer("avg_pool").output)(images)
        logits = np.asarray(pooled) @ np.asarray(model.get_layer("predictions").kernel)
        np.save(tmp_path / f"{name}_low.npy", np.argmin(logits, axis=1))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
               CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-I", "-c", _BACKEND_SIDE, str(tmp_path), backend],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(tmp_path / f"{backend}.npz")
    for name, model in models.items():
        kernel = np.asarray(model.get_layer("predictions").kernel, "float64")
        features = got[f"{name}_features"].astype("float64")
        area = features.shape[1] * features.shape[2]
        low = np.load(tmp_path / f"{name}_low.npy")
        for heat, classes in ((got[f"{name}_heat"], got[f"{name}_top"]), (got[f"{name}_heat_low"], low)):
            cam = np.einsum("nhwk,nk->nhw", features, kernel[:, classes].T)
            assert heat.shape == cam.shape == (3, 8, 8)
            tol = 1e-5 * float(np.abs(cam).max()) / area      # float32 rounding, as above
            assert float(np.abs(heat - np.maximum(cam, 0) / area).max()) <= tol, (name, backend)
        # The top class is the backend's own argmax of the logits it computed.
        pooled = got[f"{name}_features"].mean(axis=(1, 2)) @ kernel + model.get_layer("predictions").bias
        np.testing.assert_array_equal(got[f"{name}_top"], np.argmax(pooled, axis=1))
        assert (got[f"{name}_heat"] > 0).any()
