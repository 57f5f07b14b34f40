"""What each runtime's users need, checked in the runtime itself on a digits-trained ResNet-8:
TF Serving's REST bodies through TF Serving's JSON rules into the SavedModel (fresh process),
its models.config and batching parameters, ONNX metadata and batch sizes 1, 3 and 32 in ONNX
Runtime, LiteRT metadata read back and the GPU delegate's compatibility, OpenVINO in its own
runtime with its labels.
"""

import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trains a model, then exports it once per runtime (~2 min in all)

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MODEL = "digits8"


class Run:
    """A ResNet-8 trained on digits (plain ``fit``), its run directory, and the Keras
    model's own probabilities on the test split (the independent reference)."""

    def __init__(self, root):
        import keras

        import keras_resnet as kr
        from keras_resnet.data import apply_preprocessing, digits_arrays, preprocessing_from_arrays

        keras.utils.set_random_seed(0)
        x, y = digits_arrays("train")
        self.prep = preprocessing_from_arrays(x)
        model = kr.resnet_cifar(8, input_shape=(8, 8, 1), classes=10, name=MODEL)
        model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
        model.fit(apply_preprocessing(x, self.prep), y, epochs=3, batch_size=32, verbose=0)
        self.dir = os.path.join(root, "run")
        os.makedirs(self.dir)
        model.save(os.path.join(self.dir, "best.keras"))
        with open(os.path.join(self.dir, "run.json"), "w") as f:
            json.dump({"dataset": "digits", "input_shape": [8, 8, 1], "num_classes": 10,
                       "class_names": NAMES, "preprocessing": self.prep, "outputs": "probabilities"}, f)
        self.model = model
        self.x, self.y = digits_arrays("test")
        self.probabilities = self.probs(self.x)
        # The logits: the same architecture with a linear classifier, carrying the weights.
        linear = kr.resnet_cifar(8, input_shape=(8, 8, 1), classes=10, classifier_activation=None)
        linear.set_weights(model.get_weights())
        self.logits = np.asarray(linear.predict(apply_preprocessing(self.x, self.prep), verbose=0))
        self.accuracy = float(np.mean(self.probabilities.argmax(1) == self.y))

    def probs(self, images):
        from keras_resnet.data import apply_preprocessing

        return np.asarray(self.model.predict(apply_preprocessing(images, self.prep), verbose=0, batch_size=64))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = Run(str(tmp_path_factory.mktemp("runtimes")))
    assert r.accuracy > 0.5, f"the fixture model did not train ({r.accuracy:.2%})"
    return r


def _export(run, out, formats, **options):
    from keras_resnet.export import export_all

    return export_all(run.dir, str(out), formats=formats, latency_runs=2, progress=None, **options)


def _artifact(report, fmt, precision):
    (a,) = [a for a in report["artifacts"] if a["format"] == fmt and a["precision"] == precision]
    return a


# ---------------------------------------------------------------------------------------
# TF Serving

# TF Serving's REST API rules (tensorflow_serving/util/json_tensor.cc), written out here
# independently of keras_resnet: the body has exactly one of "instances" (row form: one
# value per example, stacked into the batch; an object per example names the inputs) or
# "inputs" (columnar: each input's whole batch; an object names the inputs); {"b64": s} is
# a binary string, accepted for string tensors only; the reply is {"predictions": [...]}
# (row: one object per example holding every output) or {"outputs": {...}} (columnar);
# string outputs are UTF-8 text unless the output's name ends in "_bytes" (then b64).
_REST = r"""
import base64, json, sys
import numpy as np
import tensorflow as tf

path, bodies_file, out_file = sys.argv[1:4]
loaded = tf.saved_model.load(path)

def is_b64(v):
    return isinstance(v, dict) and list(v) == ["b64"]

def to_array(value, spec):
    if spec.dtype == tf.string:
        def conv(v):
            if is_b64(v):
                return base64.b64decode(v["b64"])
            if isinstance(v, list):
                return [conv(x) for x in v]
            if isinstance(v, str):
                return v.encode("utf-8")
            raise ValueError(f"not a string value: {v!r}")
        return tf.constant(conv(value), tf.string)
    if any(is_b64(v) for v in np.ravel(np.array(value, dtype=object))):
        raise ValueError("b64 is only for string inputs")
    return tf.constant(np.array(value, dtype=spec.dtype.as_numpy_dtype))

def to_inputs(body, specs):
    names = sorted(specs)
    if ("instances" in body) == ("inputs" in body):
        raise ValueError("exactly one of 'instances' and 'inputs'")
    if "instances" in body:
        rows = body["instances"]
        if rows and isinstance(rows[0], dict) and not is_b64(rows[0]):
            return {n: to_array([r[n] for r in rows], specs[n]) for n in names}, "row"
        assert len(names) == 1, names
        return {names[0]: to_array(rows, specs[names[0]])}, "row"
    cols = body["inputs"]
    if isinstance(cols, dict) and not is_b64(cols):
        return {n: to_array(cols[n], specs[n]) for n in names}, "columnar"
    assert len(names) == 1, names
    return {names[0]: to_array(cols, specs[names[0]])}, "columnar"

def to_json(name, array):
    if array.dtype == object:
        conv = (lambda b: {"b64": base64.b64encode(b).decode()}) if name.endswith("_bytes") \
            else (lambda b: b.decode("utf-8"))
        return np.vectorize(conv, otypes=[object])(array).tolist()
    return array.tolist()

replies = []
for body in json.load(open(bodies_file)):
    fn = loaded.signatures[body.get("signature_name", "serving_default")]
    inputs, form = to_inputs(body, fn.structured_input_signature[1])
    outputs = {k: v.numpy() for k, v in fn(**inputs).items()}
    if form == "row":
        n = len(next(iter(outputs.values())))
        replies.append({"predictions": [{k: to_json(k, v[i]) for k, v in outputs.items()}
                                        for i in range(n)]})
    else:
        replies.append({"outputs": {k: to_json(k, v) for k, v in outputs.items()}})
json.dump(replies, open(out_file, "w"))
"""


