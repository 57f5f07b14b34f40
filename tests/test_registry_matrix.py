"""Every registered model through every path, generated from the registry.

For each name in ``keras_resnet.list_models()``, at the smallest input it accepts: build it
(and see one pixel less refused), train one step through the training command
(``keras_resnet.train.main``), load the saved ``.keras`` file in another process and compare
what it computes, and export it to SavedModel, TFLite fp32 and ONNX fp32 with the export's
own parity check. A model added to the registry is in this matrix at once.

* The suite's (slow tier): one cheap model of each kind of stem, block and shortcut
  (:data:`FAST`), trained in this process and loaded in one fresh process.
* Slow (``-m slow``): the fast models exported. With ``KERAS_RESNET_FULL_MATRIX=1`` also
  every other registered model, each trained, saved and loaded in a child
  process of its own (``sys.executable``, isolated from the working directory), so that its
  memory is returned when it ends: the whole registry trained in one process ran a CI
  machine out of memory. The export path, slow too, takes the smallest model of each family
  (:func:`family`).
"""

import csv
import json
import os
import re
import subprocess

import numpy as np
import pytest
from conftest import as_numpy, run_python

import keras_resnet as kr
from keras_resnet.isolated import python_command
from keras_resnet.specs import IMAGENET_DEPTHS
from keras_resnet.train import main as train_main

# One cheap model per kind: CIFAR option A, plain, CIFAR pre-activation, ImageNet stem
# (projection shortcuts), deep stem with average-pool shortcuts (ResNet-D).
FAST = ("ResNet20CIFAR", "plain20", "preactresnet20", "ResNet18", "ResNet18D")
NAMES = kr.list_models()
PARAMS = [n for n in NAMES if n in FAST]
SLOW = [n for n in NAMES if n not in FAST]
BATCH = 4  # BatchNormalization needs more than a couple of values per channel at 1x1 maps


def family(name):
    """``(kind, input)`` of a registered name: its constructor name without depth and width
    (``resnext``, ``resnetd``, ``preactresnetcifar``, ...) and whether it is a CIFAR or an
    ImageNet network."""
    lower = name.lower()
    m = re.fullmatch(r"(plain|preactresnet|resnet)(\d+)", lower)
    if m:  # a family name: its depth says which network it is
        return m.group(1), "imagenet" if int(m.group(2)) in IMAGENET_DEPTHS else "cifar"
    return re.sub(r"\d+x\d+d|_\d+|\d+|_", "", lower), "cifar" if "cifar" in lower else "imagenet"


def _depth(name):
    return int(re.search(r"\d+", name).group())


# The export path: the smallest model of each family (fast ones first).
EXPORTED = sorted({family(n): n for n in sorted(NAMES, key=lambda n: (n in FAST, -_depth(n)))}.values(),
                  key=NAMES.index)
SAVED = {}  # name -> (.keras path, input .npy, output .npy), for the fresh-process load

# The whole registry (every model in a child process of its own, every family exported) takes
# 48 CPU minutes, most of it single-threaded (measured: docs/testing.md); one export child
# peaks at 20 GB (WideResNet50_2). The suite runs the fast models; the rest, selected by the full_matrix mark, runs on request (not
# in CI: see docs/layout.md):
#   KERAS_RESNET_FULL_MATRIX=1 pytest -v -m full_matrix tests/test_registry_matrix.py
FULL = os.environ.get("KERAS_RESNET_FULL_MATRIX") == "1"
FULL_MATRIX = [pytest.mark.full_matrix, pytest.mark.skipif(
    not FULL, reason="the full registry matrix: KERAS_RESNET_FULL_MATRIX=1 pytest -m "
                     "full_matrix tests/test_registry_matrix.py (48 CPU minutes)")]


def test_fast_models_are_registered():
    assert set(FAST) <= set(NAMES)


