"""The export gates judge what they are about: float exports relative to the logits' scale,
quantized exports by agreement and accuracy change, and a broken export fails.

A small untrained ResNet (8x8x1 inputs, random weights) keeps these fast; every artifact runs
in its real runtime (TensorFlow in a fresh process, LiteRT, ONNX Runtime).
"""

import numpy as np
import pytest

import keras_resnet as kr
from keras_resnet.export import (FLOAT_RTOL, export_all, export_onnx, float_parity, load_source,
                                 quantized_parity)


def _small_model(seed):
    import keras

    keras.utils.set_random_seed(seed)
    return kr.ResNet(stackwise_num_blocks=[1, 1], stackwise_num_filters=[8, 16], block="basic",
                     stem="cifar", input_shape=(8, 8, 1), classes=5, name="gates")


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 1)).astype("float32")


@pytest.mark.slow  # exports to every float runtime (about a minute)
def test_a_model_with_logits_near_1e7_passes_every_float_check(tmp_path):
    """float32 carries ~7 significant digits: at logits of 1e7 exports differ by whole units
    and are still exact to float32 rounding, so an absolute threshold cannot be the gate."""
    model = _small_model(0)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 1e6, bias])
    images = _images(32)
    report = export_all(model, str(tmp_path / "out"), tflite_precisions="fp32", onnx_precisions="fp32",
                        openvino_precisions="fp32", eval_data=(images, None), latency_runs=2,
                        progress=None, check=False)
    floats = [a for a in report["artifacts"] if a["format"] != "keras"]
    assert {(a["format"], a["precision"]) for a in floats} == {
        ("savedmodel", "fp32"), ("tflite", "fp32"), ("onnx", "fp32"), ("openvino", "fp32")}
    for a in floats:
        p = a["parity"]
        assert p["logit_scale"] > 1e6, p  # the premise: logits near 1e7 (from the 1e6 kernel)
        assert a["passed"], (a["format"], p["message"])
        assert p["max_rel_diff"] <= FLOAT_RTOL[a["format"]]
        assert p["max_abs_diff"] == pytest.approx(p["max_rel_diff"] * (p["logit_scale"] + 1))
    assert report["passed"]


def test_a_broken_onnx_export_fails_its_float_check(tmp_path):
    """A 1% change to one convolution kernel (as a mis-folded BatchNormalization would make)
    in the written ONNX file is caught when the file is run in ONNX Runtime."""
    import onnx
    from onnx import numpy_helper

    from keras_resnet.export.onnx_export import verify

    source = load_source(_small_model(1))
    images = _images(32, seed=1)
    (entry,) = export_onnx(source, str(tmp_path), ["fp32"], eval_images=images, latency_runs=2,
                           progress=None)
    assert entry["passed"]
    proto = onnx.load(entry["path"])
    (init,) = [i for i in proto.graph.initializer if numpy_helper.to_array(i).ndim == 4][:1]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    onnx.save(proto, entry["path"])
    parity, _, _ = verify(source, entry["path"], "fp32", images, latency_runs=1)
    assert not parity["passed"]
    assert parity["max_rel_diff"] > FLOAT_RTOL["onnx"]
    assert "exceeds the threshold" in parity["message"] and "of the logits' scale" in parity["message"]


def test_float_parity_scales_with_the_logits():
    ref = np.array([[3e7, -2e7, 5.0]])
    assert float_parity("onnx", ref, ref + 100.0)["passed"]       # 3e-6 of the scale
    assert not float_parity("onnx", ref, ref + 1e4)["passed"]     # 3e-4 of the scale
    small = np.array([[1e-3, -2e-3]])
    assert float_parity("savedmodel", small, small + 5e-6)["passed"]      # the +1 floor
    assert not float_parity("savedmodel", small, small + 5e-5)["passed"]


