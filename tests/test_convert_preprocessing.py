"""Converted weights carry their preprocessing: ``keras-resnet-convert`` puts the source's
input convention inside the model (torchvision/timm: ImageNet mean/std; keras.applications
ResNet: caffe; ResNetV2: tf), so the written model takes RGB pixels in 0..255 and its
exports need no guess. The expectation is the source framework fed its own preprocessing."""

import numpy as np
import pytest
import torch

import keras

import keras_resnet as kr
from keras_resnet.weights import main as convert_main
from test_weights_torch import reference
from torch_reference import torch_logits


def _pixels(n=3, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _torch_normalised(pixels):
    """torchvision's transform (ToTensor, then Normalize with the ImageNet mean/std)."""
    t = torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((t - mean) / std).permute(0, 2, 3, 1).numpy()


@pytest.mark.slow  # ~45 s: a ResNet-18 converted twice and exported to ONNX
def test_converted_torch_resnet18_takes_pixels_and_exports_without_a_guess(tmp_path, capsys):
    net = reference(18)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    out = tmp_path / "r18.keras"
    assert convert_main([str(tmp_path / "r18.pth"), str(out), "--classifier-activation",
                         "none"]) == 0
    assert ("preprocessing inside the model (torch): it takes RGB pixels in 0..255"
            in capsys.readouterr().out)
    model = keras.saving.load_model(out, safe_mode=True)
    assert model.get_config()["include_preprocessing"]
    pixels = _pixels()
    want = torch_logits(net, _torch_normalised(pixels))
    got = np.asarray(model(pixels, training=False))
    # float32 through ~20 layers: relative to the logits' scale.
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))

    # The exporter reads the preprocessing from the model (no run.json, no flag): the ONNX
    # file fed pixels gives PyTorch's logits on normalised input.
    from keras_resnet.export import export_all
    import onnxruntime as ort

    report = export_all(str(out), str(tmp_path / "exports"), formats="onnx",
                        onnx_precisions="fp32", eval_data=(pixels, None), latency_runs=1,
                        progress=None)
    assert report["passed"]
    session = ort.InferenceSession(str(tmp_path / "exports" / "onnx" / "resnet18_fp32.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"images": pixels})[0]
    assert np.max(np.abs(onnx_logits - want)) <= 1e-4 * np.max(np.abs(want))
    assert (np.argmax(onnx_logits, -1) == np.argmax(want, -1)).all()

    # --preprocessing overrides: none keeps the source's own input (normalised pixels).
    plain = tmp_path / "plain.keras"
    assert convert_main([str(tmp_path / "r18.pth"), str(plain), "--preprocessing", "none",
                         "--classifier-activation", "none", "--quiet"]) == 0
    plain_model = keras.saving.load_model(plain, safe_mode=True)
    x = _torch_normalised(pixels)
    assert np.max(np.abs(np.asarray(plain_model(x)) - want)) <= 1e-4 * np.max(np.abs(want))


@pytest.mark.slow  # ~30 s: a ResNet-50 built, saved and converted
def test_keras_applications_resnet50_caffe_preprocessing_goes_inside(tmp_path, capsys):
    """caffe mode reverses the channels to BGR: the converted model takes RGB pixels and
    its stem reads them in reverse order instead."""
    app = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=7,
                                      classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(20, 40, v.shape)])
    app.save_weights(tmp_path / "r50.weights.h5")
    out = tmp_path / "r50.keras"
    assert convert_main([str(tmp_path / "r50.weights.h5"), str(out), "--input-shape",
                         "32,32,3", "--classifier-activation", "none"]) == 0
    assert "preprocessing inside the model (caffe, the stem reads RGB)" in capsys.readouterr().out
    model = keras.saving.load_model(out, safe_mode=True)
    pixels = _pixels(size=32)
    want = np.asarray(app(keras.applications.resnet.preprocess_input(pixels.copy())))
    got = np.asarray(model(pixels, training=False))
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_unknown_preprocessing_is_refused_naming_the_flag(tmp_path, capsys):
    net = reference(18)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    # Caffe-style torchvision-named checkpoints (stride on the 1x1) were trained on other
    # input than torchvision's: the converter does not guess.
    out = tmp_path / "r18.keras"
    assert convert_main([str(tmp_path / "r18.pth"), str(out), "--stride-on", "1x1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not known; pass --preprocessing torch, tf, caffe or none" in err[0]
    assert not out.exists()
