"""SavedModel -> TFLite flatbuffer at each precision: the one converter call, shared by the
TFLite export (:mod:`.tflite`) and the quantization-aware side (:mod:`.qat_tfkeras`), below
both so that neither imports the other."""

import warnings

import numpy as np
import tensorflow as tf

from ._common import ExportError
from ._common import check_precisions as _check_precisions

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "qat")
INT8_IO = ("int8", "uint8", "float32")


def check_precisions(precisions):
    return _check_precisions("TFLite", precisions, PRECISIONS)


def check_int8_io(int8_io):
    if int8_io not in INT8_IO:
        raise ExportError(f"int8_io={int8_io!r} is not supported; accepted: {', '.join(INT8_IO)}")
    return int8_io


def convert_saved_model(saved_model_dir, precision, representative_images=None, int8_io="int8"):
    """TFLite flatbuffer bytes from a SavedModel's ``serving_default`` signature."""
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
