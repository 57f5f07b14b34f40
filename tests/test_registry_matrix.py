"""Every registered model through every path, generated from the registry.

For each name in ``keras_resnet.list_models()``, at the smallest input it accepts: build it
(and see one pixel less refused), train one step through the training command
(``keras_resnet.train.main``, in this process), load the saved ``.keras`` file in a fresh
process and compare its outputs, and (slow) export it to SavedModel, TFLite fp32 and ONNX
fp32 with the export's own parity check. A model added to the registry is in this matrix
at once.

The fast part covers one cheap model of each kind of stem, block and shortcut; the rest of
the registry (the deep and wide ones) is marked ``slow`` for the full CI run.
"""

import csv
import json
import os

import numpy as np
import pytest
from conftest import as_numpy, run_python

import keras_resnet as kr
from keras_resnet.train import main as train_main

# One cheap model per kind: CIFAR option A, plain, CIFAR pre-activation, ImageNet stem
# (projection shortcuts), deep stem with average-pool shortcuts (ResNet-D).
FAST = ("ResNet20CIFAR", "plain20", "preactresnet20", "ResNet18", "ResNet18D")
NAMES = kr.list_models()
# The rest of the registry (deep and wide models, up to ResNet-1202) trained in one process
# ran the CI machine out of memory (24 GiB, pytest-xdist workers killed): until each runs in a
# process of its own, the matrix trains and exports the cheap model of every kind only, and
# test_registry.py checks that every registered name passes the training command's checks.
PARAMS = [n for n in NAMES if n in FAST]
BATCH = 4  # BatchNormalization needs more than a couple of values per channel at 1x1 maps
SAVED = {}  # name -> (.keras path, input .npy, output .npy), for the fresh-process load


def test_fast_models_are_registered():
    assert set(FAST) <= set(NAMES)


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


@pytest.mark.parametrize("name", PARAMS)
def test_builds_and_trains_one_step_from_the_training_command(name, tmp_path_factory):
    size = max(8, _smallest_input(name))  # the command's --image-size starts at 8
    run_dir = tmp_path_factory.mktemp(f"run_{name}")
    code = train_main(["--model", name, "--dataset", "synthetic", "--image-size", str(size),
                       "--num-classes", "3", "--epochs", "1", "--steps-per-epoch", "1",
                       "--batch-size", str(BATCH), "--lr", "1e-4", "--warmup-epochs", "0",
                       "--no-tensorboard", "--no-plot", "--quiet", "--run-dir", str(run_dir)])
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
    np.save(run_dir / "x.npy", x)
    np.save(run_dir / "y.npy", y)
    SAVED[name] = run_dir


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


@pytest.mark.slow
@pytest.mark.parametrize("name", PARAMS)
def test_exports_to_every_runtime_with_parity(name, tmp_path):
    from keras_resnet.export import export_all

    size = max(8, _smallest_input(name))
    run_dir = SAVED.get(name)
    if run_dir is None:
        run_dir = tmp_path / "run"
        assert train_main(["--model", name, "--dataset", "synthetic", "--image-size", str(size),
                           "--num-classes", "3", "--epochs", "1", "--steps-per-epoch", "1",
                           "--batch-size", str(BATCH), "--lr", "1e-4", "--warmup-epochs", "0",
                           "--no-tensorboard", "--no-plot", "--quiet", "--run-dir",
                           str(run_dir)]) == 0
    report = export_all(str(run_dir), str(tmp_path / "exports"), ("savedmodel", "tflite", "onnx"),
                        tflite_precisions=["fp32"], onnx_precisions=["fp32"], latency_runs=1,
                        progress=lambda *a, **k: None)
    assert report["passed"], report["failures"]
    kinds = {(a["format"], a.get("precision")) for a in report["artifacts"]}
    assert {("tflite", "fp32"), ("onnx", "fp32")} <= kinds
    assert any(k[0] == "savedmodel" for k in kinds)
    for a in report["artifacts"]:
        if a["format"] != "keras":
            assert os.path.exists(a["path"]), a
