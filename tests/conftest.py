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


def trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
