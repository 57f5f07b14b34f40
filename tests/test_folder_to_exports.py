"""A photo folder at 32x32, trained, exported to every format and evaluated with no flags
beyond the training command's: the run's settings (data directory, image size,
preprocessing) travel through run.json."""

import json
import os

from conftest import run_train

from keras_resnet.data import sample_photo_folder


def test_folder_run_at_32x32_exports_every_format_and_evaluates(tmp_path):
    data = tmp_path / "photos"
    sample_photo_folder(str(data), per_class=40, size=40)  # two classes of real-photo crops
    run_dir = tmp_path / "run"
    r = run_train(["--dataset", "folder", "--data-dir", str(data), "--model", "resnet20",
                   "--image-size", "32", "--epochs", "4", "--run-dir", str(run_dir), "--no-plot",
                   "--export", str(tmp_path / "out")], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # The imagenet recipe's batch of 256 does not fit 64 training images: adapted, and said so.
    assert "small training set (64 images): batch size 8" in r.stdout
    with open(run_dir / "run.json") as f:
        run = json.load(f)
    assert run["dataset_kwargs"] == {"data_dir": str(data), "image_size": 32}
    with open(tmp_path / "out" / "report.json") as f:
        report = json.load(f)
    assert report["passed"]
    assert {(a["format"], a["precision"]) for a in report["artifacts"]} >= {
        ("savedmodel", "fp32"), ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "int8")}
    for a in report["artifacts"]:
        assert a["path"] and os.path.exists(a["path"])
        if a["parity"] and "keras_accuracy" in a["parity"]:  # quantized: verified on labelled photos
            assert a["parity"]["keras_accuracy"] == report["artifacts"][0]["accuracy"]
    # Calibration and verification read the photos at the model's 32x32, from run.json.
    assert report["source"]["input_shape"] == [32, 32, 3]
    e = run_train(["--evaluate", str(run_dir)], tmp_path)
    assert e.returncode == 0, e.stderr[-3000:]
    line = e.stdout.strip().splitlines()[-1]
    assert "on folder test split (16 images)" in line, line
    assert f"accuracy {report['artifacts'][0]['accuracy']:.4f}" in line, line
