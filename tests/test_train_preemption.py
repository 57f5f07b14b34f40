"""Save on notice and exact resume: real SIGTERM / SIGINT delivered to a real ``train.py``
process, which saves the exact step and exits 143 (130); the rerun resumes at that step and,
with ``--deterministic``, ends with the uninterrupted run's state bit for bit.

A signal is timed with the loop's test hook (``KERAS_RESNET_TEST_SIGNAL_AT``: the process
sends it to itself at a given step, at the start of evaluation or between an epoch's commit
and its files), or sent from here while the process trains (the image folder)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import train_env
from shared_fixture import shared_once

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
GRACE_S = 30  # a usual grace period between SIGTERM and SIGKILL (Kubernetes' default)
HOOK = "KERAS_RESNET_TEST_SIGNAL_AT"

DIGITS = ["--model", "resnet8", "--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "32",
          "--steps-per-execution", "4", "--deterministic", "--no-plot", "--no-tensorboard"]
STEPS = 6


def _default_sigint():
    # A background job inherits SIGINT ignored, and a command keeps it so (as it should):
    # the process under test gets the default disposition, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(args, run_dir, cwd, hook=None, timeout=600):
    env = train_env(**({HOOK: hook} if hook else {}))
    return subprocess.run([sys.executable, TRAIN, *args, "--run-dir", str(run_dir)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_default_sigint)


def _state(run_dir):
    """Every number of the committed checkpoint (weights, BN statistics, optimizer slots and
    step), by name; TensorFlow's own save counter left out."""
    import tensorflow as tf

    from keras_resnet.training import read_checkpoint

    reader = tf.train.load_checkpoint(read_checkpoint(run_dir)["path"])
    return {k: reader.get_tensor(k) for k, dtype in reader.get_variable_to_dtype_map().items()
            if dtype != tf.string and not k.startswith("save_counter")}


def _metrics(run_dir):
    """metrics.csv without its timings."""
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    keep = [i for i, k in enumerate(header) if k not in ("seconds", "images_per_second")]
    return [[row.split(",")[i] for i in keep] for row in rows]


def _assert_same_state(run_dir, reference):
    got, want = _state(run_dir), _state(reference)
    assert sorted(got) == sorted(want)
    different = [k for k in want if not np.array_equal(got[k], want[k])]
    assert not different, f"{len(different)} of {len(want)} variables differ: {different[:3]}"
    assert _metrics(run_dir) == _metrics(reference)


def _reference_run(root):
    r = _train(DIGITS, root / "run", root)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="session")
def digits_reference(tmp_path_factory):
    """One uninterrupted run, shared by every point (built once across the xdist workers)."""
    return shared_once(tmp_path_factory, "preemption_digits_reference", _reference_run) / "run"


