"""Extending a finished run: a rerun with a larger ``--epochs`` continues from the last
commit (the finished epochs kept as they were, none repeated); any other change of
settings is still refused, naming the setting."""

import csv
import json

import pytest

from keras_resnet.train import main

ARGS = ["--model", "resnet8", "--steps-per-epoch", "4", "--batch-size", "16", "--no-plot",
        "--no-tensorboard"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _train(args, capsys):
    """train.py's main in this process: ``(exit status, stdout, stderr)``."""
    code = main(args, prog="train.py")
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # ~25 s: three short runs
def test_a_larger_epochs_extends_a_finished_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = _train([*ARGS, "--epochs", "2", "--run-dir", str(run_dir)], capsys)
    assert code == 0, err[-3000:]
    original = _rows(run_dir)
    assert [row["epoch"] for row in original] == ["1", "2"]

    # Another setting beside the longer run: refused, naming it; nothing changes.
    code, out, err = _train([*ARGS, "--epochs", "3", "--weight-decay", "0.001", "--run-dir",
                             str(run_dir)], capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert "different settings (weight_decay: 0.0005 -> 0.001)" in last, last
    assert _rows(run_dir) == original

    code, out, err = _train([*ARGS, "--epochs", "3", "--run-dir", str(run_dir)], capsys)
    assert code == 0, err[-3000:]
    assert (f"extending {run_dir} from 2 to 3 epochs: the finished epochs are kept and "
            "training continues from the last commit; the cosine schedule is stretched to 3 "
            "epochs") in out
    assert "Epoch 3/3" in out and "Epoch 1/3" not in out and "Epoch 2/3" not in out
    rows = _rows(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[:2] == original  # byte for byte: the first two epochs are the original ones
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["epochs_finished"] == 3 and info["config"]["epochs"] == 3
    assert info["status"] == "finished"

    # Fewer epochs than the run holds: refused, naming epochs.
    code, out, err = _train([*ARGS, "--epochs", "2", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "epochs: 3 -> 2" in err.strip().splitlines()[-1]
