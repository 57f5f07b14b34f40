#!/usr/bin/env python
"""Export a trained model to ONNX (fp32 and ONNX Runtime int8 QDQ), verified.

Usage: python export/export_onnx.py RUN_DIR_OR_MODEL.keras --out exports  (see --help)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_resnet.export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(formats=["onnx"], prog=os.path.basename(__file__)))
