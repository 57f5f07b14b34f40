"""Bad flags, missing data, corrupt images and a diverging loss: clear errors, exit status
2, nothing half-written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import train_env, run_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def _train_with_epoch_hook(hook, args):
    """``python -c`` arguments that run ``train.py ARGS`` with ``hook`` (source defining
    ``on_epoch_end(epoch, model)``, called after each epoch is committed) given to
    ``training.train``."""
    return [sys.executable, "-c", f"""
import functools, os, sys, time
from keras_resnet import training
{hook}
training.train = functools.partial(training.train, on_epoch_end=on_epoch_end)
sys.argv = ["train.py"] + {list(args)!r}
sys.path.insert(0, {ROOT!r})
import runpy
runpy.run_path({os.path.join(ROOT, "train.py")!r}, run_name="__main__")
"""]


def test_bad_flags_and_missing_data_fail_clearly_and_write_nothing(tmp_path, monkeypatch, capsys):
    """Each case through the command's own ``main`` (the console script's entry point), in
    this process; the last one also as a real process, for its exit status."""
    from keras_resnet.train import main

    cases = [
        (["--strategy", "bogus"], "invalid choice: 'bogus'"),
        (["--batch-size", "0"], "argument --batch-size: 0 is not accepted; expected an integer in [1, 65536]"),
        (["--model", "resnet19"], "model='resnet19' is not supported"),
        (["--dataset", "cifar10"], "--download"),
        (["--dataset", "folder", "--data-dir", str(tmp_path / "nowhere")], "not a directory"),
        (["--lr", "-1"], "argument --lr: -1 is not accepted; expected a number in (0, 100]"),
        (["--evaluate", str(tmp_path / "missing.keras")], "does not exist"),
        (["--batch-size", "5000"], "larger than the training set"),
        (["--val-split", "1.5"], "argument --val-split: 1.5 is not accepted; expected a number in [0, 1)"),
        (["--epo", "3"], "unrecognized arguments: --epo 3"),  # a prefix is not taken for --epochs
    ]
    monkeypatch.chdir(tmp_path)
    for args, message in cases:
        try:
            rc = main(args, prog="train.py")
        except SystemExit as e:  # argparse's own errors
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2, (args, err[-2000:])
        assert err.startswith("usage: train.py") or err.startswith("train.py: error:"), (args, err)
        assert message in err.strip().splitlines()[-1], (args, err)
    r = run_train(cases[-1][0], tmp_path)
    assert r.returncode == 2 and cases[-1][1] in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "runs")


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_message(tmp_path):
    run_dir = tmp_path / "nan"
    # The largest learning rate the command accepts: SGD with momentum at 100 diverges at once.
    r = run_train(["--lr", "100", "--epochs", "2", "--run-dir", str(run_dir)], tmp_path)
    assert r.returncode == 2
    # Diverged at once: named as a non-finite loss, or as the softmax saturating first.
    assert any(s in r.stderr for s in ("the loss became nan", "the loss became inf",
                                       "the softmax saturated")), r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "No checkpoint had been written yet; try a lower --lr" in r.stderr
    assert not any(os.path.exists(run_dir / f) for f in
                   ("checkpoint", "last.keras", "best.keras", "metrics.csv", "run.json"))


@pytest.mark.slow
@pytest.mark.parametrize("poison,message", [
    ("classifier", "the loss became nan in epoch 3"),
    # NaN BN moving statistics: a training step normalises with the batch's own statistics,
    # so the training loss stays finite on any CPU, but evaluation uses the moving ones and
    # the test loss turns NaN
    ("stem", "the test loss became nan after epoch 3"),
    # one class's bias at 1e6: finite losses, but the softmax saturates on that class (the
    # test loss sits at its clip): stopped as divergence too
    ("saturate", "the softmax saturated after epoch 3"),
    # the stem's NaN statistics again, now with mid-epoch checkpoints: the first one in epoch 3
    # would commit them (the training loss stays finite), so the state is checked first
    ("stem, --checkpoint-steps 4", "the weights or BatchNormalization statistics became "
                                   "non-finite in epoch 3 (by step 4)"),
])
def test_non_finite_mid_run_keeps_the_last_good_checkpoint(tmp_path, poison, message):
    """A run that goes bad after epoch 2 (a weight poisoned with NaN just after epoch 2 is
    committed) stops with the message, leaves epoch 2's files intact, and the same command
    without the poison resumes from epoch 2 (run for two of the poisons)."""
    run_dir = tmp_path / "run"
    args = ["--epochs", "3", "--batch-size", "64", "--run-dir", str(run_dir), "--no-plot"]
    # The resume below is the same code for every poison: run it where the checkpoint it
    # resumes from is the point (a NaN weight; NaN statistics after mid-epoch checkpoints).
    resume = poison == "classifier" or "--checkpoint-steps" in poison
    if "--checkpoint-steps" in poison:
        poison, args = "stem", args + ["--checkpoint-steps", "4"]
    poisoned = subprocess.run(_train_with_epoch_hook(f"""
def on_epoch_end(epoch, model):  # after epoch 2 is committed and its files written
    if epoch == 2:
        layer = model.get_layer({"stem_bn" if poison == "stem" else "predictions"!r})
        if {poison!r} == "saturate":
            layer.bias.assign(layer.bias + ([1e6] + [0.0] * (layer.bias.shape[0] - 1)))
        else:
            w = layer.moving_mean if {poison!r} == "stem" else layer.kernel
            w.assign(w * float("nan"))