def test_rest_bodies_through_tf_serving_json_rules_equal_keras(run, tmp_path):
    """Bodies built by the client helper, in both forms and for both signatures, fed through
    TF Serving's JSON-to-tensor rules into the SavedModel in a fresh process: the replies'
    probabilities are the Keras model's, and ``classes``/``scores`` its top 5."""
    import tensorflow as tf

    from keras_resnet.export.serving_client import bytes_request, images_request, parse_reply

    report = _export(run, tmp_path / "out", "savedmodel")
    entry = _artifact(report, "savedmodel", "fp32")
    assert entry["passed"] and entry["top_k"] == 5
    images = run.x[:6]
    pixels = np.clip(np.round(images), 0, 255).astype("uint8")
    png = [tf.io.encode_png(p).numpy() for p in pixels]
    bodies = [images_request(images), images_request(images, form="inputs"),
              bytes_request(png), bytes_request(png, form="inputs")]
    (tmp_path / "bodies.json").write_text(json.dumps(bodies))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-I", "-c", _REST, entry["path"], str(tmp_path / "bodies.json"),
                           str(tmp_path / "replies.json")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    replies = json.loads((tmp_path / "replies.json").read_text())
    assert "predictions" in replies[0] and "outputs" in replies[1]
    want = {"pixels": run.probabilities[:6], "png": run.probs(pixels.astype("float32"))}
    for reply, kind in zip(replies, ["pixels", "pixels", "png", "png"]):
        rows = parse_reply(reply)
        assert len(rows) == 6
        for row, ref in zip(rows, want[kind]):
            assert set(row) == {"probabilities", "logits", "classes", "scores"}
            probs = np.asarray(row["probabilities"])
            assert np.max(np.abs(probs - ref)) <= 1e-5  # probabilities are at most 1
            assert len(row["classes"]) == 5 and all(isinstance(c, str) for c in row["classes"])
            # the top 5: each returned class's Keras probability is its score, best first
            np.testing.assert_allclose([ref[NAMES.index(c)] for c in row["classes"]], row["scores"], atol=1e-5)
            np.testing.assert_allclose(row["scores"], np.sort(ref)[::-1][:5], atol=1e-5)
    # The example for the docs: one PNG, its request and the reply (row form).
    example = {"request": bytes_request(png[:1]), "reply": replies[2]["predictions"][0]}
    example["reply"] = {k: example["reply"][k] for k in ("classes", "scores")}
    print("REST example:", json.dumps(example))


