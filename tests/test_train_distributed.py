"""Real tf.distribute training on this CPU: MirroredStrategy over two logical CPU devices and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
from conftest import train_env
import pytest

pytestmark = pytest.mark.slow  # end to end: trains in processes of its own

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_train_worker.py")
TIMEOUT = 420



def _args(out, **kwargs):
    return [sys.executable, WORKER, str(out)] + [f"{k}={json.dumps(v)}" for k, v in kwargs.items()]


def _wait(procs):
    """Waits for every process, killing all of them past TIMEOUT; returns outputs."""
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


def _replicas(path, kind):
    z = np.load(path)
    out = {}
    for key in z.files:
        if key.startswith(kind) and "_r" in key:
            var, rep = key[1:].split("_r")
            out.setdefault(int(var), {})[int(rep)] = z[key]
    return [out[i] for i in sorted(out)], float(z["test_accuracy"])


def _saved_non_trainable(run_dir):
    import keras

    import keras_resnet  # noqa: F401  (registers the ResNet class for loading)

    model = keras.saving.load_model(os.path.join(run_dir, "last.keras"), safe_mode=True)
    return [v.numpy() for v in model.non_trainable_variables]


def _check_converged(run_dir, min_accuracy=0.9):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = [line.split(",") for line in f.read().split()[1:]]
    losses = [float(r[1]) for r in rows]
    with open(os.path.join(run_dir, "run.json")) as f:
        info = json.load(f)
    assert losses[-1] < losses[0] / 3, losses
    assert info["test_accuracy"] >= min_accuracy, info["test_accuracy"]
    return info


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    run_dir = tmp_path / "run"
    out = tmp_path / "replicas.npz"
    p = subprocess.Popen(
        _args(out, strategy="mirrored", cpu_replicas=2, epochs=8, run_dir=str(run_dir),
              plot=False, tensorboard=False),
        env=train_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (log,) = _wait([p])
    assert "MirroredStrategy with 2 replica(s), global batch 128" in log

    info = _check_converged(run_dir)
    assert info["replicas"] == 2 and info["global_batch_size"] == 128
    assert info["effective_lr"] == 0.2  # linear scaling: 0.1 per replica's batch of 64

    trainable, accuracy = _replicas(out, "t")
    for reps in trainable:
        assert sorted(reps) == [0, 1]
        np.testing.assert_array_equal(reps[0], reps[1])
    # Unsynchronised BN: each replica keeps its own moving statistics; the saved model
    # holds the first replica's (documented).
    stats, _ = _replicas(out, "n")
    assert any(not np.array_equal(r[0], r[1]) for r in stats)
    saved = _saved_non_trainable(run_dir)
    assert len(saved) == len(stats)
    for s, reps in zip(saved, stats):
        np.testing.assert_array_equal(s, reps[0])
    assert abs(accuracy - info["test_accuracy"]) < 1e-9


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_mirrored_strategy_two_processes_sync_bn(tmp_path):
    run_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            _args(tmp_path / f"worker{i}.npz", strategy="multi_worker", epochs=6, sync_bn=True,
                  run_dir=str(run_dir), plot=False, tensorboard=False),
            env=train_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    logs = _wait(procs)
    assert "MultiWorkerMirroredStrategy with 2 replica(s)" in logs[0]
    assert "epoch 6:" not in logs[1]  # only the chief reports and writes

    info = _check_converged(run_dir)
    assert info["bn_statistics"].startswith("synchronized")
    assert info["strategy"] == "MultiWorkerMirroredStrategy"
    t0, acc0 = _replicas(tmp_path / "worker0.npz", "t")
    t1, acc1 = _replicas(tmp_path / "worker1.npz", "t")
    for a, b in zip(t0, t1):
        np.testing.assert_array_equal(a[0], b[0])
    # Synchronised BN: global-batch statistics, the same on both workers and in the file.
    n0, _ = _replicas(tmp_path / "worker0.npz", "n")
    n1, _ = _replicas(tmp_path / "worker1.npz", "n")
    saved = _saved_non_trainable(run_dir)
    for s, a, b in zip(saved, n0, n1):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s, a[0])
    assert abs(acc0 - acc1) < 1e-6
    assert sorted(os.listdir(run_dir)) == sorted(
        ["best.keras", "last.keras", "checkpoint", "metrics.csv", "run.json", ".keras_resnet_run"])
