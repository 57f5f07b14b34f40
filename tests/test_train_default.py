"""The README's main job: `python3 train.py` with no arguments (CIFAR ResNet-20 on digits)."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import train_env
import pytest

pytestmark = pytest.mark.slow  # end to end: trains in processes of its own

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def test_default_command_reaches_98_5_percent_on_digits(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "train.py")]
    r = subprocess.run(cmd, cwd=tmp_path, env=train_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "digits_resnet20"
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == f"run directory: {run_dir}"
    assert lines[-2].startswith("test accuracy ")

    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["dataset"] == "digits" and info["input_shape"] == [8, 8, 1]
    assert info["num_classes"] == 10 and info["class_names"] == [str(i) for i in range(10)]
    assert info["outputs"] == "probabilities" and info["status"] == "finished"

    # Independent evaluation: scikit-learn's digits, its stratified split, standardised with
    # the training split's statistics, through the saved file.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images[..., None] * (255.0 / 16.0)
    x_train, x_test, _, y_test = train_test_split(
        images, digits.target, test_size=0.25, stratify=digits.target, random_state=0)
    mean, std = x_train.mean(), x_train.std()
    # The saved models hold that standardisation and take pixels 0..255 (run.json says so).
    assert info["model_input"] == "pixels"
    np.testing.assert_allclose(info["model_preprocessing"]["scale"], [1 / std], rtol=1e-4)
    np.testing.assert_allclose(info["model_preprocessing"]["offset"], [-mean / std], rtol=1e-4)
    assert info["preprocessing"] == {"scale": [1.0], "offset": [0.0]}

    import keras

    import keras_resnet  # noqa: F401  (registers ResNet for loading)

    model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    probs = model.predict(x_test.astype("float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == y_test))
    assert accuracy >= 0.985, accuracy
    assert abs(accuracy - info["test_accuracy"]) < 1e-6
    assert f"test accuracy {accuracy:.4f}" in lines[-2]

    best = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    best_acc = float(np.mean(best.predict(x_test.astype("float32"),
                                          verbose=0).argmax(axis=1) == y_test))
    assert abs(best_acc - info["best"]["test_accuracy"]) < 1e-6
    # No validation split: no split chose best.keras, which is the last model; the printed
    # accuracy is scored on the test split, which chose nothing.
    assert info["chosen_on"] == "last epoch" and info["scored_on"] == "test"
    assert best_acc == accuracy and info["best"]["epoch"] == 30
    assert "chosen on nothing" in lines[-2]

    with open(run_dir / "metrics.csv") as f:
        rows = f.read().strip().splitlines()
    assert rows[0].startswith("epoch,loss,accuracy,test_loss,test_accuracy")
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 31))
    assert abs(float(rows[-1].split(",")[4]) - accuracy) < 1e-9
    with open(run_dir / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    import tensorflow as tf

    tags = set()
    for name in os.listdir(run_dir / "tensorboard"):
        for event in tf.compat.v1.train.summary_iterator(str(run_dir / "tensorboard" / name)):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss", "test_accuracy", "lr"} <= tags
    assert not [n for n in os.listdir(run_dir) if n.startswith(".") and n != ".keras_resnet_run"]  # no temporary files

    # The same command again: the run is finished, nothing is retrained or rewritten.
    before = (run_dir / "metrics.csv").read_bytes()
    r2 = subprocess.run(cmd, cwd=tmp_path, env=train_env(), capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "already finished its 30 epochs" in r2.stdout
    assert (run_dir / "metrics.csv").read_bytes() == before
    assert f"test accuracy {accuracy:.4f}" in r2.stdout