def test_models_config_and_batching_parameters_are_tf_serving_protos(run, tmp_path):
    """Both files parse as TF Serving's own protos (ModelServerConfig, BatchingParameters),
    name every exported model with an absolute base path, and a second version keeps one
    entry; the report gives the server command that uses them."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    out = tmp_path / "out"
    report = _export(run, out, "savedmodel")
    serving = report["serving"]
    base = out / "saved_model"
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    (model,) = config.model_config_list.config
    assert model.name == MODEL and model.base_path == str(base / MODEL) and model.model_platform == "tensorflow"
    assert os.path.isabs(model.base_path) and os.path.isdir(os.path.join(model.base_path, "1"))
    batching = (base / "batching_parameters.txt").read_text()
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2 as sb
    except ImportError:  # not in every tensorflow-serving-api wheel: the fields by name
        assert all(f"{k} {{ value: " in batching for k in ("max_batch_size", "batch_timeout_micros",
                                                         "num_batch_threads", "max_enqueued_batches"))
    else:
        params = text_format.Parse(batching, sb.BatchingParameters())
        assert params.max_batch_size.value == 32
    assert serving["command"] == (
        f"tensorflow_model_server --port=8500 --rest_api_port=8501 --model_config_file={base / 'models.config'} "
        f"--enable_batching=true --batching_parameters_file={base / 'batching_parameters.txt'}")
    assert serving["command"] in (out / "report_savedmodel.md").read_text()
    _export(run, out, "savedmodel", overwrite=True)  # version 2 (never replaced): one model entry
    assert sorted(os.listdir(base / MODEL)) == ["1", "2"]
    config = text_format.Parse((base / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == [MODEL]
    # A models.config the user wrote is never replaced.
    (base / "models.config").write_text("model_config_list {}\n")
    report = _export(run, out, "savedmodel", overwrite=True)
    assert (base / "models.config").read_text() == "model_config_list {}\n"
    assert report["serving"]["kept"] == [str(base / "models.config")]


# ---------------------------------------------------------------------------------------
# ONNX


def test_onnx_metadata_and_batches_1_3_32_in_onnx_runtime(run, tmp_path):
    import onnxruntime as ort

    report = _export(run, tmp_path / "out", "onnx")
    for precision in ("fp32", "int8"):
        entry = _artifact(report, "onnx", precision)
        session = ort.InferenceSession(entry["path"], providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["labels"]) == NAMES, precision
        prep = json.loads(meta["preprocessing"])
        assert prep["input"].startswith("pixels 0..255") and prep["color_space"] == "GRAYSCALE"
        assert prep["model_applies"]["scale"] == pytest.approx(run.prep["scale"])
        assert prep["model_applies"]["offset"] == pytest.approx(run.prep["offset"])
        whole = np.concatenate([session.run(["logits"], {"images": run.x[i:i + 32]})[0]
                                for i in range(0, 64, 32)])
        for batch in (1, 3, 32):
            got = np.concatenate([session.run(["logits"], {"images": run.x[i:i + batch]})[0]
                                  for i in range(0, 64 - 64 % batch, batch)])
            ref = run.logits[:len(got)]
            if precision == "fp32":  # float32 rounding in another runtime: 1e-4 of the scale
                assert np.max(np.abs(got - ref)) <= 1e-4 * (np.max(np.abs(ref)) + 1), batch
            else:
                # Integer kernels give every image the same result at every batch size, and
                # the int8 model's predictions are the float model's on all but near-ties.
                np.testing.assert_allclose(got, whole[:len(got)], rtol=0, atol=1e-5)
                assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9, batch


# ---------------------------------------------------------------------------------------
# LiteRT


def _metadata_reader():
    """A reader of the TFLite metadata flatbuffer written from metadata_schema.fbs's field
    order (tables' fields are numbered in declaration order; a union is a type byte then a
    table), with the flatbuffers package's table access only."""
    from flatbuffers import encode, number_types as N, table

    def root(buf):
        return table.Table(buf, encode.Get(N.UOffsetTFlags.packer_type, buf, 0))

    def off(t, slot):
        return t.Offset(4 + 2 * slot)

    def string(t, slot):
        o = off(t, slot)
        return t.String(o + t.Pos).decode() if o else None

    def child(t, slot):
        o = off(t, slot)
        return table.Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None

    def children(t, slot):
        o = off(t, slot)
        if not o:
            return []
        start, n = t.Vector(o), t.VectorLen(o)
        return [table.Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(n)]

    def byte(t, slot):
        o = off(t, slot)
        return t.Get(N.Uint8Flags, o + t.Pos) if o else 0

    def floats(t, slot):
        o = off(t, slot)
        return t.GetVectorAsNumpy(N.Float32Flags, o).tolist() if o else []

    return root, string, child, children, byte, floats


