"""TFLite / LiteRT for mobile.

Converted with ``tf.lite.TFLiteConverter.from_saved_model`` from a SavedModel holding one
``serving_default`` signature (pixels in 0..255 -> ``logits``, ``probabilities``;
preprocessing baked in), restricted to builtin TFLite ops (no Flex ops). The signature is
kept in the file, so ``interpreter.get_signature_runner()`` works.

Precisions:

``fp32``     float32.
``fp16``     float16 weights (float32 compute where the delegate has no fp16 kernels).
``dynamic``  dynamic-range quantization: int8 weights, float activations.
``int8``     full-integer quantization calibrated on representative images; the input
             and output types are ``int8_io``: ``"int8"``, ``"uint8"`` or ``"float32"``.
``qat``      int8 after quantization-aware training (see :mod:`keras_resnet.quantization`).

Every file is run in the LiteRT interpreter (``ai_edge_litert``) and compared with the
Keras model: float32 logits within 1e-4 of the logits' scale; the others by top-1 agreement
(>= 95% by default) and accuracy change (at most 1 pp lower by default) on held-out data.
"""

import os
import tempfile
import warnings

import numpy as np

from ..cli_util import native_logs_quieted
from ._common import check_precisions as _check_precisions
from ._common import (ExportError, artifact, atomic_path, check_new_path, latency_ms,
                      parity_vs_keras, say)
from ._common import MAX_ACCURACY_DROP, MIN_AGREEMENT, check_gate

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "qat")
INT8_IO = ("int8", "uint8", "float32")


def check_precisions(precisions):
    return _check_precisions("TFLite", precisions, PRECISIONS)


def check_int8_io(int8_io):
    if int8_io not in INT8_IO:
        raise ExportError(f"int8_io={int8_io!r} is not supported; accepted: {', '.join(INT8_IO)}")
    return int8_io


def write_pixel_saved_model(source, path):
    """A SavedModel with only the pixel ``serving_default`` signature (the TFLite input)."""
    from .saved_model import write_saved_model

    write_saved_model(source, path, signatures=("serving_default",))


