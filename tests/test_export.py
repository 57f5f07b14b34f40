"""Export of a digits-trained CIFAR ResNet-20 to SavedModel, TFLite and ONNX.

Every artifact is run in its real runtime (TensorFlow in a fresh process, the LiteRT
interpreter, ONNX Runtime) and compared with the Keras model, whose logits are computed
here independently (a linear-classifier rebuild of the same architecture carrying the
trained weights).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from shared_fixture import shared_once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MODEL = "resnet_cifar20"
TFLITE = ("fp32", "fp16", "dynamic", "int8", "qat")


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def _python(code, *args, env=None, timeout=600):
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env or _env(),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _train_run_dir(run_dir):
    """Train ResNet-20 on digits with plain model.fit; write best.keras + run.json."""
    import keras

    import keras_resnet as kr
    from keras_resnet.data import apply_preprocessing, digits_arrays, preprocessing_from_arrays

    keras.utils.set_random_seed(0)
    x, y = digits_arrays("train")
    prep = preprocessing_from_arrays(x)
    model = kr.ResNet20CIFAR(input_shape=(8, 8, 1), classes=10)
    epochs, steps = 12, -(-len(x) // 64)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * steps, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    model.fit(apply_preprocessing(x, prep), y, epochs=epochs, batch_size=64, verbose=0)
    xt, yt = digits_arrays("test")
    acc = float(np.mean(model.predict(apply_preprocessing(xt, prep), verbose=0).argmax(1) == yt))
    model.save(os.path.join(run_dir, "best.keras"))
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump({"dataset": "digits", "input_shape": [8, 8, 1], "num_classes": 10,
                   "class_names": [str(i) for i in range(10)], "preprocessing": prep,
                   "outputs": "probabilities", "test_accuracy": acc}, f)


class Exported:
    def __init__(self, root):
        import keras

        import keras_resnet as kr
        from keras_resnet.data import apply_preprocessing, digits_arrays

        self.run_dir = os.path.join(root, "run")
        self.out = os.path.join(root, "out")
        with open(os.path.join(self.out, "report.json")) as f:
            self.report = json.load(f)
        with open(os.path.join(self.run_dir, "run.json")) as f:
            self.run = json.load(f)
        self.x_test, self.y_test = digits_arrays("test")
        model = keras.saving.load_model(os.path.join(self.run_dir, "best.keras"), safe_mode=True)
        logits_model = kr.resnet_cifar(20, input_shape=(8, 8, 1), classes=10, classifier_activation=None)
        logits_model.set_weights(model.get_weights())
        x = apply_preprocessing(self.x_test, self.run["preprocessing"])
        self.logits = logits_model.predict(x, batch_size=64, verbose=0)
        self.probabilities = model.predict(x, batch_size=64, verbose=0)
        self.accuracy = float(np.mean(self.logits.argmax(1) == self.y_test))

    def artifact(self, fmt, precision):
        found = [a for a in self.report["artifacts"] if a["format"] == fmt and a["precision"] == precision]
        assert len(found) == 1, (fmt, precision)
        return found[0]

    def check_quantized(self, logits):
        """A quantized model's logits against the float model's, by what int8 rounding can do.

        The trained fixture's weights, and so these figures, depend on the CPU's float
        kernels (AVX-512 or AVX2 machines train different weights): the bounds come from
        quantization, not from one machine's run.
        """
        top1, ref_top1 = logits.argmax(1), self.logits.argmax(1)
        flips = top1 != ref_top1
        accuracy = float(np.mean(top1 == self.y_test))
        # Published int8 ResNets lose 0.2-0.5 pp of accuracy; one of the 450 test images is
        # 0.22 pp: at most 1 pp lower.
        assert accuracy >= self.accuracy - 0.01, (accuracy, self.accuracy)
        # Every changed prediction is a near-tie that the rounding noise tipped: its float
        # top-1/top-2 margin is within 6 standard deviations of the difference of two
        # logits' quantization errors (sqrt(2) sigma), measured over the whole split.
        sigma = float(np.std(logits - self.logits))
        ordered = np.sort(self.logits, axis=1)
        margins = (ordered[:, -1] - ordered[:, -2])[flips]
        assert np.all(margins <= 6 * np.sqrt(2) * sigma), (margins, sigma)
        assert flips.mean() <= 0.05, flips.mean()  # a sound model agrees almost everywhere
        return 1 - float(flips.mean()), accuracy


def _assert_float_close(logits, ref, rtol):
    """Float32 exports: max |difference| within ``rtol`` of the logits' scale (+1 for logits
    near zero). float32 rounds at 6e-8; summation in another order over a ResNet's depth
    gives ~1e-6..1e-5 of the scale: 1e-5 for TensorFlow's own kernels, 1e-4 for another
    runtime's."""
    diff = float(np.max(np.abs(np.asarray(logits, "float64") - ref)))
    assert diff <= rtol * (float(np.max(np.abs(ref))) + 1.0), (diff, float(np.max(np.abs(ref))))


