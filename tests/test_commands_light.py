"""Thin commands: every console script answers --help, --version and argument errors
before TensorFlow is imported, and ``import keras_resnet`` changes nothing of its host
process (environment, file descriptors 0-2, sys.argv), whatever the process is called."""

import configparser
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _console_scripts():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return [tuple(part.strip() for part in line.split("=", 1)) for line in lines]


SCRIPTS = _console_scripts()
# The export commands' --version is the SavedModel version to write, not the program's.
WITH_VERSION = {s for s, _ in SCRIPTS if not s.startswith("keras-resnet-export")}

# Runs the entry point as the console script does (sys.argv set, the function called with
# no arguments), then reports its exit status and whether TensorFlow or Keras got imported.
_PROBE = """
import importlib, io, contextlib, json, sys
script, target, args = sys.argv[1], sys.argv[2], sys.argv[3:]
module, func = target.split(":")
sys.argv = [script, *args]
out, err = io.StringIO(), io.StringIO()
try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = getattr(importlib.import_module(module), func)() or 0  # as sys.exit(main())
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules,
                  "keras": "keras" in sys.modules, "out": out.getvalue(), "err": err.getvalue()}))
"""


def _probe(script, target, *args):
    # -I: isolated from the working directory and PYTHON* variables; the package comes from
    # the environment it is installed in.
    r = subprocess.run([sys.executable, "-I", "-c", _PROBE, script, target, *args],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_console_script_is_checked():
    assert len(SCRIPTS) == 10 and all(target.startswith("keras_resnet") for _, target in SCRIPTS)


@pytest.mark.parametrize("script,target", SCRIPTS)
def test_help_version_and_bad_arguments_without_tensorflow(script, target):
    got = _probe(script, target, "--help")
    assert got["code"] == 0 and not got["tensorflow"] and not got["keras"], got["err"][-500:]
    assert got["out"].startswith("usage: ") and "--help" in got["out"]
    assert "(default: True)" not in got["out"]  # --no-FLAG options show no inverted default

    bad = _probe(script, target, "--no-such-flag")
    assert bad["code"] == 2 and not bad["tensorflow"] and not bad["keras"]
    assert "error: unrecognized arguments: --no-such-flag" in bad["err"] or \
        "error: the following arguments are required" in bad["err"], bad["err"]

    if script in WITH_VERSION:
        import keras_resnet

        version = _probe(script, target, "--version")
        assert version["code"] == 0 and not version["tensorflow"]
        assert version["out"].split() == [script, keras_resnet.__version__]


_IMPORT_PROBE = """
import json, os, sys
sys.argv[0] = sys.argv[1]  # what a console script's process looks like
before = dict(os.environ), list(sys.argv), [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]
stats = [tuple(os.fstat(fd))[:3] for fd in (0, 1, 2)]
if sys.argv[2] == "keras_resnet":
    import keras_resnet
    model = keras_resnet.ResNet20CIFAR(input_shape=(8, 8, 1), classes=3)  # imports Keras, TensorFlow
else:  # the control: what TensorFlow's and Keras's own imports change (JAX, when installed,
    import tensorflow, keras  # sets TF_CPP_MIN_LOG_LEVEL as TensorFlow imports it)
after = dict(os.environ), list(sys.argv), [os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)]
changed = sorted(k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k))
print(json.dumps({"env": changed, "argv": before[1] == after[1], "fds": before[2] == after[2],
                  "stats": stats == [tuple(os.fstat(fd))[:3] for fd in (0, 1, 2)]}))
"""


@pytest.mark.slow  # starts a Python process that imports TensorFlow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("argv0", ["keras-resnet-train", "train.py", "my_app.py"])
def test_importing_the_package_changes_nothing_of_the_process(argv0):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_"))}

    def probe(what):
        r = subprocess.run([sys.executable, "-I", "-c", _IMPORT_PROBE, argv0, what],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    got, control = probe("keras_resnet"), probe("control")
    # TensorFlow's and Keras's own imports may set variables of their own (the control
    # process shows which); keras_resnet adds none, such as the ones it used to set in its
    # commands (TF_CPP_MIN_LOG_LEVEL, TF_ENABLE_ONEDNN_OPTS).
    assert set(got["env"]) <= set(control["env"]), (got, control)
    assert got["argv"] and got["fds"] and got["stats"], got


def test_bare_import_loads_neither_tensorflow_nor_keras():
    r = subprocess.run([sys.executable, "-I", "-c", "import os, sys; env = dict(os.environ); "
                        "import keras_resnet; print('tensorflow' in sys.modules, 'keras' in "
                        "sys.modules, env == dict(os.environ))"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.stdout.split() == ["False", "False", "True"], r.stderr[-2000:]


# ``import keras_resnet`` first, Keras after it (directly, through TensorFlow, or one name
# from it), and no keras_resnet name used: keras.saving finds the classes all the same, and
# the post-import hook that registered them is gone from sys.meta_path.
_LOAD_AFTER = """
import sys
import numpy as np
import keras_resnet
assert "keras" not in sys.modules and "tensorflow" not in sys.modules
{imports}
from keras.saving import load_model
model = load_model(sys.argv[1], safe_mode=True)
got = np.asarray(model(np.load(sys.argv[2]), training=False))
import keras
print(type(model).__name__, float(np.abs(got - np.load(sys.argv[3])).max()),
      type(keras.__loader__).__name__, type(keras.__spec__.loader).__name__,
      sum(type(f).__module__ == "keras_resnet._lazy" for f in sys.meta_path))
"""


@pytest.mark.slow  # starts a Python process that imports TensorFlow
@pytest.mark.parametrize("imports", ["import keras", "import tensorflow",
                                     "from keras import saving"])
def test_models_load_when_keras_is_imported_after_the_package(imports, tmp_path):
    import numpy as np

    import keras_resnet as kr

    model = kr.ResNet20CIFAR(input_shape=(8, 8, 3), classes=3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(model(x, training=False)))
    r = subprocess.run([sys.executable, "-I", "-c", _LOAD_AFTER.format(imports=imports),
                        str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    kind, diff, loader, spec_loader, hooks = r.stdout.split()[-5:]
    # The same float32 kernels on the same inputs in both processes: equal to rounding.
    assert kind == "ResNet" and float(diff) <= 1e-5, r.stdout
    assert loader == spec_loader == "SourceFileLoader" and hooks == "0", r.stdout


@pytest.mark.parametrize("dataset", ["folder", "tfrecord"])
def test_a_file_dataset_without_data_dir_says_what_is_missing(dataset):
    got = _probe("keras-resnet-train", "keras_resnet.train:main", "--dataset", dataset)
    assert got["code"] == 2 and not got["tensorflow"]
    line = got["err"].strip().splitlines()[-1]
    assert line.startswith(f"keras-resnet-train: error: --dataset {dataset} needs --data-dir DIR")
    assert "None" not in line
