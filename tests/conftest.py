"""Shared test helpers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_python(code, env=None, timeout=600, check=True, cwd=None):
    """Run ``code`` in a fresh Python process with the repository importable.

    Returns the CompletedProcess; with ``check`` a non-zero exit fails the test with the
    process's stderr tail.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"subprocess exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def train_env(**extra):
    """Environment for a training subprocess: repository importable, CPU only, no cluster."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_train(args, cwd, timeout=600):
    """Run ``train.py ARGS`` in ``cwd``; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd,
                          env=train_env(), capture_output=True, text=True, timeout=timeout)


def as_numpy(value, dtype=None):
    """A tensor, variable or array of any Keras backend as a NumPy array."""
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value), dtype)


def trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