def _build_exported(root):
    (root / "run").mkdir()
    _train_run_dir(str(root / "run"))
    from keras_resnet.export.cli import main

    rc = main([str(root / "run"), "--out", str(root / "out"), "--qat-epochs", "1",
               "--latency-runs", "5", "--quiet"])
    assert rc == 0, f"export of the trained fixture model exited {rc} (its report is printed above)"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """One trained run directory exported to every format (built once, shared by xdist
    workers; a failed build fails its dependents at once, naming the cause)."""
    return Exported(str(shared_once(tmp_path_factory, "keras_resnet_export_fixture", _build_exported)))


def _tflite_logits(path, images):
    """Run a .tflite file's signature in the LiteRT interpreter; dequantized logits."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_resnet.export.tflite import op_names

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner("serving_default")
    inp = runner.get_input_details()["images"]
    out = runner.get_output_details()["logits"]
    x = images.astype("float32")
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
    logits = np.concatenate([runner(images=x[i:i + 1])["logits"] for i in range(len(x))])
    if out["dtype"] != np.float32:
        scale, zero = out["quantization"]
        logits = (logits.astype("float32") - zero) * scale
    with open(path, "rb") as f:
        ops = set(op_names(f.read()))
    tensor_types = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    return logits, inp, out, ops, tensor_types


# ---------------------------------------------------------------------------------------
# Report


def test_report_has_every_artifact_with_size_parity_and_latency(exported):
    rows = {(a["format"], a["precision"]) for a in exported.report["artifacts"]}
    expected = {("keras", "fp32"), ("savedmodel", "fp32"), ("onnx", "fp32"), ("onnx", "int8")}
    expected |= {("tflite", p) for p in TFLITE} | {("openvino", "fp32"), ("openvino", "fp16")}
    assert rows == expected
    assert exported.report["passed"] and exported.report["failures"] == []
    for a in exported.report["artifacts"]:
        assert a["passed"]
        assert a["latency_ms"] > 0
        path = a["path"]
        size = (sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
                if os.path.isdir(path) else os.path.getsize(path))
        assert a["size_bytes"] == size
    assert exported.artifact("keras", "fp32")["accuracy"] == pytest.approx(exported.accuracy)
    int8 = exported.artifact("tflite", "int8")["parity"]
    assert int8["keras_accuracy"] == pytest.approx(exported.accuracy)
    with open(os.path.join(exported.out, "report.md")) as f:
        md = f.read()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| format")]
    assert len(table) == len(expected)
    assert "| tflite | qat |" in md and "top-1 agreement" in md and "max abs diff" in md


# ---------------------------------------------------------------------------------------
# SavedModel


def test_savedmodel_layout_and_saved_model_cli_lists_both_signatures(exported):
    path = exported.artifact("savedmodel", "fp32")["path"]
    assert path == os.path.join(exported.out, "saved_model", MODEL, "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    cli = shutil.which("saved_model_cli")
    cmd = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    proc = subprocess.run(cmd + ["show", "--dir", path, "--all"], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for text in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                 "inputs['images']", "inputs['image_bytes']", "outputs['probabilities']",
                 "outputs['logits']", "DT_STRING", "shape: (-1, 8, 8, 1)"):
        assert text in out, text


_SAVEDMODEL_CHECK = r"""
import sys, numpy as np, tensorflow as tf
path, data, out = sys.argv[1:4]
d = np.load(data)
m = tf.saved_model.load(path)
r = m.signatures["serving_default"](images=tf.constant(d["images"]))
small = np.clip(np.round(d["images"][:16]), 0, 255).astype("uint8")
png = [tf.io.encode_png(im).numpy() for im in small]
jpeg = [tf.io.encode_jpeg(im, quality=90).numpy() for im in small]
big = tf.image.resize(small.astype("float32"), (16, 16), method="nearest").numpy().astype("uint8")
png16 = [tf.io.encode_png(im).numpy() for im in big]
b = m.signatures["serving_bytes"]
res = dict(logits=r["logits"].numpy(), probabilities=r["probabilities"].numpy(),
           png=b(image_bytes=tf.constant(png))["logits"].numpy(),
           png_ref=m.signatures["serving_default"](images=tf.constant(small.astype("float32")))["logits"].numpy(),
           jpeg=b(image_bytes=tf.constant(jpeg))["logits"].numpy(),
           jpeg_ref=m.signatures["serving_default"](images=tf.stack(
               [tf.cast(tf.io.decode_jpeg(j, channels=1), tf.float32) for j in jpeg]))["logits"].numpy(),
           png16=b(image_bytes=tf.constant(png16))["logits"].numpy(),
           png16_ref=m.signatures["serving_default"](images=tf.image.resize(
               big.astype("float32"), (8, 8), method="bilinear"))["logits"].numpy())
