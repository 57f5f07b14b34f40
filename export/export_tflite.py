#!/usr/bin/env python
"""Export a trained model to TFLite/LiteRT (fp32, fp16, dynamic-range int8, full int8, QAT int8), verified.

Usage: python export/export_tflite.py RUN_DIR_OR_MODEL.keras --out exports  (see --help)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_resnet.export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(formats=["tflite"], prog=os.path.basename(__file__)))
