#!/usr/bin/env python
"""Export a trained model to SavedModel, TFLite, ONNX and OpenVINO at once, verify each, print the report.

Usage: python export/export_all.py RUN_DIR_OR_MODEL.keras --out exports  (see --help)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_resnet.export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog=os.path.basename(__file__)))  # every format