def test_every_family_is_exported():
    assert {family(n) for n in NAMES} == {family(n) for n in EXPORTED}
    assert len(EXPORTED) == len(set(map(family, EXPORTED)))
    assert {family("ResNeXt50_32x4d"), family("WideResNet50_2"), family("ResNet20CIFAR"),
            family("plain20"), family("plain18")} <= set(map(family, EXPORTED))
    assert family("plain20") != family("plain18") and family("ResNet50D") == family("ResNet18D")


def _smallest_input(name):
    """The model at its smallest accepted input; one pixel less is refused."""
    model = kr.resolve_model(name)(input_shape=(None, None, 3), classes=3)
    size = model.min_input_size
    # The downsampling of the stem and the stages, computed independently: the CIFAR stem
    # keeps the size, the ImageNet and deep stems divide it by 4; stages 2.. halve it.
    stem = 1 if model.get_config()["stem"] == "cifar" else 4
    assert size == stem * 2 ** (model.num_stages - 1)
    kr.resolve_model(name)(input_shape=(size, size, 3), classes=3)
    if size > 1:
        with pytest.raises(ValueError, match="below this network's minimum input size"):
            kr.resolve_model(name)(input_shape=(size - 1, size - 1, 3), classes=3)
    return size


def _train_args(name, size, run_dir):
    return ["--model", name, "--dataset", "synthetic", "--image-size", str(size),
            "--num-classes", "3", "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", str(BATCH), "--lr", "1e-4", "--warmup-epochs", "0",
            "--no-tensorboard", "--no-plot", "--quiet", "--run-dir", str(run_dir)]


