"""Export of a grouped (ResNeXt-style) and an SE-ResNet-D model in their real runtimes.

Tiny models at 32x32 with non-trivial BN statistics go through the export pipeline
(SavedModel, TFLite fp32/int8, ONNX fp32/int8); each file is then run here in its runtime
(LiteRT, ONNX Runtime) and compared with the Keras model's own logits. The grouped
convolution must be a builtin TFLite ``CONV_2D`` and an ONNX ``Conv`` with ``group``.
"""

import os

import numpy as np
import pytest

import keras

import keras_resnet as kr
from keras_resnet.export import onnx_export, tflite
from keras_resnet.export.pipeline import export_all

pytestmark = pytest.mark.slow  # end to end: trains in processes of its own

SCALE, OFFSET = 1 / 127.5, -1.0


def _model(kind):
    keras.utils.set_random_seed(0)
    if kind == "grouped":
        model = kr.ResNet([1, 1], [16, 32], block="bottleneck", stem="cifar", groups=4,
                          width_per_group=16, input_shape=(32, 32, 3), classes=5,
                          classifier_activation=None, name="tiny_resnext")
    else:
        model = kr.ResNet([1, 1], [16, 32], stem="deep", stem_filters=16, avg_down=True,
                          attention="se", input_shape=(32, 32, 3), classes=5,
                          classifier_activation=None, name="tiny_seresnet_d")
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    return model


@pytest.mark.parametrize("kind", ["grouped", "se"])
def test_export_runs_in_litert_and_onnx_runtime(kind, tmp_path):
    model = _model(kind)
    rng = np.random.default_rng(1)
    calib = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    pixels = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    report = export_all(
        model, str(tmp_path), tflite_precisions=("fp32", "int8"), onnx_precisions=("fp32", "int8"),
        qat_epochs=0, calibration_images=calib, eval_data=(pixels, None), latency_runs=1,
        preprocessing={"scale": [SCALE] * 3, "offset": [OFFSET] * 3}, progress=lambda m: None,
    )
    assert report["passed"], report["failures"]
    assert {(a["format"], a["precision"]) for a in report["artifacts"]} >= {
        ("savedmodel", "fp32"), ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")}

    # The files, in their runtimes, against the Keras model on the same (preprocessed) pixels.
    want = np.asarray(model(pixels * SCALE + OFFSET, training=False))
    scale = float(np.max(np.abs(want)))
    for fmt, runtime in (("tflite", tflite.LiteRTModel), ("onnx", onnx_export.ORTModel)):
        path = os.path.join(tmp_path, fmt, f"{model.name}_fp32.{fmt}")
        got = runtime(path).logits(pixels)
        assert np.max(np.abs(got - want)) <= 1e-4 * scale, fmt
        int8 = runtime(os.path.join(tmp_path, fmt, f"{model.name}_int8.{fmt}")).logits(pixels)
        # Quantized: the same argmax on nearly every image and errors a fraction of the scale.
        assert np.mean(int8.argmax(1) == want.argmax(1)) >= 0.9
        assert np.max(np.abs(int8 - want)) <= 0.25 * scale

    ops = tflite.LiteRTModel(os.path.join(tmp_path, "tflite", f"{model.name}_int8.tflite")).op_names()
    assert not [op for op in ops if op.upper().startswith("FLEX") or op.upper() == "CUSTOM"], ops
    if kind == "grouped":
        import onnx

        proto = onnx.load(os.path.join(tmp_path, "onnx", f"{model.name}_fp32.onnx"))
        groups = [a.i for n in proto.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
        # Either one grouped Conv per grouped layer ("native") or per-group convolutions ("split").
        assert 4 in groups or sum(n.op_type == "Split" for n in proto.graph.node) >= 2
        assert "CONV_2D" in ops
    else:
        assert {"LOGISTIC", "MUL", "AVERAGE_POOL_2D"} <= set(ops)


def test_qat_annotates_grouped_resnet_d_with_drop_path_and_names_se_as_unsupported():
    """tfmot (tf_keras process): grouped convs, deep stem, average-pool shortcuts, dilation
    and drop path quantize; SE's Multiply is refused by tfmot's default scheme."""
    from conftest import run_python

    proc = run_python("""
        import numpy as np
        import keras_resnet as kr
        from keras_resnet.export.qat import quantize_model
        m = kr.ResNet([1, 1], [16, 32], block="bottleneck", stem="deep", stem_filters=16, avg_down=True,
                      groups=4, width_per_group=16, drop_path_rate=0.2, output_stride=8,
                      input_shape=(32, 32, 3), classes=5)
        q = quantize_model(m)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
        a, b = np.asarray(m(x, training=False)), np.asarray(q(x, training=False))
        assert a.shape == b.shape and np.all(np.isfinite(b))
        assert sum("quant" in type(l).__name__.lower() for l in q.layers) > 10
        se = kr.ResNet([1, 1], [16, 32], stem="cifar", attention="se", input_shape=(32, 32, 3), classes=5)
        try:
            quantize_model(se)
        except RuntimeError as e:
            assert "se_scale" in str(e) and "Multiply" in str(e), e
        else:
            raise AssertionError("SE quantized")
    """, env={"TF_USE_LEGACY_KERAS": "1"})
    assert proc.returncode == 0
