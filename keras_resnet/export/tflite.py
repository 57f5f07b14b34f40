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
``qat``      int8 after quantization-aware training (see :mod:`keras_resnet.export.qat`).

Every file is run in the LiteRT interpreter (``ai_edge_litert``) and compared with the
Keras model: float32 logits within 1e-4 of the logits' scale; the others by top-1 agreement
(>= 95% by default) and accuracy change (at most 1 pp lower by default) on held-out data.
"""

import json
import os
import tempfile

import numpy as np

from ..cli_util import native_logs_quieted
from . import qat
from ._common import (MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError, ExportFormat, batch_timing,
                      check_gate,
                      latency_ms, parity_vs_keras, precision_paths, say, split_list, write_and_verify)
from .formats import TFLITE_DEFAULT_PRECISIONS, TITLES
from .saved_model import class_names, write_saved_model
from .tflite_convert import INT8_IO, PRECISIONS, check_int8_io, check_precisions, convert_saved_model  # noqa: F401

# The metadata file with the evaluation transform and the weights' pretrained_cfg.
EVAL_TRANSFORM_FILE = "eval_transform.json"
GPU_PRECISIONS = ("fp32", "fp16")


def gpu_compatibility(content):
    """LiteRT's model analyser (``tf.lite.experimental.Analyzer``) with GPU-delegate
    compatibility on ``content`` (a ``.tflite`` flatbuffer): ``{"compatible": bool,
    "incompatible": [the analyser's lines naming what the GPU delegate cannot run]}``."""
    import contextlib
    import io

    import tensorflow as tf

    text = io.StringIO()
    with contextlib.redirect_stdout(text), native_logs_quieted():
        tf.lite.experimental.Analyzer.analyze(model_content=content, gpu_compatibility=True)
    lines = text.getvalue().splitlines()
    bad = [ln.strip() for ln in lines if "GPU COMPATIBILITY WARNING" in ln or "Not supported" in ln]
    compatible = not bad and any("compatible with GPU delegate" in ln for ln in lines)
    return {"compatible": compatible, "incompatible": bad}


def describe(source, precision):
    """The model description written into the ``.tflite`` metadata."""
    what = {"fp32": "float32", "fp16": "float16 weights", "dynamic": "dynamic-range int8 weights",
            "int8": "full-integer int8", "qat": "int8 after quantization-aware training"}[precision]
    prep = source.preprocessing
    return (f"{source.name}: residual network image classifier, {source.num_classes} classes, "
            f"{what}; exported by keras_resnet. Input: pixels 0..255; the model applies its own "
            f"preprocessing (pixels * {prep['scale']} + {prep['offset']}). Resize images as "
            f"{source.eval_transform_doc()['resize']}"
            + (f", then crop {source.eval_transform_doc()['crop']}" if source.eval_transform_doc().get("crop")
               else "") + ".")


def with_metadata(source, content, precision):
    """``content`` with LiteRT model metadata and the label file (:mod:`.tflite_metadata`)."""
    from .. import __version__
    from .tflite_metadata import add_metadata

    if None in source.input_shape:
        return content
    transform = json.dumps(source.eval_transform_doc(), indent=1).encode("utf-8")
    return add_metadata(content, source.name, describe(source, precision), __version__,
                        "keras_resnet export", source.input_shape, class_names(source),
                        model_files={EVAL_TRANSFORM_FILE: (
                            transform, "how to resize and crop an image for this model (JSON), "
                            "with the weights' pretrained_cfg when they have one")})


def write_pixel_saved_model(source, path):
    """A SavedModel with only the pixel ``serving_default`` signature (the TFLite input)."""
    write_saved_model(source, path, signatures=("serving_default",))


def op_names(content):
    """The operators a ``.tflite`` flatbuffer (bytes) uses, by TFLite's names (``CONV_2D``,
    ...; a custom op by its custom code, e.g. ``FlexConv2D``), read with LiteRT's schema."""
    from ai_edge_litert import schema_py_generated as schema  # the [export] extra

    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    used = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = code.CustomCode()
            used.add(custom.decode() if op == schema.BuiltinOperator.CUSTOM and custom else builtin[op])
    return sorted(used)


class LiteRTModel:
    """A ``.tflite`` file in the LiteRT interpreter: pixels in, float logits out.

    Handles quantized inputs/outputs (quantizes pixels with the input's scale and zero
    point, dequantizes the outputs).
    """

    def __init__(self, path_or_bytes, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter  # the [export] extra

        kwargs = {"num_threads": num_threads or os.cpu_count() or 1}
        if isinstance(path_or_bytes, (bytes, bytearray)):
            self.content = bytes(path_or_bytes)
        else:
            with open(path_or_bytes, "rb") as f:
                self.content = f.read()
        with native_logs_quieted():  # LiteRT's "Created ... XNNPACK delegate" notice
            self.interpreter = Interpreter(model_content=self.content, **kwargs)
            self.interpreter.allocate_tensors()
        signatures = self.interpreter.get_signature_list()
        if "serving_default" not in signatures:
            raise RuntimeError(f"the TFLite file has no serving_default signature: {signatures}")
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.input = self.runner.get_input_details()["images"]
        self.outputs = self.runner.get_output_details()

    def op_names(self):
        return op_names(self.content)

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

    def latency(self, runs=50, example=None):
        """Median batch-1 time on ``example`` (one image; needed when the input's height or
        width is dynamic), else on random pixels of the input's shape."""
        if example is None:
            shape = [1, *[int(d) for d in self.input["shape"][1:]]]
            example = np.random.default_rng(0).uniform(0, 255, shape)
        x = self.quantize_input(np.asarray(example)[:1])
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
    info = {"ops": ops, "input_type": in_type, "output_type": out_type,
            **batch_timing(lambda x: model(x), eval_images, latency_runs)}
    if precision in GPU_PRECISIONS:
        info["gpu_delegate"] = gpu_compatibility(model.content)
    return parity, model.latency(latency_runs, eval_images[:1]), info


def tflite_path(out_dir, model_name, precision):
    return os.path.join(out_dir, f"{model_name}_{precision}.tflite")


def check_options(precisions, int8_io="int8", calibration_images=None, min_agreement=MIN_AGREEMENT,
                  max_accuracy_drop=MAX_ACCURACY_DROP, calibration_given=None):
    """The precisions, checked with the other TFLite options (ExportError on bad input)."""
    precisions = check_precisions(split_list(precisions))
    check_int8_io(int8_io)
    check_gate(min_agreement, max_accuracy_drop)
    if calibration_given is None:
        calibration_given = calibration_images is not None
    if any(p in ("int8", "qat") for p in precisions) and not calibration_given:
        raise ExportError("int8 TFLite export needs calibration images (representative data)")
    return precisions


def export_tflite(source, out_dir, precisions=("fp32", "fp16", "dynamic", "int8"), int8_io="int8",
                  calibration_images=None, eval_images=None, eval_labels=None, model_name=None,
                  overwrite=False, latency_runs=50, qat_options=None, min_agreement=MIN_AGREEMENT,
                  max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Write ``<out_dir>/<model_name>_<precision>.tflite`` for each precision, verify each
    in LiteRT, and return the report entries.

    ``calibration_images`` (pixels) are needed for ``int8`` and ``qat``; ``qat_options`` are
    keyword arguments for :func:`keras_resnet.export.qat.qat_tflite` (``train_arrays``,
    ``epochs``, ...). ``min_agreement`` and ``max_accuracy_drop`` set the quantized gate
    (fractions; see :mod:`keras_resnet.export`).
    """
    precisions = check_options(precisions, int8_io, calibration_images, min_agreement, max_accuracy_drop)
    paths = precision_paths(out_dir, model_name or source.name, precisions, ".tflite", overwrite)
    if eval_images is None:
        eval_images = source.sample_input(8)
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        if any(p != "qat" for p in precisions):
            say(progress, "[tflite] writing the conversion SavedModel")
            write_pixel_saved_model(source, saved)

        def write(precision, path):
            extra = None
            if precision == "qat":
                extra = {"qat": qat.qat_tflite(source, path, calibration_images=calibration_images,
                                               int8_io=int8_io, progress=progress, **(qat_options or {}))}
                with open(path, "rb") as f:
                    content = f.read()
            else:
                with native_logs_quieted():  # the converter's own lines ("fully_quantize: 0, ...")
                    content = convert_saved_model(saved, precision, calibration_images, int8_io)
            with open(path, "wb") as f:
                f.write(with_metadata(source, content, precision))
            return extra

        return write_and_verify("tflite", "LiteRT", source, paths, write, verify, eval_images,
                                eval_labels, overwrite, latency_runs, progress,
                                min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)


# ----------------------------------------------------------------------------------------
# Registry entry (keras_resnet.export.export_all)

DEFAULT_PRECISIONS = TFLITE_DEFAULT_PRECISIONS


def _check(options):
    epochs = options["qat_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ExportError(f"qat_epochs={epochs!r} is not supported; expected an integer >= 0")
    precisions = check_options(options["tflite_precisions"], options["int8_io"], calibration_given=True)
    return dict(options, tflite_precisions=[p for p in precisions if p != "qat" or epochs > 0])


def _export(source, out_dir, options, run):
    qat_options = dict(options["qat_options"] or {})
    qat_options.setdefault("epochs", options["qat_epochs"])
    qat_options.setdefault("seed", run["seed"])
    return export_tflite(
        source, out_dir, options["tflite_precisions"], int8_io=options["int8_io"],
        calibration_images=run["calibration_images"], eval_images=run["eval_images"],
        eval_labels=run["eval_labels"], model_name=run["model_name"], overwrite=run["overwrite"],
        latency_runs=run["latency_runs"], qat_options=qat_options, progress=run["progress"],
        **run["gate"])


FORMAT = ExportFormat(
    name="tflite", directory="tflite", title=TITLES["tflite"],
    options=dict(tflite_precisions=DEFAULT_PRECISIONS, int8_io="int8", qat_epochs=2, qat_options=None),
    check=_check,
    outputs=lambda out_dir, model_name, options: [
        tflite_path(out_dir, model_name, p) for p in options["tflite_precisions"]],
    needs_calibration=lambda options: any(p in ("int8", "qat") for p in options["tflite_precisions"]),
    export=_export,
)