@pytest.mark.slow  # a training run through the training command: the integration matrix
@pytest.mark.parametrize("name", PARAMS)
def test_builds_and_trains_one_step_from_the_training_command(name, tmp_path_factory):
    size = max(8, _smallest_input(name))  # the command's --image-size starts at 8
    run_dir = tmp_path_factory.mktemp(f"run_{name}")
    code = train_main(_train_args(name, size, run_dir))
    assert code == 0
    info = json.loads((run_dir / "run.json").read_text())
    assert info["model"] == name and info["epochs_finished"] == 1
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))
    import keras

    model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    assert type(model).__name__ == "ResNet" and tuple(model.input_shape[1:]) == (size, size, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    y = as_numpy(model(x, training=False))
    assert y.shape == (2, 3) and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    # --evaluate reads the run's test split as the run did (its augment preset's evaluation
    # transform): the loaded model scores what the training process's model scored.
    from keras_resnet.training import evaluate

    scored = evaluate(str(run_dir), verbose=0)
    assert scored["accuracy"] == info["test_accuracy"], (scored, info["test_accuracy"])
    assert abs(scored["loss"] - float(rows[0]["test_loss"])) <= 1e-5 * max(1.0, scored["loss"])
    np.save(run_dir / "x.npy", x)
    np.save(run_dir / "y.npy", y)
    SAVED[name] = run_dir


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_saved_models_load_in_a_fresh_process():
    """The ``.keras`` files of the models trained above, loaded in one fresh process with
    ``safe_mode=True``, compute what the training process computed."""
    if not SAVED:
        pytest.skip("no model of the matrix was trained in this session")
    runs = {name: str(path) for name, path in SAVED.items()}
    proc = run_python(f"""
        import json, numpy as np, keras
        import keras_resnet
        out = {{}}
        for name, run in {runs!r}.items():
            m = keras.saving.load_model(run + "/last.keras", safe_mode=True)
            got = keras.ops.convert_to_numpy(m(np.load(run + "/x.npy"), training=False))
            out[name] = [type(m).__name__, float(np.abs(got - np.load(run + "/y.npy")).max())]
        print(json.dumps(out))
    """)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == set(runs)
    for name, (kind, diff) in result.items():
        # The same kernels on the same inputs: float32 softmax outputs agree to rounding.
        assert kind == "ResNet" and diff <= 1e-5, (name, kind, diff)


# One registered model, in a child process of its own: its smallest input (and one pixel less
# refused), one training step through the training command, then its saved last.keras loaded
# (safe_mode) and evaluated on the run's test split; prints what the run recorded and what the
# loaded model computes.
CHILD = """
import json, re, sys
import numpy as np
import keras_resnet as kr
from keras_resnet import training
from keras_resnet.train import main
name, run_dir = sys.argv[1], sys.argv[2]
try:  # refused before anything is built, naming the smallest input
    kr.resolve_model(name)(input_shape=(1, 1, 3), classes=3)
    size = 1
except ValueError as e:
    size = int(re.search(r"at least (\\d+)", str(e)).group(1))
try:
    kr.resolve_model(name)(input_shape=(size - 1, size - 1, 3), classes=3)
    refused = False
except ValueError as e:
    refused = "below this network's minimum input size" in str(e)
size = max(8, size)  # the command's --image-size starts at 8
code = main(json.loads(sys.argv[3]) + [str(size), "--run-dir", run_dir])
with open(run_dir + "/run.json") as f:
    run = json.load(f)
with open(run_dir + "/metrics.csv") as f:
    last_row = f.read().strip().splitlines()[-1].split(",")
loaded = training.evaluate(run_dir + "/last.keras", verbose=0)
import keras
model = keras.saving.load_model(run_dir + "/last.keras", safe_mode=True)
x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
y = keras.ops.convert_to_numpy(model(x, training=False))
print("RESULT " + json.dumps(dict(
    code=code, refused=refused, size=size, model=run["model"], epochs=run["epochs_finished"],
    run_accuracy=run["test_accuracy"], run_loss=float(last_row[3]), kind=type(model).__name__,
    input_shape=list(model.input_shape[1:]), accuracy=loaded["accuracy"], loss=loaded["loss"],
    sums=[float(v) for v in y.sum(axis=1)], finite=bool(np.isfinite(y).all()))))
"""


def _flags(settings):
    """The training command's flags for ``TrainConfig`` fields (``{"lr": 1e-3}`` ->
    ``["--lr", "0.001"]``)."""
    return [arg for field, value in settings.items()
            for arg in (f"--{field.replace('_', '-')}", str(value))]


# plain1202 is not in the matrix: list_models() leaves it out, because its float32 gradient
# overflows in the first step (measured; keras_resnet.registry.UNLISTED, docs/layout.md).


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=FULL_MATRIX) for n in SLOW])
def test_every_model_trains_saves_and_loads_in_a_process_of_its_own(name, tmp_path):
    # Eight steps: the BatchNormalization moving statistics are then 1 - 0.9^8 = 57% of the way
    # to the data's; after one step (10%) the inference-mode outputs of ResNet200 overflow, and
    # the training command stops on the NaN.
    args = ["--dataset", "synthetic", "--num-classes", "3", "--epochs", "1",
            "--steps-per-epoch", "8", "--batch-size", str(BATCH), "--lr", "1e-4",
            "--warmup-epochs", "0", "--no-tensorboard", "--no-plot", "--quiet",
            # The registry's recommendation where it has one, as a user gets it (AdamW for
            # plain networks of 100+ layers: with SGD their outputs overflow in 8 steps).
            *_flags(kr.registry.recommended_settings(name)), "--model", name, "--image-size"]
    argv, env = python_command([name, str(tmp_path / "run"), json.dumps(args)], code=CHILD)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    r = json.loads(lines[-1][len("RESULT "):])
    stem = 1 if family(name)[1] == "cifar" else 4  # the downsampling, computed independently
    stages = 3 if family(name)[1] == "cifar" else 4
    assert r["size"] == max(8, stem * 2 ** (stages - 1)) and r["refused"], r
    assert r["code"] == 0 and r["model"] == name and r["epochs"] == 1, r
    assert r["kind"] == "ResNet" and r["input_shape"] == [r["size"], r["size"], 3], r
    assert r["finite"] and np.allclose(r["sums"], 1, atol=1e-5), r
    # The loaded model scores the test split as the training process's model did: the same
    # weights and kernels on the same images (float32 loss to its rounding).
    assert r["accuracy"] == r["run_accuracy"], r
    assert abs(r["loss"] - r["run_loss"]) <= 1e-5 * max(1.0, abs(r["run_loss"])), r