np.savez(out, **res)
"""


def test_savedmodel_in_a_fresh_process_equals_keras(exported, tmp_path):
    path = exported.artifact("savedmodel", "fp32")["path"]
    np.savez(tmp_path / "in.npz", images=exported.x_test)
    _python(_SAVEDMODEL_CHECK, path, tmp_path / "in.npz", tmp_path / "out.npz")
    r = np.load(tmp_path / "out.npz")
    _assert_float_close(r["logits"], exported.logits, 1e-5)
    _assert_float_close(r["probabilities"], exported.probabilities, 1e-5)
    # The bytes signature decodes what a REST client sends and equals the pixel signature.
    _assert_float_close(r["png"], r["png_ref"], 1e-5)
    _assert_float_close(r["jpeg"], r["jpeg_ref"], 1e-5)
    _assert_float_close(r["png16"], r["png16_ref"], 1e-4)
    assert np.mean(r["png"].argmax(1) == exported.logits[:16].argmax(1)) >= 15 / 16


def test_savedmodel_warmup_requests_are_prediction_logs_that_run(exported):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported.artifact("savedmodel", "fp32")["path"]
    warmup = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(warmup)]
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {
        "serving_default", "serving_bytes"}
    loaded = tf.saved_model.load(path)
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == MODEL
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert outputs["probabilities"].shape == (1, 10)
        np.testing.assert_allclose(outputs["probabilities"].numpy().sum(), 1.0, atol=1e-5)


def test_savedmodel_new_export_adds_a_version_and_never_overwrites(exported, tmp_path):
    from keras_resnet.export import ExportError, export_saved_model, load_source

    v1 = tmp_path / "serving" / MODEL / "1"
    shutil.copytree(exported.artifact("savedmodel", "fp32")["path"], v1)
    digest = hashlib.sha256((v1 / "saved_model.pb").read_bytes()).hexdigest()
    source = load_source(exported.run_dir)
    entry = export_saved_model(source, str(tmp_path / "serving"), eval_images=exported.x_test[:32],
                               latency_runs=2, progress=None)
    assert entry["version"] == 2 and entry["passed"]
    assert sorted(os.listdir(tmp_path / "serving" / MODEL)) == ["1", "2"]
    assert hashlib.sha256((v1 / "saved_model.pb").read_bytes()).hexdigest() == digest
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(source, str(tmp_path / "serving"), version=1, progress=None)
    assert sorted(os.listdir(tmp_path / "serving" / MODEL)) == ["1", "2"]


# ---------------------------------------------------------------------------------------
# TFLite


def test_tflite_float32_runs_in_litert_within_1e4_of_the_logits_scale(exported):
    path = exported.artifact("tflite", "fp32")["path"]
    logits, inp, out, ops, _ = _tflite_logits(path, exported.x_test)
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    assert not any(op.startswith("FLEX") or op == "CUSTOM" for op in ops), ops
    assert {"CONV_2D", "PAD", "STRIDED_SLICE"} <= ops  # the option-A shortcut as builtins
    _assert_float_close(logits, exported.logits, 1e-4)


@pytest.mark.parametrize("precision", ["fp16", "dynamic", "int8", "qat"])
def test_tflite_quantized_agrees_with_keras_on_the_digits_test_split(exported, precision):
    path = exported.artifact("tflite", precision)["path"]
    logits, inp, out, ops, tensor_types = _tflite_logits(path, exported.x_test)
    assert not any(op.startswith("FLEX") or op == "CUSTOM" for op in ops), ops
    if precision == "fp16":
        assert "float16" in tensor_types and inp["dtype"] == np.float32
    elif precision == "dynamic":
        assert "int8" in tensor_types and inp["dtype"] == np.float32
    else:  # full integer: int8 in, int8 out, integer kernels throughout
        assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    exported.check_quantized(logits)
    assert os.path.getsize(path) < 0.5 * os.path.getsize(exported.artifact("tflite", "fp32")["path"]) \
        or precision == "fp16"


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_tflite_full_integer_with_uint8_or_float_io(exported, tmp_path, io):
    from keras_resnet.export import export_tflite, load_source

    source = load_source(exported.run_dir)
    calibration = source.calibration_images(200)
    (entry,) = export_tflite(source, str(tmp_path), ["int8"], int8_io=io, calibration_images=calibration,
                             eval_images=exported.x_test, eval_labels=exported.y_test, latency_runs=2,
                             progress=None)
    logits, inp, out, ops, _ = _tflite_logits(entry["path"], exported.x_test)
    assert np.dtype(inp["dtype"]).name == io and np.dtype(out["dtype"]).name == io
    if io == "uint8":
        assert inp["quantization"] == (1.0, 0)  # pixels 0..255 go in unchanged
    exported.check_quantized(logits)
    assert entry["passed"] and entry["input_type"] == io


# ---------------------------------------------------------------------------------------
# ONNX


def test_onnx_float32_runs_in_onnxruntime_with_dynamic_batch(exported):
    import onnx
    import onnxruntime as ort

    path = exported.artifact("onnx", "fp32")["path"]
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = proto.graph.input
    assert inp.name == "images"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 8, 8, 1]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits, probabilities = session.run(None, {"images": exported.x_test})
    _assert_float_close(logits, exported.logits, 1e-4)
    _assert_float_close(probabilities, exported.probabilities, 1e-4)
    one = session.run(["logits"], {"images": exported.x_test[:1]})[0]
    _assert_float_close(one, exported.logits[:1], 1e-4)


def test_onnx_int8_is_qdq_per_channel_and_agrees_with_keras(exported):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    path = exported.artifact("onnx", "int8")["path"]
    proto = onnx.load(path)
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    init = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weight_scales = [init[n.input[1]] for n in proto.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in init
                     and init[n.input[0]].dtype == np.int8 and init[n.input[0]].ndim == 4]
    assert weight_scales and all(s.ndim == 1 and s.size > 1 for s in weight_scales)  # per channel
    # Every convolution and every residual addition reads dequantized tensors, so ONNX
    # Runtime can run the network as integer kernels end to end.
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Add"):
            assert all(i.endswith("_DequantizeLinear_Output") for i in node.input[:2]), node.name
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": exported.x_test})[0]
    exported.check_quantized(logits)


def test_onnx_opset_is_selectable(exported, tmp_path):
    import onnx

    from keras_resnet.export import export_onnx, load_source

    (entry,) = export_onnx(load_source(exported.run_dir), str(tmp_path), ["fp32"], opset=13,
                           eval_images=exported.x_test, latency_runs=2, progress=None)
    proto = onnx.load(entry["path"])
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert entry["parity"]["passed"] and entry["opset"] == 13
    assert entry["parity"]["max_abs_diff"] <= 1e-4 * (np.max(np.abs(exported.logits)) + 1)


# ---------------------------------------------------------------------------------------
# Mixed precision, QAT config, bad input, atomic writes, scripts


def test_mixed_precision_model_exports_float32_graphs(exported, tmp_path):
    import keras
    import onnx

    import keras_resnet as kr
    from keras_resnet.export import export_all

    trained = keras.saving.load_model(os.path.join(exported.run_dir, "best.keras"))
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = kr.resnet_cifar(20, input_shape=(8, 8, 1), classes=10)
    finally:
        keras.config.set_dtype_policy("float32")
    mixed.set_weights(trained.get_weights())
    assert mixed.get_layer("stem_conv").compute_dtype == "float16"
    # The trained model as training hands it over (in memory, mixed policy).
    report = export_all(mixed, str(tmp_path / "out"), formats="tflite,onnx",
                        tflite_precisions="fp32", onnx_precisions="fp32",
                        preprocessing=exported.run["preprocessing"],
                        eval_data=(exported.x_test, exported.y_test), latency_runs=2, progress=None)
    assert report["source"]["trained_dtype_policy"] == "mixed_float16"
    proto = onnx.load(os.path.join(tmp_path, "out", "onnx", f"{MODEL}_fp32.onnx"))
    types = {i.data_type for i in proto.graph.initializer}
    assert onnx.TensorProto.FLOAT16 not in types and onnx.TensorProto.FLOAT in types
    import onnxruntime as ort

    session = ort.InferenceSession(os.path.join(tmp_path, "out", "onnx", f"{MODEL}_fp32.onnx"),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": exported.x_test})[0]
    _assert_float_close(logits, exported.logits, 1e-4)
    tfl, _, _, _, tensor_types = _tflite_logits(
        os.path.join(tmp_path, "out", "tflite", f"{MODEL}_fp32.tflite"), exported.x_test[:64])
    assert "float16" not in tensor_types
    _assert_float_close(tfl, exported.logits[:64], 1e-4)


_QAT_CONFIG_CHECK = r"""
import numpy as np
import tensorflow_model_optimization as tfmot
import keras_resnet as kr
from keras_resnet._compat import LEGACY, keras
from keras_resnet.export.qat import ZeroPadShortcutQuantizeConfig, quantize_model
assert LEGACY and keras.__name__ == "tf_keras"
model = kr.resnet_cifar(20, input_shape=(8, 8, 1), classes=10, classifier_activation=None)
qat = quantize_model(model)
pads = [l for l in qat.layers if "shortcut_pad" in l.name]
assert len(pads) == 2, [l.name for l in qat.layers]
for layer in pads:
    assert isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2), type(layer)
    assert isinstance(layer.quantize_config, ZeroPadShortcutQuantizeConfig)
    assert layer.trainable_weights == []
