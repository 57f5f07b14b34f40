"""SavedModel for TF Serving.

Layout: ``<base>/<model_name>/<version>/`` (point TF Serving's ``--model_base_path`` at
``<base>/<model_name>``). Each export adds the next numeric version; an existing version
is never overwritten. The version is written under a temporary name (which TF Serving
ignores: it is not a number) and renamed when complete.

Signatures (preprocessing baked in, so clients send pixels):

``serving_default``
    ``images``: float32 ``[batch, H, W, C]`` pixels in 0..255
    -> ``probabilities``: float32 ``[batch, classes]`` (softmax), ``logits``: float32
    ``[batch, classes]``, ``classes``: string ``[batch, k]`` (the top k class names, best
    first; k = ``top_k``, default 5, at most the number of classes) and ``scores``: float32
    ``[batch, k]`` (their probabilities).
``serving_bytes``
    ``image_bytes``: string ``[batch]``, encoded JPEG/PNG/GIF/BMP images (what a REST
    client sends as ``{"b64": ...}``); each is decoded to C channels and given the run's
    evaluation transform (:func:`keras_resnet.data.transform`, the very function the
    evaluation pipeline uses: for the ``imagenet`` preset, folder and TFRecord runs'
    default, the shorter side resized to H / 0.875 with the aspect ratio kept, then the
    centre H x W crop; otherwise a bilinear resize to H x W) -> the same two outputs.
    ``assets.extra/signature.json`` describes the transform (``eval_transform``).

Warmup requests (one per signature, TF Serving's ``PredictionLog`` format) are written to
``assets.extra/tf_serving_warmup_requests``. Beside the model folders, ``models.config``
(``--model_config_file``: every model in the folder) and ``batching_parameters.txt``
(``--batching_parameters_file``) are written; :func:`server_command` is the command line
that uses them. :mod:`keras_resnet.export.serving_client` builds the REST request bodies.
"""

import json
import os
import re
import subprocess
import tempfile

import numpy as np
import tensorflow as tf

from .._compat import keras
from ..isolated import python_command
from .formats import TITLES, TOP_K
from ._common import (ExportError, ExportFormat, artifact, atomic_path, float_parity, say,
                      top1_fields)

SIGNATURES = ("serving_default", "serving_bytes")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def versions(model_dir):
    """Numeric versions present under ``<base>/<model_name>``, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(d) for d in os.listdir(model_dir) if re.fullmatch(r"\d+", d)
                  and os.path.isdir(os.path.join(model_dir, d)))


def next_version(model_dir):
    found = versions(model_dir)
    return found[-1] + 1 if found else 1


def class_names(source):
    """The class names (run.json's), or the class indices as strings."""
    names = source.class_names
    return [str(c) for c in names] if names and len(names) == source.num_classes else [
        str(i) for i in range(source.num_classes)]


def check_top_k(top_k):
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ExportError(f"top_k={top_k!r} is not supported; expected a positive integer")
    return top_k


def _serving_functions(source, top_k=None):
    h, w, c = source.input_shape
    labels = class_names(source)

    def outputs(images):
        out = source.serving_outputs(images)
        if top_k:
            # What TF Serving's classifiers answer with: the top k labels and their scores.
            top = tf.math.top_k(out["probabilities"], k=min(top_k, source.num_classes))
            out["classes"] = tf.gather(tf.constant(labels), top.indices)
            out["scores"] = top.values
        return out

    def serving_default(images):
        return outputs(images)

    def serving_bytes(image_bytes):
        def decode(data):
            image = tf.io.decode_image(data, channels=c, expand_animations=False)
            image = tf.cast(image, tf.float32)
            if h is not None and w is not None:
                image = tf.ensure_shape(source.eval_transform(image), (h, w, c))
            return image

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((h, w, c), tf.float32))
        return outputs(images)

    images_spec = tf.TensorSpec((None, *source.input_shape), tf.float32, name="images")
    bytes_spec = tf.TensorSpec((None,), tf.string, name="image_bytes")
    return [("serving_default", serving_default, images_spec), ("serving_bytes", serving_bytes, bytes_spec)]


def write_saved_model(source, path, signatures=SIGNATURES, top_k=None):
    """Write the serving SavedModel (no warmup, no version layout) to ``path``; with
    ``top_k`` its signatures also return ``classes`` (the top k labels) and ``scores``."""
    archive = keras.export.ExportArchive()
    for t in source.trackables():
        archive.track(t)
    for name, fn, spec in _serving_functions(source, top_k):
        if name in signatures:
            archive.add_endpoint(name, fn, input_signature=[spec])
    archive.write_out(path, verbose=False)


def encode_png(image):
    """One ``[H, W, C]`` pixel array -> PNG bytes (pixels rounded to uint8)."""
    pixels = np.clip(np.round(np.asarray(image)), 0, 255).astype("uint8")
    return tf.io.encode_png(pixels).numpy()