def _read_metadata(content):
    """The TFLITE_METADATA buffer, found with LiteRT's own TFLite schema."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    found = [model.Metadata(i) for i in range(model.MetadataLength())
             if model.Metadata(i).Name() == b"TFLITE_METADATA"]
    assert len(found) == 1
    return model.Buffers(found[0].Buffer()).DataAsNumpy().tobytes()


def test_tflite_metadata_reads_back_and_float_files_are_gpu_compatible(run, tmp_path):
    from keras_resnet.export.tflite import LiteRTModel, gpu_compatibility

    report = _export(run, tmp_path / "out", "tflite", tflite_precisions=["fp32", "fp16", "int8"])
    root, string, child, children, byte, floats = _metadata_reader()
    for precision in ("fp32", "fp16", "int8"):
        entry = _artifact(report, "tflite", precision)
        assert entry["passed"], entry["parity"]
        content = open(entry["path"], "rb").read()
        meta = _read_metadata(content)
        assert meta[4:8] == b"M001"  # metadata_schema.fbs's file identifier
        m = root(meta)
        assert string(m, 0) == MODEL and "10 classes" in string(m, 1) and string(m, 2)
        (subgraph,) = children(m, 3)
        (inp,) = children(subgraph, 2)
        assert string(inp, 0) == "images"
        content_table = child(inp, 3)
        assert byte(content_table, 0) == 2  # ImageProperties
        image = child(content_table, 1)
        assert byte(image, 0) == 2  # GRAYSCALE
        (unit,) = children(inp, 4)
        assert byte(unit, 0) == 1  # NormalizationOptions: pixels 0..255 go in as they are
        norm = child(unit, 1)
        assert floats(norm, 0) == [0.0] and floats(norm, 1) == [1.0]
        stats = child(inp, 5)
        assert floats(stats, 0) == [255.0] and floats(stats, 1) == [0.0]
        outputs = children(subgraph, 3)
        assert sorted(string(o, 0) for o in outputs) == ["logits", "probabilities"]
        for o in outputs:
            (label_file,) = children(o, 6)
            assert string(label_file, 0) == "labels.txt" and byte(label_file, 2) == 2  # TENSOR_AXIS_LABELS
        # The model's own file: the evaluation transform (DESCRIPTIONS).
        (own,) = children(m, 6)
        assert string(own, 0) == "eval_transform.json" and byte(own, 2) == 1
        # The label file and that one are packed in the zip archive appended to the model.
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            assert z.read("labels.txt").decode().splitlines() == NAMES
            transform = json.loads(z.read("eval_transform.json"))
            assert transform["resize"].startswith("to 8x8") and "pretrained_cfg" not in transform
        # The model with its metadata still runs, as exported.
        logits = LiteRTModel(entry["path"]).logits(run.x[:64])
        if precision == "fp32":
            assert np.max(np.abs(logits - run.logits[:64])) <= 1e-4 * (np.max(np.abs(run.logits)) + 1)
        else:
            assert np.mean(logits.argmax(1) == run.logits[:64].argmax(1)) >= 0.9
        if precision in ("fp32", "fp16"):
            gpu = gpu_compatibility(content)
            assert gpu["compatible"] and gpu["incompatible"] == [], gpu
            assert entry["gpu_delegate"] == gpu


# ---------------------------------------------------------------------------------------
# OpenVINO


def test_openvino_ir_runs_in_openvino_with_its_labels(run, tmp_path):
    import openvino as ov

    report = _export(run, tmp_path / "out", "openvino")
    core = ov.Core()
    for precision in ("fp32", "fp16"):
        entry = _artifact(report, "openvino", precision)
        assert entry["passed"], entry["parity"]
        (xml,) = [f for f in os.listdir(entry["path"]) if f.endswith(".xml")]
        model = core.read_model(os.path.join(entry["path"], xml))
        assert model.get_rt_info(["model_info", "labels"]).astype(str).split() == NAMES
        assert model.get_rt_info(["model_info", "model_type"]).astype(str) == "Classification"
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        for batch in (1, 32):
            got = compiled({"images": run.x[:batch]})[compiled.output("logits")]
            ref = run.logits[:batch]
            if precision == "fp32":
                assert np.max(np.abs(got - ref)) <= 1e-4 * (np.max(np.abs(ref)) + 1)
            else:  # float16 weights (relative rounding 2**-11): the same top-1 but near-ties
                assert np.mean(got.argmax(1) == ref.argmax(1)) >= (batch - 1) / batch
        assert entry["latency_ms"] > 0 and entry["latency_b32_ms"] > 0 and entry["size_bytes"] > 0
    fp32, fp16 = (_artifact(report, "openvino", p)["size_bytes"] for p in ("fp32", "fp16"))
    assert fp16 < 0.7 * fp32
