"""The export formats and their option defaults, as plain data: what the export command's
argument parser needs, without TensorFlow. Each format module (``saved_model``, ``tflite``,
``onnx_export``, ``openvino_export``) takes its defaults from here; :mod:`.pipeline` checks that its format
registry lists the same formats in the same order."""

# name -> title, in the report's order
TITLES = {"savedmodel": "SavedModel (TF Serving)", "tflite": "TFLite/LiteRT", "onnx": "ONNX",
          "openvino": "OpenVINO"}
FORMATS = tuple(TITLES)

TFLITE_DEFAULT_PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "qat")
ONNX_DEFAULT_PRECISIONS = ("fp32", "int8")
OPENVINO_DEFAULT_PRECISIONS = ("fp32", "fp16")
TOP_K = 5  # SavedModel: classes and scores of the top k
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18

# Quantized exports, checked against the float Keras model on held-out data. Published int8
# ResNet-50s on ImageNet's 1000 classes lose 0.2-0.5 pp of top-1 accuracy (ONNX Model Zoo
# 74.97 -> 74.77%; torchvision's fbgemm model 76.13 -> 75.92%) while their top-1 prediction
# differs from the float model's on a few percent of images (near-ties that int8 rounding
# tips either way). The defaults pass such a model with room to spare and still fail a
# broken quantization (wrong calibration ranges or scales), whose agreement collapses.
MIN_AGREEMENT = 0.95          # top-1 agreement with the Keras model
MAX_ACCURACY_DROP = 0.01      # 1 percentage point on held-out data (with labels)