""", args), cwd=tmp_path, env=train_env(), capture_output=True, text=True, timeout=600)
    assert poisoned.returncode == 2, poisoned.stderr[-3000:]
    err = poisoned.stderr.strip().splitlines()[-1]
    assert message in err and "(2 finished epochs)" in err and "rerun with a lower --lr" in err, err
    from keras_resnet.training import read_checkpoint

    meta = read_checkpoint(run_dir)
    reader = tf.train.load_checkpoint(meta["path"])
    dtypes = reader.get_variable_to_dtype_map()
    weights = [reader.get_tensor(k) for k, d in dtypes.items() if d.is_floating]
    # every weight (97 in ResNet-20) and the SGD momentum of each trainable one (59)
    assert (meta["epoch"], meta["step"]) == (2, 0) and len(weights) == 97 + 59
    assert all(np.isfinite(w).all() for w in weights)
    assert [int(r.split(",")[0]) for r in (run_dir / "metrics.csv").read_text().split()[1:]] == [1, 2]
    with open(run_dir / "run.json") as f:
        assert json.load(f)["epochs_finished"] == 2

    if not resume:
        return
    r = run_train([*args, "--lr", "0.05"], tmp_path)  # as the message advises
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {run_dir} at epoch 3, step 0" in r.stdout
    assert "resuming with --lr 0.05 (the run so far used 0.1)" in r.stdout
    assert [int(r.split(",")[0]) for r in (run_dir / "metrics.csv").read_text().split()[1:]] == [1, 2, 3]
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["status"] == "finished" and info["test_accuracy"] > 0.5


def _png(path, array):
    tf.io.write_file(str(path), tf.io.encode_png(tf.constant(array, tf.uint8)))


@pytest.mark.slow
def test_image_folder_with_a_corrupt_file_fails_or_skips(tmp_path):
    data = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(10):
            _png(data / c / f"{i}.png", rng.integers(0, 256, (16, 16, 3)))
    (data / "b" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["--dataset", "folder", "--data-dir", str(data), "--image-size", "16", "--model", "resnet20", "--epochs", "1",
            "--batch-size", "4", "--run-dir", str(tmp_path / "run"), "--no-plot"]
    r = run_train(args, tmp_path)
    assert r.returncode == 2 and "bad.jpg" in r.stderr.strip().splitlines()[-1]
    # Met in the first epoch (listing does not decode): nothing was committed.
    assert not os.path.exists(tmp_path / "run" / "checkpoint")
    r = run_train(args + ["--on-corrupt", "skip"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipping unreadable image {data / 'b' / 'bad.jpg'}" in r.stdout
    assert "skipped 1 unreadable image(s)" in r.stdout
    with open(tmp_path / "run" / "run.json") as f:
        info = json.load(f)
    assert info["class_names"] == ["a", "b"] and info["input_shape"] == [16, 16, 3]


@pytest.mark.slow
def test_a_second_run_on_the_same_run_directory_is_refused_and_stale_temporaries_go(tmp_path):
    run_dir = tmp_path / "run"
    flags = ["--epochs", "3", "--run-dir", str(run_dir), "--no-plot"]
    args = [sys.executable, os.path.join(ROOT, "train.py"), *flags]
    go = tmp_path / "go"
    # The first run waits after its first epoch until the second has been refused, so the
    # two overlap however fast the machine is.
    first = subprocess.Popen(_train_with_epoch_hook(f"""
def on_epoch_end(epoch, model):
    if epoch == 1:
        print("holding the run directory", flush=True)
        deadline = time.time() + 600
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.05)
""", flags), cwd=tmp_path, env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for line in first.stdout:
            if line.startswith("holding the run directory"):
                break
        second = subprocess.run(args, cwd=tmp_path, env=train_env(), capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 2
        err = second.stderr.strip().splitlines()[-1]
        assert f"{run_dir} is in use by another training run" in err, err
    finally:
        go.write_text("")
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    # A write killed half-way leaves a temporary name behind; the next run removes it.
    (run_dir / ".checkpoint.npz.tmp-k1ll3d").write_bytes(b"partial")
    again = subprocess.run(args, cwd=tmp_path, env=train_env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "removed .checkpoint.npz.tmp-k1ll3d, left by an interrupted write" in again.stdout
    assert not [n for n in os.listdir(run_dir) if n.startswith(".") and n != ".keras_resnet_run"]


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_named_with_the_way_out(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--epochs", "1", "--run-dir", str(run_dir), "--no-plot"]
    assert run_train(args, tmp_path).returncode == 0
    from keras_resnet.training import read_checkpoint

    prefix = read_checkpoint(run_dir)["path"]
    data = f"{prefix}.data-00000-of-00001"
    with open(data, "r+b") as f:  # a truncated file
        f.truncate(os.path.getsize(data) // 2)
    r = run_train(args, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert f"the checkpoint file {data} is unreadable" in err and "--overwrite" in err, err
    # A damaged index of checkpoints: named too.
    (run_dir / "checkpoint" / "checkpoint").write_text("model_checkpoint_path: \"ckpt-")
    r = run_train(args, tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()[-1]
    assert f"the checkpoint file {run_dir / 'checkpoint' / 'checkpoint'} is unreadable" in err, err


@pytest.mark.slow
def test_a_run_directory_of_the_earlier_checkpoint_format_is_refused_not_restarted(tmp_path):
    """An earlier keras_resnet kept training state in checkpoint.npz; this one cannot resume
    it, so a rerun says so instead of silently training that run again from epoch 1."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"PK\x05\x06" + bytes(18))
    (run_dir / "last.keras").write_bytes(b"an earlier run's model")
    r = run_train(["--epochs", "1", "--run-dir", str(run_dir)], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(
        "cannot resume; pass --overwrite to start the run again, or use another --run-dir"), r.stderr
    assert (run_dir / "last.keras").read_bytes() == b"an earlier run's model"