convs = [l for l in qat.layers if l.name.endswith("conv1") and "stage" in l.name]
assert convs and all(any("kernel_min" in w.name for w in l.weights) for l in convs)
x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
assert qat(x, training=False).shape == (4, 10)
print("ok")
"""


@pytest.mark.slow
def test_qat_annotates_zero_pad_shortcut_with_its_quantize_config():
    env = dict(_env(), TF_USE_LEGACY_KERAS="1")
    assert _python(_QAT_CONFIG_CHECK, env=env).stdout.strip().endswith("ok")


def _cli(args, capsys):
    from keras_resnet.export.cli import main

    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.err.strip()


def _assert_one_line_error(rc, err, *needles):
    assert rc != 0
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, (needle, err)


def test_bad_inputs_get_a_one_line_error_and_nonzero_exit(exported, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _cli([tmp_path / "missing.keras", "--out", out], capsys)
    _assert_one_line_error(rc, err, "does not exist")
    (tmp_path / "notes.keras").write_text("not a model")
    rc, err = _cli([tmp_path / "notes.keras", "--out", out], capsys)
    _assert_one_line_error(rc, err, "not a Keras .keras file")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n")
    rc, err = _cli([tmp_path / "model.h5", "--out", out], capsys)
    _assert_one_line_error(rc, err, "not a Keras .keras file")
    rc, err = _cli([exported.run_dir, "--out", out, "--formats", "tflite,coreml"], capsys)
    _assert_one_line_error(rc, err, "'coreml'", "savedmodel, tflite, onnx, openvino")
    rc, err = _cli([exported.run_dir, "--out", out, "--formats", "tflite", "--tflite", "fp32,int4"], capsys)
    _assert_one_line_error(rc, err, "'int4'", "fp32, fp16, dynamic, int8, qat")
    rc, err = _cli([exported.run_dir, "--out", out, "--formats", "onnx", "--onnx", "fp16"], capsys)
    _assert_one_line_error(rc, err, "'fp16'", "fp32, int8")
    np.save(tmp_path / "calib.npy", np.zeros((10, 16, 16, 1), "float32"))
    rc, err = _cli([exported.run_dir, "--out", out, "--formats", "onnx", "--calibration-data",
                    tmp_path / "calib.npy"], capsys)
    _assert_one_line_error(rc, err, "(10, 16, 16, 1)", "[N, 8, 8, 1]")
    rc, err = _cli([exported.run_dir, "--out", out, "--formats", "onnx", "--min-agreement", "95"], capsys)
    _assert_one_line_error(rc, err, "min_agreement=95.0", "between 0 and 1")
    # Where the operating system refuses the output folder: one line naming it, exit 2.
    (tmp_path / "afile").write_text("x")
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        rc, err = _cli([exported.run_dir, "--out", where, "--formats", "onnx", "--onnx", "fp32"], capsys)
        assert rc == 2
        _assert_one_line_error(rc, err, f"cannot write {where}", "not a directory")
    assert (tmp_path / "afile").read_text() == "x"
    assert not out.exists() or list(out.rglob("*")) == []  # nothing written by failed runs

    # An existing output is refused unless --overwrite.
    args = [exported.run_dir, "--out", out, "--formats", "onnx", "--onnx", "fp32", "--latency-runs", "2",
            "--quiet"]
    assert _cli(args, capsys)[0] == 0
    target = out / "onnx" / f"{MODEL}_fp32.onnx"
    before = target.stat().st_mtime_ns
    rc, err = _cli(args, capsys)
    _assert_one_line_error(rc, err, "already exists", "--overwrite")
    assert target.stat().st_mtime_ns == before
    assert _cli(args + ["--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in (out / "onnx").iterdir()) == [f"{MODEL}_fp32.onnx"]


def test_parity_failure_exits_nonzero_and_says_by_how_much(exported, tmp_path, capsys):
    # Calibrating on blank images sets every activation range to nothing: the int8 model
    # cannot match the Keras model, and the export must say so.
    np.save(tmp_path / "blank.npy", np.zeros((20, 8, 8, 1), "float32"))
    rc, err = _cli([exported.run_dir, "--out", tmp_path / "out", "--formats", "tflite", "--tflite", "int8",
                    "--calibration-data", tmp_path / "blank.npy", "--latency-runs", "2"], capsys)
    assert rc == 1
    assert "tflite int8" in err and "below" in err and " pp" in err, err
    with open(tmp_path / "out" / "report_tflite.json") as f:
        report = json.load(f)
    assert not report["passed"] and report["failures"]
    (entry,) = [a for a in report["artifacts"] if a["format"] == "tflite"]
    assert entry["parity"]["agreement"] < 0.95


def test_quantized_accuracy_drop_beyond_the_allowed_exits_1_with_the_table(exported, tmp_path, capsys):
    """Only the accuracy gate can fail (--min-agreement 0); the error and the table printed
    under --quiet say by how much, as measured here in LiteRT."""
    from keras_resnet.export.cli import main

    np.save(tmp_path / "blank.npy", np.zeros((20, 8, 8, 1), "float32"))
    rc = main([exported.run_dir, "--out", str(tmp_path / "out"), "--formats", "tflite", "--tflite", "int8",
               "--calibration-data", str(tmp_path / "blank.npy"), "--latency-runs", "2", "--quiet",
               "--min-agreement", "0", "--max-accuracy-drop", "0.02"])
    out, err = capsys.readouterr()
    assert rc == 1
    logits = _tflite_logits(str(tmp_path / "out" / "tflite" / f"{MODEL}_int8.tflite"), exported.x_test)[0]
    drop = exported.accuracy - float(np.mean(logits.argmax(1) == exported.y_test))
    assert drop > 0.02, drop
    assert f"{drop * 100:.2f} pp below the Keras model's" in err, err
    assert "exceeds the allowed 2 pp" in err and "McNemar exact p" in err, err
    assert "top-1 agreement" not in err, err
    (row,) = [line for line in out.splitlines() if line.startswith("| tflite | int8 |")]
    assert "FAILED" in row and f"{-drop * 100:+.2f} pp" in row and "allowed -2 pp" in row, row


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    from keras_resnet.files import atomic_path

    target = tmp_path / "model.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(str(target)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_export_scripts_have_help_and_run(exported, tmp_path):
    for script in ("export_all.py", "export_savedmodel.py", "export_tflite.py", "export_onnx.py"):
        assert os.path.isfile(os.path.join(ROOT, "export", script))
    env = _env()
    h = subprocess.run([sys.executable, os.path.join(ROOT, "export", "export_all.py"), "--help"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert h.returncode == 0 and "--formats" in h.stdout and "--overwrite" in h.stdout
    r = subprocess.run([sys.executable, os.path.join(ROOT, "export", "export_onnx.py"), exported.run_dir,
                        "--out", str(tmp_path / "o"), "--onnx", "fp32", "--latency-runs", "2"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| onnx | fp32 |" in r.stdout
    assert os.path.isfile(tmp_path / "o" / "report_onnx.json")
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "export", "export_tflite.py"),
                          str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
