"""The model library on Keras 3's PyTorch backend: files saved under TensorFlow load and
compute the same function under torch, and models build, train and round-trip there.
(Training with tf.distribute, the fused BN kernel and export are TensorFlow-only.)"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import ROOT, randomize_weights

import keras
import pytest

import keras_resnet as kr

pytestmark = pytest.mark.slow  # reruns tests in a process under Keras's PyTorch backend

MODELS = {
    "cifar20": lambda: kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=5),
    "preact_bottleneck": lambda: kr.ResNet(
        [1, 1], [8, 16], block="bottleneck", stem="cifar", preact=True, input_shape=(16, 16, 3), classes=5),
    "resnet18_pixels": lambda: kr.ResNet18(input_shape=(32, 32, 3), classes=5, include_preprocessing=True),
    "grouped_se_d": lambda: kr.ResNet(
        [1, 1], [16, 32], block="bottleneck", stem="deep", avg_down=True, groups=4, width_per_group=4,
        attention="se", input_shape=(32, 32, 3), classes=5),
}

_TORCH_SIDE = r"""
import json, sys, numpy as np, keras
import keras_resnet as kr
assert keras.backend.backend() == "torch"
folder, names = sys.argv[1], json.loads(sys.argv[2])
x = np.load(folder + "/x.npy")
out = {}
for name in names:
    m = keras.saving.load_model(f"{folder}/{name}.keras", safe_mode=True)
    inputs = x[:, :m.input_shape[1], :m.input_shape[2]]
    out[name] = keras.ops.convert_to_numpy(m(inputs, training=False)).tolist()
# Build, train a few steps and round-trip on torch itself.
m = kr.ResNet20CIFAR(input_shape=(16, 16, 3), classes=5)
m.compile("sgd", "sparse_categorical_crossentropy")
y = np.arange(8) % 5
h = m.fit(np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32"), y, epochs=3,
          batch_size=8, verbose=0)
m.save(folder + "/torch.keras")
back = keras.saving.load_model(folder + "/torch.keras", safe_mode=True)
z = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
out["_losses"] = h.history["loss"]
out["_roundtrip"] = float(np.max(np.abs(keras.ops.convert_to_numpy(m(z)) - keras.ops.convert_to_numpy(back(z)))))
print("RESULT " + json.dumps(out))
"""


def test_tensorflow_files_compute_the_same_function_under_torch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    want = {}
    keras.utils.set_random_seed(0)
    for name, build in MODELS.items():
        model = build()
        randomize_weights(model, rng)
        want[name] = np.asarray(model(x[:, :model.input_shape[1], :model.input_shape[2]], training=False))
        model.save(tmp_path / f"{name}.keras")
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    code = _TORCH_SIDE
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(tmp_path), json.dumps(list(MODELS))],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    for name in MODELS:
        # Softmax outputs: another backend's kernels, float32 rounding only.
        np.testing.assert_allclose(np.array(got[name]), want[name], atol=1e-5, err_msg=name)
    assert got["_losses"][-1] < got["_losses"][0]  # it trains on torch
    assert got["_roundtrip"] == 0.0


# Each file in a process of its own, so that the three share the machine's cores; at least
# this many of each file's tests run under torch (the whole selection passes, none skipped).
RERUN = {"test_layers.py": 30, "test_models.py": 10, "test_serialization.py": 20}


@pytest.mark.parametrize("test_file", sorted(RERUN))
def test_model_layer_and_serialization_tests_pass_under_torch(test_file):
    """The model, layer and serialization tests, run again on Keras's PyTorch backend. Left
    out: the tf_keras test (TensorFlow's legacy Keras), mixed_float16 (PyTorch has no float16
    convolutions on CPU), the parameter counts and stage shapes of every named model
    (arithmetic of the config, the same on every backend, and the slowest to build: up to
    1,202 layers deep; the forward-pass tests still build models of every family), the
    checks of the two deepest pre-activation models (the same layers as the smaller ones of
    their family, which stay in), and the fresh-process load (the test above
    loads files in a fresh torch process)."""
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         os.path.join(ROOT, "tests", test_file),
         "-k", "not tf_keras and not mixed_precision and not parameter_counts and not stage_shapes"
               " and not fresh_process and not PreActResNet164CIFAR and not PreActResNet50"],
        env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if " passed" in line][-1]
    for word in ("failed", "error", "skipped", "xfail"):
        assert word not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= RERUN[test_file], summary
