"""Fault tolerance: SIGKILL in the middle of an epoch, then the same command resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import train_env

pytestmark = pytest.mark.slow  # end to end: trains in processes of its own

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def test_sigkill_mid_epoch_then_rerun_resumes_and_finishes(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--epochs", "5", "--batch-size", "16",
           "--checkpoint-steps", "8", "--steps-per-execution", "4", "--run-dir", str(run_dir),
           "--no-plot"]
    p = subprocess.Popen(cmd, env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, bufsize=1)
    deadline = time.time() + 400
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if line.startswith("Epoch 3/5"):
                time.sleep(1.0)  # into epoch 3 (84 steps of 16 images, checkpoints every 8)
                break
            assert time.time() < deadline, "training did not reach epoch 3 in time"
        assert p.poll() is None, "".join(seen)[-3000:]
        p.send_signal(signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
    assert p.returncode == -signal.SIGKILL

    from keras_resnet.training import read_checkpoint

    meta = read_checkpoint(run_dir)
    assert meta["epoch"] >= 2  # epochs 1 and 2 were committed before the kill
    killed_at = (meta["epoch"], meta["step"])
    csv_before = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(csv_before) - 1 == meta["epoch"]

    r = subprocess.run(cmd, env=train_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"resuming {run_dir} at epoch {killed_at[0] + 1}, step {killed_at[1]}" in r.stdout

    csv_after = (run_dir / "metrics.csv").read_text().strip().splitlines()
    # Finished epochs are kept as they were, none repeated or lost.
    assert csv_after[: len(csv_before)] == csv_before
    assert [int(row.split(",")[0]) for row in csv_after[1:]] == [1, 2, 3, 4, 5]
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["status"] == "finished" and info["epochs_finished"] == 5
    assert float(csv_after[-1].split(",")[4]) == info["test_accuracy"]
    meta = read_checkpoint(run_dir)
    assert (meta["epoch"], meta["step"]) == (5, 0) and len(meta["history"]) == 5

    # The saved model is the one the metrics describe.
    import keras

    import keras_resnet  # noqa: F401
    from keras_resnet.data import apply_preprocessing, digits_arrays

    x, y = digits_arrays("test")
    model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    probs = model.predict(apply_preprocessing(x, info["preprocessing"]), verbose=0)
    assert abs(float(np.mean(probs.argmax(1) == y)) - info["test_accuracy"]) < 1e-6
    assert info["test_accuracy"] > 0.9
    assert not [n for n in os.listdir(run_dir) if n.startswith(".") and n != ".keras_resnet_run"]  # no temporary files
    prefix = os.path.basename(meta["path"])
    assert sorted(os.listdir(run_dir / "checkpoint")) == [
        "checkpoint", f"{prefix}.data-00000-of-00001", f"{prefix}.index"]


def _killed_at_rename(cmd, n, workdir):
    """Runs ``cmd`` under strace, which SIGKILLs it as it makes its ``n``-th rename(2).
    Python's own byte-code and matplotlib's font-cache writes are off (they rename too)."""
    strace = ["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=rename",
              "-e", f"inject=rename:signal=KILL:when={n}"]
    env = dict(train_env(), PYTHONDONTWRITEBYTECODE="1",
               MPLCONFIGDIR=os.path.join(workdir, ".mplconfig"))
    return subprocess.run(strace + cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_kills_at_a_checkpoint_commit_leave_a_resumable_consistent_run(tmp_path):
    """SIGKILL at the rename that would commit epoch 2's checkpoint, then (in the rerun) at
    the rename just after it committed, before any file derived from it was written: the
    third run finishes, each epoch once in metrics.csv, last.keras the model run.json
    describes, nothing left of the interrupted writes."""
    from keras_resnet.training import read_checkpoint

    run_dir = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--epochs", "2", "--steps-per-epoch",
           "3", "--run-dir", str(run_dir), "--no-plot", "--no-tensorboard"]
    # Renames per committed checkpoint: TensorFlow's 3 file moves, then the state file
    # twice (the first commits it); then last.keras, best.keras, metrics.csv, run.json.
    # strace's count is per thread, and a run may rename once more or less than another
    # (threads' timing): where a kill misses its rename, the pair of kills is aimed again
    # from an empty run directory (as tests/faults.py realigns its kills).
    landed = False
    for attempt in range(3):
        shutil.rmtree(run_dir, ignore_errors=True)
        first = _killed_at_rename(cmd, 5 + 4 + 4, tmp_path)  # epoch 2's commit: not made
        if "ptrace" in first.stderr or "Operation not permitted" in first.stderr:
            pytest.skip("ptrace is not permitted here")
        assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
        committed = read_checkpoint(run_dir)
        if not os.path.exists(run_dir / "checkpoint" / "ckpt-6.data-00000-of-00001") or \
                committed is None or (committed["epoch"], committed["step"]) != (1, 0):
            continue  # the kill missed epoch 2's commit: its files unwritten, or committed
        # The rerun resumes from epoch 1, rewrites its 4 files, commits epoch 2 and is
        # killed right after: last.keras still holds epoch 1.
        second = _killed_at_rename(cmd, 4 + 5, tmp_path)
        assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
        if read_checkpoint(run_dir)["epoch"] == 2:
            landed = True
            break
    assert landed, "in 3 tries, no pair of kills landed on epoch 2's commit and just after it"
    assert "removed checkpoint/ckpt-6.data-00000-of-00001" in second.stdout
    assert read_checkpoint(run_dir)["epoch"] == 2
    assert json.loads((run_dir / "run.json").read_text())["epochs_finished"] == 1

    r = subprocess.run(cmd, env=train_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{run_dir} already finished its 2 epochs" in r.stdout
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["saved_models"]["last.keras"] == {"epoch": 2}
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [1, 2]
    assert float(rows[-1].split(",")[4]) == info["test_accuracy"]

    import keras

    import keras_resnet  # noqa: F401
    from keras_resnet.data import apply_preprocessing, digits_arrays

    x, y = digits_arrays("test")
    model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    probs = model.predict(apply_preprocessing(x, info["preprocessing"]), verbose=0)
    assert abs(float(np.mean(probs.argmax(1) == y)) - info["test_accuracy"]) < 1e-6
    assert not [n for n in os.listdir(run_dir) if n.startswith(".") and n != ".keras_resnet_run"]
    assert sorted(os.listdir(run_dir / "checkpoint")) == [
        "checkpoint", "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
