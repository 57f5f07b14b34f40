"""The README's walkthroughs, run as a user runs them: each ```bash block that follows a
``<!-- walkthrough: NAME -->`` line is run by bash as written, in a fresh folder laid out as
a clone (``train.py`` and ``export/`` beside the user's files), with the test environment's
``python3`` and ``keras-resnet-*`` commands first on the PATH. Only the data and the number
of epochs are made smaller (``BUDGET``); each substitution must find its text, so a README
edit that drops it fails here instead of silently running the full budget.

This file also holds the journey "photo folder -> train -> export every format -> evaluate"
(formerly test_folder_to_exports.py): its checks run on the photos walkthrough's files."""

import csv
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"^<!-- walkthrough: ([\w-]+) -->\n```bash\n(.*?)\n```", re.S | re.M)
DOCS = [os.path.join(ROOT, "README.md")] + sorted(
    os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))

# The budget of each walkthrough in the suite: (text in the README, what runs instead).
BUDGET = {
    "photos": [("--epochs 10", "--epochs 4")],
    "tfrecords": [("--epochs 10", "--epochs 3")],
    "export": [("--epochs 30", "--epochs 4")],
    "convert": [],
    "finetune": [("--image-size 64", "--image-size 32"), ("--epochs 5", "--epochs 2")],
    "grow": [("--model resnet20 --epochs 30", "--model resnet20 --epochs 2 --steps-per-epoch 6"),
             ("--lr 0.01 --epochs 30", "--lr 0.01 --epochs 3 --steps-per-epoch 4")],
}


def walkthroughs():
    found = {}
    for path in DOCS:
        with open(path, encoding="utf-8") as f:
            for name, script in BLOCK.findall(f.read()):
                assert name not in found, f"walkthrough {name!r} appears twice"
                found[name] = script
    return found


def test_every_walkthrough_has_a_test():
    assert set(walkthroughs()) == set(BUDGET)


def run_walkthrough(name, cwd):
    script = walkthroughs()[name]
    for old, new in BUDGET[name]:
        assert old in script, f"walkthrough {name!r} no longer contains {old!r}"
        script = script.replace(old, new)
    for entry in ("train.py", "export"):
        if not os.path.lexists(os.path.join(cwd, entry)):  # a second walkthrough in one folder
            os.symlink(os.path.join(ROOT, entry), os.path.join(cwd, entry))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               MPLBACKEND="Agg", PYTHONPATH=ROOT,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (f"walkthrough {name!r} failed:\n{script}\n--- stdout\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc.stdout


def epochs_in(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_photos(tmp_path):
    out = run_walkthrough("photos", tmp_path)
    run_dir = tmp_path / "runs" / "folder_resnet20"
    # The imagenet recipe's batch of 256 does not fit the 96 training images: adapted, said so.
    assert "small training set (96 images): batch size 8" in out
    assert epochs_in(run_dir) == [1, 2, 3, 4]
    with open(run_dir / "run.json") as f:
        run = json.load(f)
    assert run["dataset_kwargs"]["image_size"] == 32
    assert os.path.samefile(os.path.join(tmp_path, run["dataset_kwargs"]["data_dir"]),
                            tmp_path / "photos")
    with open(tmp_path / "exports" / "photos" / "report.json") as f:
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
    lines = out.strip().splitlines()
    evaluated = [l for l in lines if "on folder test split" in l]
    assert evaluated and "on folder test split (24 images)" in evaluated[-1], out[-2000:]
    assert f"accuracy {report['artifacts'][0]['accuracy']:.4f}" in evaluated[-1]
    # The last line is the prediction for one photo: two probabilities that sum to 1.
    probs = json.loads(lines[-1].replace("'", '"').replace("np.float32(", "").replace(")", ""))
    assert set(probs) == {"china", "flower"}
    assert abs(sum(probs.values()) - 1) < 2e-3  # rounded to 3 decimals each


def test_tfrecords(tmp_path):
    """folder -> keras-resnet-make-tfrecords -> several epochs -> ONNX."""
    run_walkthrough("tfrecords", tmp_path)
    assert "classes.txt" in os.listdir(tmp_path / "records")
    assert epochs_in(tmp_path / "runs" / "tfrecord_resnet20") == [1, 2, 3]
    with open(tmp_path / "exports" / "records" / "report_onnx.json") as f:
        report = json.load(f)
    assert report["passed"] and {a["format"] for a in report["artifacts"]} >= {"onnx"}


def test_export(tmp_path):
    run_walkthrough("export", tmp_path)
    for out, formats in (("digits", {"savedmodel", "onnx"}), ("digits_tflite", {"tflite"})):
        # a subset of the formats writes report_<formats>.json
        reports = glob.glob(str(tmp_path / "exports" / out / "report*.json"))
        assert len(reports) == 1, reports
        with open(reports[0]) as f:
            report = json.load(f)
        assert report["passed"]
        assert {a["format"] for a in report["artifacts"]} - {"keras"} == formats
        for a in report["artifacts"]:
            assert a["path"] and os.path.exists(a["path"])


def write_resnet18_pth(path, classes):
    """A torchvision-named ResNet-18 state_dict with random weights (what a user downloads)."""
    torch = pytest.importorskip("torch")
    from test_weights_cli import torchvision_state

    state = torchvision_state(np.random.default_rng(0), classes=classes)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    return state


def test_convert(tmp_path):
    state = write_resnet18_pth(tmp_path / "resnet18.pth", classes=7)
    out = run_walkthrough("convert", tmp_path)
    assert "(None, 7)" in out.strip().splitlines()[-1]
    import keras

    model = keras.saving.load_model(str(tmp_path / "resnet18.keras"))
    kernel = model.get_layer(index=-1).get_weights()[0]  # Dense: (512, classes)
    np.testing.assert_array_equal(kernel, state["fc.weight"].T)


def test_grow(tmp_path):
    run_walkthrough("grow", tmp_path)
    with open(tmp_path / "runs" / "r56_grown" / "run.json") as f:
        run = json.load(f)
    assert run["init_from"]["depth"] == 20 and run["init_from"]["grown_to_depth"] == 56, run["init_from"]
    assert epochs_in(tmp_path / "runs" / "r56_grown") == [1, 2, 3]


def test_finetune(tmp_path):
    """The converted checkpoint of the convert walkthrough, fine-tuned on the photo folder."""
    write_resnet18_pth(tmp_path / "resnet18.pth", classes=7)
    run_walkthrough("convert", tmp_path)
    out = run_walkthrough("finetune", tmp_path)
    assert "new 2-class head" in out, out[-2000:]
    run_dir = tmp_path / "runs" / "folder_resnet18"
    assert epochs_in(run_dir) == [1, 2]
    with open(run_dir / "run.json") as f:
        run = json.load(f)
    assert run["num_classes"] == 2 and run["init_from"]