def write_warmup(path, model_name, images):
    """TF Serving warmup file: a ``PredictionLog`` per signature, batch of one image."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ExportError(
            "SavedModel warmup requests need tensorflow-serving-api: pip install 'keras-residual[export]'"
        ) from e
    os.makedirs(os.path.dirname(path), exist_ok=True)
    first = np.asarray(images[:1], "float32")
    requests = [
        ("serving_default", "images", tf.make_tensor_proto(first)),
        ("serving_bytes", "image_bytes", tf.make_tensor_proto([encode_png(first[0])], dtype=tf.string)),
    ]
    with tf.io.TFRecordWriter(path) as writer:
        for signature, key, tensor in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            request.inputs[key].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def read_warmup(path):
    """``[(signature_name, {input: ndarray})]`` from a warmup file."""
    from tensorflow_serving.apis import prediction_log_pb2

    out = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        req = log.predict_log.request
        out.append((req.model_spec.signature_name,
                    {k: tf.make_ndarray(v) for k, v in req.inputs.items()}))
    return out


_CHECK_SCRIPT = r"""
import json, sys, time, statistics
import numpy as np
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils
d, inp, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
meta = saved_model_utils.get_meta_graph_def(d, "serve")
sigs = sorted(k for k in meta.signature_def.keys() if not k.startswith("__"))
loaded = tf.saved_model.load(d)
fn = loaded.signatures["serving_default"]
data = np.load(inp, allow_pickle=True)
images = data["images"]
logits = np.concatenate([fn(images=tf.constant(images[i:i + 64]))["logits"].numpy()
                         for i in range(0, len(images), 64)])
res = {"signatures": sigs}
first = fn(images=tf.constant(images[:64]))
if "classes" in first:
    labels = np.asarray(data["labels"]).astype(str)
    probs = first["probabilities"].numpy()
    k = first["classes"].shape[1]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    got = np.char.decode(first["classes"].numpy().astype(bytes), "utf-8")
    res["top_k"] = int(k)
    res["classes_mismatches"] = int(np.sum(got != labels[order]))
    res["scores_max_abs_diff"] = float(np.max(np.abs(first["scores"].numpy()
                                                     - np.take_along_axis(probs, order, 1))))
if "serving_bytes" in loaded.signatures:
    png = list(data["png"])
    b = loaded.signatures["serving_bytes"](image_bytes=tf.constant(png))
    ref = fn(images=tf.constant(data["png_pixels"]))
    res["bytes_max_abs_diff"] = float(np.max(np.abs(b["logits"].numpy() - ref["logits"].numpy())))
x = tf.constant(images[:1])
for _ in range(5):
    fn(images=x)
times = []
for _ in range(runs):
    t = time.perf_counter(); fn(images=x)["logits"].numpy(); times.append((time.perf_counter() - t) * 1e3)