def convert_saved_model(saved_model_dir, precision, representative_images=None, int8_io="int8"):
    """TFLite flatbuffer bytes from a SavedModel's ``serving_default`` signature."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in ("int8", "qat"):
        check_int8_io(int8_io)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative_images is not None:
            images = np.asarray(representative_images, "float32")

            def representative_dataset():
                for i in range(len(images)):
                    yield {"images": images[i:i + 1]}

            converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, int8_io)
        converter.inference_output_type = getattr(tf, int8_io)
    elif precision != "fp32":
        check_precisions([precision])
    with warnings.catch_warnings():
        # The converter's int8 calibration runs TensorFlow's own (deprecated)
        # tf.lite.Interpreter internally; keras_resnet runs every .tflite in LiteRT.
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        return converter.convert()


class LiteRTModel:
    """A ``.tflite`` file in the LiteRT interpreter: pixels in, float logits out.

    Handles quantized inputs/outputs (quantizes pixels with the input's scale and zero
    point, dequantizes the outputs).
    """

    def __init__(self, path_or_bytes, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"num_threads": num_threads or os.cpu_count() or 1}
        with native_logs_quieted():  # LiteRT's "Created ... XNNPACK delegate" notice
            if isinstance(path_or_bytes, (bytes, bytearray)):
                self.interpreter = Interpreter(model_content=bytes(path_or_bytes), **kwargs)
            else:
                self.interpreter = Interpreter(model_path=os.fspath(path_or_bytes), **kwargs)
            self.interpreter.allocate_tensors()
        signatures = self.interpreter.get_signature_list()
        if "serving_default" not in signatures:
            raise RuntimeError(f"the TFLite file has no serving_default signature: {signatures}")
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.input = self.runner.get_input_details()["images"]
        self.outputs = self.runner.get_output_details()

    def op_names(self):
        return sorted({op["op_name"] for op in self.interpreter._get_ops_details()})

    def io_types(self):
        return (np.dtype(self.input["dtype"]).name,
                np.dtype(self.outputs["logits"]["dtype"]).name)

    def quantize_input(self, images):
        dtype = self.input["dtype"]
        images = np.asarray(images, "float32")
        if dtype == np.float32:
            return images
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, name, value):
        details = self.outputs[name]
        if details["dtype"] == np.float32:
            return value
        scale, zero = details["quantization"]
        return (value.astype("float32") - zero) * scale

    def __call__(self, images, output="logits"):
        result = self.runner(images=self.quantize_input(images))
        return self._dequantize(output, result[output])

    def logits(self, images, batch_size=64):
        outs = [self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(outs, axis=0)

    def latency(self, runs=50):
        shape = [1, *[int(d) for d in self.input["shape"][1:]]]
        x = self.quantize_input(np.random.default_rng(0).uniform(0, 255, shape))
        return latency_ms(lambda: self.runner(images=x), runs=runs)


def verify(source, path, precision, eval_images, eval_labels=None, latency_runs=50,
           min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP):
    """Run ``path`` in LiteRT against the Keras model; returns ``(parity, latency_ms, info)``."""
    model = LiteRTModel(path)
    ops = model.op_names()
    bad_ops = [op for op in ops if op.upper().startswith("FLEX") or op.upper() == "CUSTOM"]
    parity = parity_vs_keras(source, "tflite", precision, model.logits(eval_images), eval_images,
                             eval_labels, min_agreement=min_agreement,
                             max_accuracy_drop=max_accuracy_drop)
    if bad_ops:
        parity["passed"] = False
        parity["message"] = (parity["message"] + "; " if parity["message"] else "") + (
            f"non-builtin ops {bad_ops}")
    in_type, out_type = model.io_types()
    info = {"ops": ops, "input_type": in_type, "output_type": out_type}
    return parity, model.latency(latency_runs), info


def tflite_path(out_dir, model_name, precision):
    return os.path.join(out_dir, f"{model_name}_{precision}.tflite")


def export_tflite(source, out_dir, precisions=("fp32", "fp16", "dynamic", "int8"), int8_io="int8",
                  calibration_images=None, eval_images=None, eval_labels=None, model_name=None,
                  overwrite=False, latency_runs=50, qat_options=None, min_agreement=MIN_AGREEMENT,
                  max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Write ``<out_dir>/<model_name>_<precision>.tflite`` for each precision, verify each
    in LiteRT, and return the report entries.

    ``calibration_images`` (pixels) are needed for ``int8`` and ``qat``; ``qat_options`` are
    keyword arguments for :func:`keras_resnet.quantization.qat_tflite` (``train_arrays``,
    ``epochs``, ...). ``min_agreement`` and ``max_accuracy_drop`` set the quantized gate
    (fractions; see :mod:`keras_resnet.export`).
    """
    precisions = check_precisions(precisions)
    check_int8_io(int8_io)
    check_gate(min_agreement, max_accuracy_drop)
    model_name = model_name or source.name
    paths = {p: tflite_path(out_dir, model_name, p) for p in precisions}
    for p in paths.values():
        check_new_path(p, overwrite)
    if any(p in ("int8", "qat") for p in precisions) and calibration_images is None:
        raise ExportError("int8 TFLite export needs calibration images (representative data)")
    if eval_images is None:
        eval_images = source.sample_input(8)
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        if any(p != "qat" for p in precisions):
            say(progress, "[tflite] writing the conversion SavedModel")
            write_pixel_saved_model(source, saved)
        for precision in precisions:
            path = paths[precision]
            say(progress, f"[tflite] converting {precision} -> {path}")
            extra = {}
            with atomic_path(path, overwrite=overwrite) as tmp_path:
                if precision == "qat":
                    from ..quantization import qat_tflite

                    extra["qat"] = qat_tflite(source, tmp_path, calibration_images=calibration_images,
                                              int8_io=int8_io, progress=progress, **(qat_options or {}))
                else:
                    data = convert_saved_model(saved, precision, calibration_images, int8_io)
                    with open(tmp_path, "wb") as f:
                        f.write(data)
            say(progress, f"[tflite] verifying {precision} in LiteRT")
            parity, latency, info = verify(source, path, precision, eval_images, eval_labels,
                                           latency_runs, min_agreement, max_accuracy_drop)
            entries.append(artifact("tflite", precision, path, parity, latency, **info, **extra))
    return entries
