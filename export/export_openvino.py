#!/usr/bin/env python
"""Export a trained model to OpenVINO IR (fp32 and fp16 weights), verified.

Usage: python export/export_openvino.py RUN_DIR_OR_MODEL.keras --out exports  (see --help)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_resnet.export.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(formats=["openvino"], prog=os.path.basename(__file__)))