res["latency_ms"] = statistics.median(times)
x32 = tf.constant(np.concatenate([images] * (-(-32 // len(images))))[:32])
for _ in range(2):
    fn(images=x32)
times = []
for _ in range(max(2, runs // 5)):
    t = time.perf_counter(); fn(images=x32)["logits"].numpy(); times.append((time.perf_counter() - t) * 1e3)
res["latency_b32_ms"] = statistics.median(times)
res["throughput_ips"] = 32e3 / res["latency_b32_ms"]
np.save(out, logits)
print("RESULT " + json.dumps(res))
"""


def _bytes_check_images(source, images):
    """``(PNG bytes, expected model input pixels)`` for checking ``serving_bytes``: each
    image also stretched to a wider and a taller aspect ratio, so that the signature's
    resize and crop are exercised, and the pixels the evaluation transform makes of each."""
    h, w, _ = source.input_shape if source is not None else (None, None, None)
    few = np.clip(np.round(images), 0, 255).astype("float32")
    if h is None or w is None:
        return [encode_png(im) for im in few], few
    encoded, expected = [], []
    for i, im in enumerate(few):
        size = [(h, w), (h, w + w // 2 + 1), (h + h // 2 + 1, w)][i % 3]
        im = np.clip(np.round(tf.image.resize(im, size, method="bilinear").numpy()), 0, 255)
        encoded.append(encode_png(im))
        expected.append(source.eval_transform(tf.constant(im, tf.float32)).numpy())
    return encoded, np.stack(expected).astype("float32")


def check_in_fresh_process(path, images, runs=50, timeout=600, source=None):
    """Load ``path`` in a new Python process; return (logits, info) from its
    ``serving_default`` on ``images`` plus the ``serving_bytes`` check and batch-1 latency."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npy")
        png, png_pixels = _bytes_check_images(source, images[:8])
        np.savez(inp, images=np.asarray(images, "float32"), png_pixels=png_pixels,
                 png=np.array(png, dtype=object),
                 labels=np.array(class_names(source) if source is not None else [], dtype=object))
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.pop("TF_USE_LEGACY_KERAS", None)
        argv, env = python_command([path, inp, out, str(runs)], env=env, code=_CHECK_SCRIPT)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the SavedModel at {path} failed to load/run in a fresh process:\n"
                               + proc.stderr[-3000:])
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return np.load(out), json.loads(line[len("RESULT "):])


def check_version(version):
    """``version``: None (the next free one) or a non-negative integer."""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ExportError(f"version={version!r} is not supported; expected a non-negative integer")
    return version


def export_saved_model(source, base_dir, model_name=None, version=None, overwrite=False,
                       eval_images=None, warmup_images=None, latency_runs=50, progress=print,
                       top_k=TOP_K, eval_labels=None):
    """Export ``source`` (an :class:`~keras_resnet.export.source.ExportSource`) for TF Serving.

    Writes ``<base_dir>/<model_name>/<version>/`` (next free version unless ``version`` is
    given; an existing version is refused unless ``overwrite``) whose signatures return
    ``probabilities``, ``logits``, ``classes`` (the ``top_k`` labels, best first) and
    ``scores``; writes ``<base_dir>/models.config`` and ``<base_dir>/batching_parameters.txt``
    (:func:`write_serving_config`); verifies the version in a fresh process (signatures
    listed, ``serving_default`` logits within 1e-5 of the logits' scale of Keras, the bytes
    signature equal to the pixel one, ``classes``/``scores`` the top k of ``probabilities``)
    and returns the report entry.
    """
    model_name = model_name or source.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", model_name):
        raise ExportError(f"model_name={model_name!r} is not supported; use letters, digits, '_', '-', '.'")
    top_k = check_top_k(top_k)
    model_dir = os.path.join(base_dir, model_name)
    version = next_version(model_dir) if check_version(version) is None else version
    path = os.path.join(model_dir, str(version))
    if eval_images is None:
        eval_images = source.sample_input(8)
    warmup_images = eval_images if warmup_images is None else warmup_images
    say(progress, f"[savedmodel] writing {path}")
    with atomic_path(path, overwrite=overwrite, directory=True) as tmp:
        write_saved_model(source, tmp, top_k=top_k)
        write_warmup(os.path.join(tmp, WARMUP_FILE), model_name, warmup_images)
        with open(os.path.join(tmp, "assets.extra", "signature.json"), "w") as f:
            json.dump(signature_doc(source, top_k), f, indent=2)
    serving = write_serving_config(base_dir, progress)
    say(progress, "[savedmodel] verifying in a fresh process")
    logits, info = check_in_fresh_process(path, eval_images, runs=latency_runs, source=source)
    ref = source.keras_logits(eval_images)
    parity = dict(float_parity("savedmodel", ref, logits), **top1_fields(ref, logits, eval_labels))
    problems = [parity["message"]] if parity["message"] else []
    missing = [s for s in SIGNATURES if s not in info["signatures"]]
    if missing:
        problems.append(f"signatures {missing} missing from {info['signatures']}")
    if info.get("bytes_max_abs_diff", 0.0) > parity["threshold"]:  # same scale, same rule
        problems.append(f"serving_bytes differs from serving_default by {info['bytes_max_abs_diff']:.3g}")
    if info.get("classes_mismatches") or info.get("scores_max_abs_diff", 0.0) > 1e-6:
        problems.append(f"classes/scores are not the top {top_k} of probabilities "
                        f"({info.get('classes_mismatches')} labels differ)")
    parity.update(passed=not problems, message="; ".join(problems))
    parity["bytes_signature_max_abs_diff"] = info.get("bytes_max_abs_diff")
    return artifact("savedmodel", "fp32", path, parity, info["latency_ms"], model_name=model_name,
                    version=version, signatures=info["signatures"], top_k=info.get("top_k"),
                    latency_b32_ms=info.get("latency_b32_ms"), throughput_ips=info.get("throughput_ips"),
                    serving=serving)


# ----------------------------------------------------------------------------------------
# TF Serving configuration beside the versioned directories

CONFIG_FILE, BATCHING_FILE = "models.config", "batching_parameters.txt"
_OURS = "# written by keras_resnet export"


def _ours(path):
    """Whether ``path`` is absent or a file this export wrote (never replace a user's)."""
    if not os.path.lexists(path):
        return True
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(_OURS)
    except (OSError, UnicodeDecodeError):
        return False


def models_config(base_dir):
    """TF Serving's ``--model_config_file`` (a ModelServerConfig text proto) listing every
    model under ``base_dir`` that has a numeric version (each serves its latest version)."""
    base = os.path.abspath(base_dir)
    names = sorted(d for d in os.listdir(base) if versions(os.path.join(base, d))) if os.path.isdir(base) else []
    lines = [f"{_OURS}: every model under this folder; TF Serving serves each one's latest version",
             "model_config_list {"]
    for name in names:
        lines += ["  config {", f'    name: "{name}"', f'    base_path: "{os.path.join(base, name)}"',
                  '    model_platform: "tensorflow"', "  }"]
    return "\n".join(lines + ["}"]) + "\n"


def batching_parameters(max_batch_size=32, batch_timeout_micros=1000, threads=None):
    """TF Serving's ``--batching_parameters_file`` (a BatchingParameters text proto): batches of
    up to ``max_batch_size`` requests, waiting at most ``batch_timeout_micros`` to fill one,
    one batching thread per CPU."""
    threads = threads or os.cpu_count() or 1
    return (f"{_OURS}: TF Serving's server-side batching (--enable_batching)\n"
            f"max_batch_size {{ value: {max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: 100 }}\n"
            f"num_batch_threads {{ value: {threads} }}\n")


def server_command(base_dir):
    """The ``tensorflow_model_server`` command line that serves ``base_dir`` with its files."""
    base = os.path.abspath(base_dir)
    return (f"tensorflow_model_server --port=8500 --rest_api_port=8501 "
            f"--model_config_file={os.path.join(base, CONFIG_FILE)} --enable_batching=true "
            f"--batching_parameters_file={os.path.join(base, BATCHING_FILE)}")


def write_serving_config(base_dir, progress=None):
    """Write ``models.config`` and ``batching_parameters.txt`` into ``base_dir`` (atomically;
    a file of the same name that this export did not write is left alone and named in the
    result). Returns the paths and the server command line."""
    out = {"models_config": os.path.abspath(os.path.join(base_dir, CONFIG_FILE)),
           "batching_parameters": os.path.abspath(os.path.join(base_dir, BATCHING_FILE)),
           "command": server_command(base_dir), "kept": []}
    for key, text in (("models_config", models_config(base_dir)), ("batching_parameters", batching_parameters())):
        path = out[key]
        if not _ours(path):
            out["kept"].append(path)
            say(progress, f"[savedmodel] {path} was not written by keras_resnet: left as it is")
            continue
        with atomic_path(path, overwrite=True) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
    return out


def signature_doc(source, top_k=TOP_K):
    """What the signatures take and return (also written to ``assets.extra/signature.json``)."""
    h, w, c = source.input_shape
    k = min(top_k, source.num_classes) if top_k else None
    outputs = {"probabilities": f"float32 [batch, {source.num_classes}] softmax",
               "logits": f"float32 [batch, {source.num_classes}]"}
    if k:
        outputs.update(classes=f"string [batch, {k}]: the top k={k} class names, best first",
                       scores=f"float32 [batch, {k}]: their probabilities")
    return {
        "serving_default": {
            "inputs": {"images": f"float32 [batch, {h}, {w}, {c}] pixels in 0..255"},
            "outputs": outputs,
        },
        "serving_bytes": {
            "inputs": {"image_bytes": "string [batch] encoded JPEG/PNG/GIF/BMP images, "
                                      "decoded, then given eval_transform"},
            "outputs": outputs,
        },
        "top_k": k,
        "eval_transform": source.eval_transform_doc(),
        "preprocessing": source.preprocessing,
        "class_names": source.class_names,
    }


# ----------------------------------------------------------------------------------------
# Registry entry (keras_resnet.export.export_all)


def _export(source, out_dir, options, run):
    warmup = run["calibration_images"] if run["calibration_images"] is not None else run["eval_images"]
    return [export_saved_model(
        source, out_dir, model_name=run["model_name"], version=options["version"],
        overwrite=run["overwrite"], eval_images=run["eval_images"], warmup_images=warmup,
        latency_runs=run["latency_runs"], progress=run["progress"], top_k=options["top_k"],
        eval_labels=run["eval_labels"])]


def _pin(out_dir, model_name, options, interrupted):
    """The version is chosen before the export starts: the one given, the one an interrupted
    export of this directory chose (its rerun replaces that version), or the next free one."""
    if options["version"] is not None:
        return options
    if interrupted and interrupted.get("version") is not None:
        return dict(options, version=int(interrupted["version"]))
    return dict(options, version=next_version(os.path.join(out_dir, model_name)))


FORMAT = ExportFormat(
    name="savedmodel", directory="saved_model", title=TITLES["savedmodel"],
    options=dict(version=None, top_k=TOP_K),
    check=lambda options: dict(options, version=check_version(options["version"]),
                               top_k=check_top_k(options["top_k"])),
    outputs=lambda out_dir, model_name, options: [
        os.path.join(out_dir, model_name, str(options["version"]))],  # pinned by _pin
    needs_calibration=lambda options: False,
    export=_export,
    pin=_pin,
)