def _stopped_and_resumed(tmp_path, reference, args, hook, epoch, step, finished, run_json=None):
    """Runs ``args`` with the signal ``hook``; checks the save (exit status, the one line,
    the checkpoint, run.json) and that the rerun resumes there and equals ``reference``."""
    from keras_resnet.training import read_checkpoint

    run_dir = tmp_path / "run"
    r = _train(args, run_dir, tmp_path, hook)
    signum = signal.SIGINT if hook.startswith("INT") else signal.SIGTERM
    assert r.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    prefix = read_checkpoint(run_dir)["path"]
    line = r.stderr.strip().splitlines()[-1]
    assert line == (f"train.py: {signum.name}: saved epoch {epoch}, step {step} of {STEPS} "
                    f"({finished} epochs finished) in {prefix}; rerun the same command to "
                    f"resume (exit status {r.returncode})"), line
    meta = read_checkpoint(run_dir)
    assert (meta["epoch"], meta["step"]) == (epoch - 1, step) and len(meta["history"]) == finished
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == {signal.SIGTERM: "preempted", signal.SIGINT: "interrupted"}[signum]
    assert info["epochs_finished"] == finished
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 1 + finished

    again = _train(args, run_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[0] == (
        f"resuming {run_dir} at epoch {epoch}, step {step} of {STEPS} ({finished} epochs "
        "finished)"), again.stdout[:500]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    _assert_same_state(run_dir, reference)


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_sigterm_mid_epoch_saves_the_step_and_the_rerun_ends_bit_identical(tmp_path,
                                                                          digits_reference):
    _stopped_and_resumed(tmp_path, digits_reference, DIGITS, "2:3", epoch=2, step=3, finished=1)


@pytest.mark.slow
@pytest.mark.parametrize("hook,epoch,step,finished", [
    ("1:1", 1, 1, 0),  # the first step of the run
    ("1:6", 1, 6, 0),  # the last step of an epoch: the rerun evaluates it
    ("1:evaluate", 1, 6, 0),  # during the evaluation: stopped after its first batch
    ("1:writes", 2, 0, 1),  # between the epoch's commit and its files: they are written first
    ("INT@2:5", 2, 5, 1),  # Ctrl-C: the same save, status 130
], ids=["first-step", "last-step", "evaluation", "end-of-epoch-writes", "sigint"])
def test_sigterm_at_every_kind_of_point_resumes_bit_identical(tmp_path, digits_reference, hook,
                                                              epoch, step, finished):
    _stopped_and_resumed(tmp_path, digits_reference, DIGITS, hook, epoch, step, finished)


@pytest.mark.slow
def test_sigkill_resumes_from_the_last_checkpoint_steps_save_bit_identical(tmp_path,
                                                                         digits_reference):
    """No notice (SIGKILL at step 5 of epoch 2): the rerun resumes from the last
    --checkpoint-steps save (step 4) and still ends as the uninterrupted run (which had no
    mid-epoch saves: where saves and tf.function calls fall changes nothing)."""
    from keras_resnet.training import read_checkpoint

    run_dir = tmp_path / "run"
    args = DIGITS + ["--checkpoint-steps", "2"]
    r = _train(args, run_dir, tmp_path, "KILL@2:5")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    meta = read_checkpoint(run_dir)
    assert (meta["epoch"], meta["step"]) == (1, 4)
    again = _train(args, run_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[0] == (
        f"resuming {run_dir} at epoch 2, step 4 of {STEPS} (1 epochs finished)")
    _assert_same_state(run_dir, digits_reference)


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_a_second_sigint_exits_at_once_and_keeps_the_last_commit(tmp_path):
    """Two Ctrl-C in a row: the second ends the process (killed by SIGINT, no traceback)
    before the notice's save; the commit of epoch 1 stays the run's resume point."""
    from keras_resnet.training import read_checkpoint

    run_dir = tmp_path / "run"
    r = _train(DIGITS, run_dir, tmp_path, "INT*2@2:2")
    assert r.returncode == -signal.SIGINT, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "saved epoch" not in r.stderr
    meta = read_checkpoint(run_dir)
    assert (meta["epoch"], meta["step"]) == (1, 0)
    assert _state(run_dir)  # readable, whole


def _jpeg_folder(root, classes=3, per_class=24, size=48):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            # A class-coloured image with noise: learnable, and a real JPEG round trip.
            base = np.zeros((size, size, 3)) + [60 + 80 * (c == k) for k in range(3)]
            pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.jpg", quality=90)


@pytest.mark.slow
def test_image_folder_sigterm_from_outside_saves_within_the_grace_period(tmp_path):
    """A real image folder; SIGTERM sent from this process while epoch 1 trains (wherever it
    lands: the saved line and the rerun's first line must agree); the process exits well
    within a grace period and the rerun equals the uninterrupted run."""
    data = tmp_path / "photos"
    _jpeg_folder(data)
    args = ["--dataset", "folder", "--data-dir", str(data), "--image-size", "32", "--model",
            "resnet8", "--epochs", "2", "--steps-per-epoch", "12", "--batch-size", "4",
            "--steps-per-execution", "4", "--deterministic", "--no-plot", "--no-tensorboard"]
    reference = tmp_path / "reference"
    r = _train(args, reference, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]

    run_dir = tmp_path / "run"
    p = subprocess.Popen([sys.executable, TRAIN, *args, "--run-dir", str(run_dir)],
                         cwd=tmp_path, env=train_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stdout:
            if line.startswith("Epoch 1/2"):
                break
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=GRACE_S * 10)
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 143, err[-3000:]
    assert took < GRACE_S, took
    line = err.strip().splitlines()[-1]
    assert line.startswith("train.py: SIGTERM: saved epoch 1, step ") and "Traceback" not in err
    where = line.split("saved ")[1].split(" (")[0]  # "epoch 1, step S of 12"

    again = _train(args, run_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = again.stdout.splitlines()
    assert lines[0].startswith("found 72 images in 3 classes")  # the folder, listed first
    assert lines[1].startswith(f"resuming {run_dir} at {where} ("), lines[:3]
    _assert_same_state(run_dir, reference)


def _two_free_ports():
    """Two consecutive free ports on 127.0.0.1 (Slurm reserves a range for a step)."""
    import socket

    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _pair(args, run_dir, cwd, envs):
    """Runs two ``train.py`` workers with the environments ``envs``; returns
    ``[(returncode, stdout, stderr)] * 2``."""
    procs = [subprocess.Popen([sys.executable, TRAIN, *args, "--run-dir", str(run_dir)], cwd=cwd,
                              env=train_env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for env in envs]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            outs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outs


@pytest.mark.slow
def test_two_workers_one_sigtermed_both_save_the_same_step_and_resume_bit_identical(tmp_path):
    """An uninterrupted pair started with TF_CONFIG; a pair started with simulated Slurm
    variables (one srun step of two tasks on 127.0.0.1) whose second worker alone gets
    SIGTERM mid-epoch: both workers save at the same step and exit 143, and the resumed pair
    ends with the uninterrupted pair's state bit for bit."""
    args = ["--model", "resnet8", "--epochs", "2", "--steps-per-epoch", "6", "--batch-size",
            "16", "--steps-per-execution", "2", "--deterministic", "--no-plot",
            "--no-tensorboard"]
    port = _two_free_ports()
    workers = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    tf_config = [{"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                           "task": {"type": "worker", "index": i}})}
                 for i in range(2)]
    reference = tmp_path / "reference"
    outs = _pair(args, reference, tmp_path, tf_config)
    for i, (rc, out, err) in enumerate(outs):
        assert rc == 0, err[-3000:]
        assert out.splitlines()[0] == (f"cluster from TF_CONFIG: 2 tasks (worker x2); this "
                                       f"process is worker {i} at {workers[i]}")

    port = _two_free_ports()
    slurm = [dict(SLURM_JOB_ID="31337", SLURM_PROCID=str(i), SLURM_STEP_NUM_TASKS="2",
                  SLURM_STEP_NODELIST="127.0.0.1", SLURM_STEP_TASKS_PER_NODE="2",
                  SLURM_STEP_RESV_PORTS=f"{port}-{port + 1}") for i in range(2)]
    run_dir = tmp_path / "run"
    outs = _pair(args, run_dir, tmp_path, [slurm[0], dict(slurm[1], **{HOOK: "2:2"})])
    lines = []
    for i, (rc, out, err) in enumerate(outs):
        assert rc == 143, err[-3000:]
        assert out.splitlines()[0] == (
            f"cluster from Slurm job 31337: 2 tasks (worker x2); this process is worker {i} "
            f"(SLURM_PROCID {i}) at 127.0.0.1:{port + i}")
        assert "Traceback" not in err
        # (after it, a worker may log TensorFlow's lost connection to the other, gone first)
        lines.append([x for x in err.splitlines() if x.startswith("train.py: ")][-1])
    from keras_resnet.training import read_checkpoint

    meta = read_checkpoint(run_dir)
    assert (meta["epoch"], meta["step"]) == (1, 2)
    assert lines[0] == lines[1] == (
        f"train.py: SIGTERM: saved epoch 2, step 2 of 6 (1 epochs finished) in {meta['path']}; "
        "rerun the same command to resume (exit status 143)")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "preempted"

    outs = _pair(args, run_dir, tmp_path, slurm)
    for rc, out, err in outs:
        assert rc == 0, err[-3000:]
    assert f"resuming {run_dir} at epoch 2, step 2 of 6 (1 epochs finished)" in outs[0][1]
    _assert_same_state(run_dir, reference)
