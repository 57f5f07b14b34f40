#!/usr/bin/env python3
"""Train a keras_resnet model: the repository's entry point for ``keras-resnet-train``
(``keras_resnet/train.py``; ``python3 train.py --help`` lists every flag)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from a clone, installed or not

from keras_resnet.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
