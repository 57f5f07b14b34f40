"""ONNX Runtime int8 quantization (imported on first use: needs onnxruntime, the [export] extra)."""

import os
import tempfile

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static, registry)
from onnxruntime.quantization.shape_inference import quant_pre_process


class CalibrationImages(CalibrationDataReader):
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


def quantize_int8(fp32_path, path, calibration_images, activation_type="uint8"):
    """QDQ quantization: per-channel int8 weights, ``activation_type`` activations, MinMax
    calibration on ``calibration_images``.

    The residual ``Add`` and the global average pool are quantized too, so ONNX Runtime's
    CPU provider fuses the whole network into integer kernels (QLinearConv, QLinearAdd).
    uint8 activations with int8 weights (U8S8) is what its x86 kernels run fastest; with
    int8 activations it leaves the convolutions that feed an ``Add`` in float.
    """
    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
        quantize_static(
            pre, path, CalibrationImages(calibration_images), quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=sorted(set(registry.QDQRegistry) | {"Add", "GlobalAveragePool"}),
        )
