"""ONNX through tf2onnx, int8 through ONNX Runtime's static quantization.

The graph takes ``images``: float32 ``[batch, H, W, C]`` pixels in 0..255 (NHWC,
preprocessing baked in; ``batch`` is a dynamic dimension) and returns ``logits`` and
``probabilities``: float32 ``[batch, classes]``.

Precisions:

``fp32``  tf2onnx conversion at the chosen opset (default 17).
``int8``  ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8
          weights, uint8 activations (ONNX Runtime's fast x86 combination; int8 on
          request), MinMax calibration on representative images.

Each file is run in ONNX Runtime and compared with the Keras model: fp32 logits within
1e-4 of the logits' scale; int8 by top-1 agreement (>= 95% by default) and accuracy change
(at most 1 pp lower by default).
"""

import os
import tempfile

import numpy as np

from ._common import check_precisions as _check_precisions
from ._common import (ExportError, artifact, atomic_path, check_new_path, latency_ms,
                      parity_vs_keras, say)
from ._common import MAX_ACCURACY_DROP, MIN_AGREEMENT, check_gate

PRECISIONS = ("fp32", "int8")
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18


def check_precisions(precisions):
    return _check_precisions("ONNX", precisions, PRECISIONS)


def check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset={opset!r} is not supported; accepted: {MIN_OPSET}..{MAX_OPSET}")
    return opset


def convert_fp32(source, path, opset=DEFAULT_OPSET):
    """tf2onnx conversion of the pixel serving function; writes ``path``."""
    import tensorflow as tf
    import tf2onnx

    check_opset(opset)
    fn = tf.function(source.serving_outputs)
    spec = [tf.TensorSpec((None, *source.input_shape), tf.float32, name="images")]
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    graph = model_proto.graph
    names = [i.name for i in graph.input]
    if names != ["images"]:
        raise RuntimeError(f"unexpected ONNX inputs {names}; expected ['images']")
    # Name the dynamic batch dimension "batch" (tf2onnx leaves "unk__N").
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        for d, size in zip(dims[1:], source.input_shape):
            if size is not None:
                d.dim_value = int(size)
    model_proto.doc_string = (
        "keras_resnet export: images float32 [batch, H, W, C] pixels 0..255 -> "
        "logits, probabilities float32 [batch, classes]"
    )
    import onnx

    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, path)


class _Reader:
    """Calibration data for ``quantize_static``: one image per call."""

    def __init__(self, images):
        self.images = np.asarray(images, "float32")
        self.i = 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = self.images[self.i:self.i + 1]
        self.i += 1
        return {"images": x}

    def rewind(self):
        self.i = 0


ACTIVATION_TYPES = ("uint8", "int8")


def quantize_int8(fp32_path, path, calibration_images, activation_type="uint8"):
    """QDQ quantization: per-channel int8 weights, ``activation_type`` activations, MinMax
    calibration on ``calibration_images``.

    The residual ``Add`` and the global average pool are quantized too, so ONNX Runtime's
    CPU provider fuses the whole network into integer kernels (QLinearConv, QLinearAdd).
    uint8 activations with int8 weights (U8S8) is what its x86 kernels run fastest; with
    int8 activations it leaves the convolutions that feed an ``Add`` in float.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static, registry)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activation_type not in ACTIVATION_TYPES:
        raise ExportError(f"activation_type={activation_type!r} is not supported; accepted: "
                          f"{', '.join(ACTIVATION_TYPES)}")

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calibration_images)
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
        quantize_static(
            pre, path, reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=sorted(set(registry.QDQRegistry) | {"Add", "GlobalAveragePool"}),
        )


class ORTModel:
    """An ONNX file in ONNX Runtime (CPU): pixels in, logits out."""

    def __init__(self, path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.fspath(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_shape = self.session.get_inputs()[0].shape

    def __call__(self, images, output="logits"):
        return self.session.run([output], {"images": np.asarray(images, "float32")})[0]

    def logits(self, images, batch_size=64):
        return np.concatenate([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    def latency(self, runs=50):
        shape = [1] + [int(d) for d in self.input_shape[1:]]
        x = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
        return latency_ms(lambda: self.session.run(["logits"], {"images": x}), runs=runs)


def verify(source, path, precision, eval_images, eval_labels=None, latency_runs=50,
           min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP):
    import onnx

    model = ORTModel(path)
    parity = parity_vs_keras(source, "onnx", precision, model.logits(eval_images), eval_images,
                             eval_labels, min_agreement=min_agreement,
                             max_accuracy_drop=max_accuracy_drop)
    proto = onnx.load(os.fspath(path), load_external_data=False)
    info = {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output],
        "quantize_ops": sum(n.op_type == "QuantizeLinear" for n in proto.graph.node),
        "quantized_op_types": sorted({n.op_type for n in proto.graph.node
                                      if any(i.endswith("_DequantizeLinear_Output") for i in n.input)}),
    }
    return parity, model.latency(latency_runs), info


def onnx_path(out_dir, model_name, precision):
    return os.path.join(out_dir, f"{model_name}_{precision}.onnx")


def export_onnx(source, out_dir, precisions=PRECISIONS, opset=DEFAULT_OPSET, calibration_images=None,
                eval_images=None, eval_labels=None, model_name=None, overwrite=False, latency_runs=50,
                activation_type="uint8", min_agreement=MIN_AGREEMENT,
                max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Write ``<out_dir>/<model_name>_<precision>.onnx`` for each precision, verify each in
    ONNX Runtime, and return the report entries (``min_agreement``, ``max_accuracy_drop``:
    the quantized gate, as fractions)."""
    precisions = check_precisions(precisions)
    check_gate(min_agreement, max_accuracy_drop)
    check_opset(opset)
    model_name = model_name or source.name
    paths = {p: onnx_path(out_dir, model_name, p) for p in precisions}
    for p in paths.values():
        check_new_path(p, overwrite)
    if "int8" in precisions and calibration_images is None:
        raise ExportError("int8 ONNX export needs calibration images (representative data)")
    if eval_images is None:
        eval_images = source.sample_input(8)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        say(progress, f"[onnx] converting with tf2onnx (opset {opset})")
        convert_fp32(source, fp32, opset)
        for precision in precisions:
            path = paths[precision]
            say(progress, f"[onnx] writing {precision} -> {path}")
            with atomic_path(path, overwrite=overwrite) as tmp_path:
                if precision == "fp32":
                    import shutil

                    shutil.copyfile(fp32, tmp_path)
                else:
                    quantize_int8(fp32, tmp_path, calibration_images, activation_type)
            say(progress, f"[onnx] verifying {precision} in ONNX Runtime")
            parity, latency, info = verify(source, path, precision, eval_images, eval_labels,
                                           latency_runs, min_agreement, max_accuracy_drop)
            entries.append(artifact("onnx", precision, path, parity, latency, **info))
    return entries
