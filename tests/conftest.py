"""Shared test helpers."""

import json
import os
import re
import resource
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def randomize_weights(model, rng, kernel_noise=0.0, bias_noise=0.0):
    """Non-trivial weights for comparing two implementations: BatchNormalization's gamma,
    beta *and* moving statistics drawn at random (their defaults 1/0/0/1 would hide a wrong
    order), and N(0, kernel_noise) added to every other layer's kernel, N(0, bias_noise) to
    its other arrays. Returns ``model``."""
    import keras

    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            new = [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                   rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 2.0, var.shape)]
        else:
            new = [weights[0] + rng.normal(0, kernel_noise, weights[0].shape)]
            new += [w + rng.normal(0, bias_noise, w.shape) for w in weights[1:]]
        layer.set_weights([np.asarray(w, "float32") for w in new])
    return model


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
    for name in [k for k in env if k.startswith("SLURM_")]:  # a suite run inside a Slurm job
        env.pop(name)
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


# The fast tier (pytest -m "not slow") leaves out, besides the tests marked slow in their
# files (journeys, and tests that start a Python process that imports TensorFlow), every test
# that needs the trained-and-exported model or the strace recording, and the arithmetic of
# the deepest models (1,001 and 1,202 layers to build).
SLOW_FIXTURES = {"exported", "recording"}
SLOW_IDS = ("[1202]", "[1001]", "[ResNet1202CIFAR]", "[PreActResNet1001CIFAR]")
# It also leaves out a parametrised check's instances on models of 101 layers or more
# (ResNet152, PreActResNet164CIFAR-kwargs3, [110], ...) where the same check has an instance on
# a shallower model in the fast tier: the same code path, more blocks to build.
DEEP_ID = re.compile(r"\[[A-Za-z_]*(?:101|110|152|164|200|269)(?:[A-Za-z0-9_]*)(?:-[^\]]*)?\]$")


def _deep_instances(items):
    """The items of :data:`DEEP_ID` whose test function keeps a shallower fast instance."""
    shallow = {item.nodeid.split("[")[0] for item in items
               if "[" in item.nodeid and not DEEP_ID.search(item.nodeid)
               and not item.get_closest_marker("slow")}
    return [item for item in items
            if DEEP_ID.search(item.nodeid) and item.nodeid.split("[")[0] in shallow]


# The CPU seconds each test took in a recorded run (tests/durations.json, written from a
# KERAS_RESNET_TEST_CPU_LOG file by ``python tests/durations.py LOG``). The longest test
# files start first, and pytest-xdist's workers steal queued tests from each other (below),
# so that they end together instead of one of them running a long test alone at the end.
DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")


def _recorded_seconds():
    try:
        with open(DURATIONS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.nodeid.endswith(SLOW_IDS):
            item.add_marker(pytest.mark.slow)
    for item in _deep_instances(items):
        item.add_marker(pytest.mark.slow)
    seconds = _recorded_seconds()
    if seconds:
        # Whole files, the longest first; a file's own order is kept, since a test may use
        # what an earlier one of its file made (test_registry_matrix's fresh-process load).
        per_file = {}
        for item in items:
            name = item.nodeid.split("::")[0]
            per_file[name] = per_file.get(name, 0.0) + seconds.get(item.nodeid, 1.0)
        order = {id(item): i for i, item in enumerate(items)}
        items.sort(key=lambda item: (-per_file[item.nodeid.split("::")[0]], order[id(item)]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` alone distributes by pytest-xdist's default ("load"): make that work stealing,
    which rebalances the queues as tests end. An explicit ``--dist`` other than load is kept."""
    if config.getoption("dist") == "load":
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None


# Where the suite's time goes, robust to a busy machine: with KERAS_RESNET_TEST_CPU_LOG=FILE
# every test appends its wall seconds and the CPU seconds of its process and of the child
# processes it waited for (setup, call and teardown together) as one JSON line.
CPU_LOG = os.environ.get("KERAS_RESNET_TEST_CPU_LOG")


def _cpu_seconds():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not CPU_LOG:
        yield
        return
    (own, children), wall = _cpu_seconds(), time.monotonic()
    yield
    (own2, children2), wall2 = _cpu_seconds(), time.monotonic()
    with open(CPU_LOG, "a") as f:
        f.write(json.dumps({"test": item.nodeid, "wall": round(wall2 - wall, 2),
                            "cpu": round(own2 - own, 2), "children": round(children2 - children, 2)}) + "\n")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
