"""Export trained keras_resnet (or any single-input Keras classifier) models.

    from keras_resnet.export import export_all
    report = export_all("runs/digits", "exports")   # run dir or .keras file

Formats, one module each: :mod:`~keras_resnet.export.saved_model` (TF Serving),
:mod:`~keras_resnet.export.tflite` (TFLite/LiteRT, with post-training quantization and
quantization-aware training in :mod:`~keras_resnet.export.qat`, whose tf_keras side is
:mod:`~keras_resnet.export.qat_tfkeras`), :mod:`~keras_resnet.export.onnx_export` (ONNX,
with ONNX Runtime int8 in :mod:`~keras_resnet.export.onnx_int8`),
:mod:`~keras_resnet.export.openvino_export` (OpenVINO IR). Each plugs into
:func:`export_all` with one ``FORMAT`` entry of the registry (:mod:`.pipeline`'s
``REGISTRY``). Every export bakes the model's preprocessing in (clients send pixels in
0..255), is written under a temporary name and renamed when complete, and is run in its
real runtime against the Keras model before it is reported. :mod:`.report` writes the
JSON/Markdown report; :mod:`.cli` is the command line behind ``export/*.py``;
:mod:`.formats` holds the formats and their defaults as plain data; :mod:`.evidence` the
statistics the quantized gates use; :mod:`.serving_client` builds TF Serving REST bodies.
"""

from .._lazy import attach, table

# Each public name and its module, imported on first use (the export commands parse their
# arguments before TensorFlow is imported).
_NAMES = table(
    _common=("FLOAT_RTOL", "ExportError", "ExportFormat", "ParityError", "float_parity",
             "latency_ms", "quantized_parity"),
    formats=("MAX_ACCURACY_DROP", "MIN_AGREEMENT"),
    onnx_export=("export_onnx",),
    openvino_export=("OpenVINOModel", "export_openvino"),
    pipeline=("FORMATS", "REGISTRY", "export_all"),
    saved_model=("export_saved_model", "next_version"),
    source=("ExportSource", "as_float32", "load_source"),
    tflite=("LiteRTModel", "export_tflite"),
)
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "ExportError", "FLOAT_RTOL", "REGISTRY", "MAX_ACCURACY_DROP", "MIN_AGREEMENT", "ParityError", "ExportSource", "FORMATS", "LiteRTModel", "as_float32",
    "ExportFormat", "export_all", "export_onnx", "export_saved_model", "export_tflite", "float_parity",
    "latency_ms", "OpenVINOModel", "export_openvino",
    "load_source", "next_version", "quantized_parity",
]