EXPORT_FORMATS = ("savedmodel", "tflite", "onnx")
EXPORT_OPTIONS = dict(tflite_precisions=["fp32"], onnx_precisions=["fp32"], latency_runs=1)
# One model trained (one step) and exported in a child process: prints the export's report.
EXPORT_CHILD = f"""
import json, sys
from keras_resnet.export import export_all
from keras_resnet.train import main
run_dir, out, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
code = main(args)
report = export_all(run_dir, out, {EXPORT_FORMATS!r}, **{EXPORT_OPTIONS!r},
                    progress=lambda *a, **k: None)
print("RESULT " + json.dumps(dict(code=code, passed=report["passed"], failures=report["failures"],
                                  artifacts=report["artifacts"]), default=str))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=FULL_MATRIX)
                                  for n in sorted(set(EXPORTED) | set(FAST), key=NAMES.index)])
def test_exports_to_every_runtime_with_parity(name, tmp_path):
    if name in FAST:  # the suite's: in this process, from the run trained above when there is one
        from keras_resnet.export import export_all

        size = max(8, _smallest_input(name))
        run_dir = SAVED.get(name)
        if run_dir is None:
            run_dir = tmp_path / "run"
            assert train_main(_train_args(name, size, run_dir)) == 0
        report = export_all(str(run_dir), str(tmp_path / "exports"), EXPORT_FORMATS,
                            **EXPORT_OPTIONS, progress=lambda *a, **k: None)
    else:
        # The full matrix's: trained and exported in a child process of its own, whose memory
        # is returned when it ends (seven families' big models exported in one process took
        # more than 9 GB, and the kernel killed it). The smallest input, computed as above.
        stem, stages = (1, 3) if family(name)[1] == "cifar" else (4, 4)
        size = max(8, stem * 2 ** (stages - 1))
        args = [str(tmp_path / "run"), str(tmp_path / "exports"),
                json.dumps(_train_args(name, size, tmp_path / "run"))]
        argv, env = python_command(args, code=EXPORT_CHILD)
        env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=1800)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, proc.stderr[-3000:]
        report = json.loads(lines[-1][len("RESULT "):])
        assert report["code"] == 0, report
    assert report["passed"], report["failures"]
    kinds = {(a["format"], a.get("precision")) for a in report["artifacts"]}
    assert {("tflite", "fp32"), ("onnx", "fp32")} <= kinds
    assert any(k[0] == "savedmodel" for k in kinds)
    for a in report["artifacts"]:
        if a["format"] != "keras":
            assert os.path.exists(a["path"]), a


def test_the_registry_recommends_adamw_for_plain_networks_of_100_layers_or_more():
    deep = {n for n in NAMES if kr.registry.recommended_settings(n)}
    assert deep == {n for n in NAMES if family(n)[0] == "plain" and _depth(n) >= 100}
    import keras

    for name, layers in (("plain56", 56), ("plain101", 101)):  # the name's depth is the network's
        model = kr.resolve_model(name)(input_shape=(32, 32, 3), classes=3)
        assert sum(isinstance(lay, (keras.layers.Conv2D, keras.layers.Dense))
                   for lay in model.layers) == layers
    assert deep >= {"plain101", "plain200"} and "plain56" not in deep and "ResNet101" not in deep
    assert kr.registry.recommended_settings("plain1202") == {"optimizer": "adamw", "lr": 1e-3}
    assert kr.registry.recommended_settings("Plain-152") == {"optimizer": "adamw", "lr": 1e-3}
    with pytest.raises(kr.registry.UnknownModelError, match="plain7"):
        kr.registry.recommended_settings("plain7")