def test_quantized_gate_reports_agreement_accuracy_and_flip_margins():
    # 200 examples, two classes: the float model is right on all; int8 flips the 10 near-ties
    # (margin 0.1) and keeps the 190 clear ones (margin 5).
    ref = np.zeros((200, 2))
    ref[:, 0] = 5.0
    ref[:10, 0] = 0.1
    labels = np.zeros(200, "int64")
    q = ref.copy()
    q[:10, 1] = 0.2
    p = quantized_parity(ref, q, labels)
    assert p["agreement"] == 0.95 and p["disagreements"] == 10 and p["n"] == 200
    assert p["flip_margin"] == pytest.approx(0.1 / 5.0)
    assert p["accuracy_change"] == pytest.approx(-0.05) and (p["lost"], p["gained"]) == (10, 0)
    # 10 lost, none gained: the exact interval of the change lies below -1 pp, a shown loss.
    assert p["accuracy_change_ci"][1] < -0.01
    assert not p["passed"] and "5.00 pp below" in p["message"] and "exceeds the allowed 1 pp" in p["message"]
    assert "agreement" not in p["message"]  # 95% meets the 95% default
    assert quantized_parity(ref, q, labels, min_agreement=0.95, max_accuracy_drop=0.05)["passed"]
    q[10] = [0.0, 5.0]  # an eleventh flip: 94.5%, whose interval still holds 95%: a warning
    p = quantized_parity(ref, q, labels, max_accuracy_drop=1.0)
    assert p["passed"] and p["verdict"] == "warn"
    assert "top-1 agreement 94.50%" in p["warnings"][0] and "too few images to tell" in p["warnings"][0]
    q[:40] = [0.0, 5.0]  # 80% agreement: the interval's upper bound is below 95%, a shown miss
    p = quantized_parity(ref, q, labels, max_accuracy_drop=1.0)
    assert not p["passed"] and "top-1 agreement 80.00%" in p["message"]


def test_quantized_gate_warns_on_a_small_evaluation_set():
    """One image of 16 is 6.25 pp: the set cannot resolve a 1 pp drop, so changed
    predictions are a warning that says so, not a failure."""
    ref = np.tile([[2.0, 0.0]], (16, 1))
    labels = np.zeros(16, "int64")
    one, two = ref.copy(), ref.copy()
    one[0] = [0.0, 2.0]
    two[:2] = [0.0, 2.0]
    for q in (one, two):
        p = quantized_parity(ref, q, labels)
        assert p["passed"] and p["verdict"] == "warn", p
        assert "too few images to tell" in " ".join(p["warnings"])
    assert "agreement 87.50%" in " ".join(quantized_parity(ref, two, labels)["warnings"])


def test_a_bare_keras_file_exports_or_says_what_to_pass(tmp_path, capsys):
    """A .keras file with no run.json and no --dataset: float exports are checked on random
    pixels (also with a dynamic height and width, whose latency needs a real example), and a
    quantized one, which needs data, is refused in one line naming the options to pass."""
    from keras_resnet.export.cli import main

    model = kr.ResNet([1, 1], [8, 16], stem="cifar", input_shape=(None, None, 1), classes=5, name="bare")
    model.save(tmp_path / "bare.keras")
    args = [str(tmp_path / "bare.keras"), "--out", str(tmp_path / "out"), "--latency-runs", "2", "--quiet"]
    # Nothing says what the model's input is: refused rather than guessed.
    assert main(args + ["--formats", "onnx", "--onnx", "fp32"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "input preprocessing of" in err and "--preprocessing torch, tf or none" in err, err
    assert not (tmp_path / "out" / "onnx").exists()
    args += ["--preprocessing", "none"]
    assert main(args + ["--formats", "tflite", "onnx", "--tflite", "fp32", "--onnx", "fp32"]) == 0
    capsys.readouterr()
    assert main(args + ["--formats", "onnx", "--onnx", "int8"]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "--dataset" in err and "--calibration-data" in err, err
