"""Export trained keras_resnet (or any single-input Keras classifier) models.

    from keras_resnet.export import export_all
    report = export_all("runs/digits", "exports")   # run dir or .keras file

Formats, one module each: :mod:`~keras_resnet.export.saved_model` (TF Serving),
:mod:`~keras_resnet.export.tflite` (TFLite/LiteRT, with post-training quantization and
quantization-aware training in :mod:`~keras_resnet.export.qat`, whose tf_keras side is
:mod:`~keras_resnet.export.qat_tfkeras`), :mod:`~keras_resnet.export.onnx_export` (ONNX,
with ONNX Runtime int8 in :mod:`~keras_resnet.export.onnx_int8`). Each plugs into
:func:`export_all` with one ``FORMAT`` entry of the registry (:mod:`.pipeline`'s
``REGISTRY``). Every export bakes the model's preprocessing in (clients send pixels in
0..255), is written under a temporary name and renamed when complete, and is run in its
real runtime against the Keras model before it is reported. :mod:`.report` writes the
JSON/Markdown report; :mod:`.cli` is the command line behind ``export/*.py``.
"""

from ._common import (FLOAT_RTOL, MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError,  # noqa: F401
                      ExportFormat, ParityError, float_parity, latency_ms, quantized_parity)
from .onnx_export import export_onnx  # noqa: F401
from .pipeline import FORMATS, REGISTRY, export_all  # noqa: F401
from .saved_model import export_saved_model, next_version  # noqa: F401
from .source import ExportSource, as_float32, load_source  # noqa: F401
from .tflite import LiteRTModel, export_tflite  # noqa: F401

__all__ = [
    "ExportError", "FLOAT_RTOL", "REGISTRY", "MAX_ACCURACY_DROP", "MIN_AGREEMENT", "ParityError", "ExportSource", "FORMATS", "LiteRTModel", "as_float32",
    "ExportFormat", "export_all", "export_onnx", "export_saved_model", "export_tflite", "float_parity",
    "latency_ms",
    "load_source", "next_version", "quantized_parity",
]
