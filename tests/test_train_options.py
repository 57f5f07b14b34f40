"""Recipe pieces (schedules, weight decay, presets), precision/XLA runs, evaluate-only mode,
determinism."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import training as kt
from conftest import run_train





def test_paper_step_schedule_cosine_and_warmup():
    # He et al. 2015: lr 0.1, divided by 10 at 32k and 48k of 64k iterations.
    step = kt.learning_rate_schedule(0.1, 64000, 0, "step", (0.5, 0.75))
    for s, want in ((0, 0.1), (31999, 0.1), (32000, 0.01), (47999, 0.01), (48000, 0.001),
                    (63999, 0.001)):
        assert abs(float(step(s)) - want) < 1e-9 * max(1, want) + 1e-9, (s, float(step(s)))
    cos = kt.learning_rate_schedule(0.2, 1000, 100, "cosine")
    # linear warmup from lr/warmup_steps to lr over the warmup steps
    assert abs(float(cos(0)) - 0.2 / 100) < 1e-7
    assert abs(float(cos(49)) - (0.002 + (0.2 - 0.002) * 49 / 100)) < 1e-7
    assert abs(float(cos(100)) - 0.2) < 1e-6
    assert abs(float(cos(550)) - 0.1) < 1e-6  # half way through the cosine part
    assert float(cos(1000)) < 1e-9
    # the step schedule after the same warmup; constant: lr after it
    step = kt.learning_rate_schedule(0.2, 1000, 100, "step", (0.5, 0.75))
    for s, want in ((0, 0.002), (50, 0.101), (100, 0.2), (499, 0.2), (500, 0.02), (750, 0.002)):
        assert abs(float(step(s)) - want) < 1e-7, (s, float(step(s)))
    const = kt.learning_rate_schedule(0.2, 1000, 100, "constant")
    assert abs(float(const(50)) - 0.101) < 1e-7 and abs(float(const(900)) - 0.2) < 1e-7


def test_cifar_preset_is_the_papers_recipe():
    p = kt.PRESETS["cifar"]
    assert (p["batch_size"], p["lr"], p["momentum"], p["weight_decay"], p["iterations"]) == (
        128, 0.1, 0.9, 1e-4, 64000)
    assert p["schedule"] == "step" and tuple(p["step_boundaries"]) == (0.5, 0.75)
    assert p["model"] == "resnet20" and p["augment"] == "cifar"


def test_weight_decay_skips_batchnorm_and_biases():
    import keras

    model = kt.build_model("resnet20", (8, 8, 1), 10)
    decayed = kt.decayed_variables(model)
    kernels = [layer.kernel for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert {id(v) for v in decayed} == {id(v) for v in kernels}

    # AdamW with zero gradients: only decayed variables shrink, by lr * wd.
    cfg = kt.TrainConfig(optimizer="adamw", weight_decay=0.5, precision="float32")
    opt = kt.make_optimizer(cfg, 0.1, model)
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply([tf.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    for v, b in zip(model.trainable_variables, before):
        want = b * (1 - 0.1 * 0.5) if id(v) in {id(d) for d in decayed} else b
        np.testing.assert_allclose(v.numpy(), want, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_bfloat16_and_xla_run_on_cpu_and_evaluate_only(tmp_path):
    run_dir = tmp_path / "bf16"
    r = run_train(["--precision", "mixed_bfloat16", "--jit", "--epochs", "3", "--steps-per-epoch",
                "10", "--batch-size", "32", "--run-dir",
                str(run_dir), "--optimizer", "adamw", "--lr", "0.002", "--weight-decay", "0.01",
                "--label-smoothing", "0.1", "--schedule", "step"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mixed_bfloat16" in r.stdout
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["config"]["precision"] == "mixed_bfloat16" and info["config"]["jit"] is True
    losses = [float(line.split(",")[1]) for line in
              (run_dir / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]

    import keras

    import keras_resnet  # noqa: F401

    model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
    # What is saved is a float32 model whatever the training precision.
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}

    ev = run_train(["--evaluate", str(run_dir / "last.keras"), "--dataset", "digits"], tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert f"accuracy {info['test_accuracy']:.4f}" in ev.stdout

    # The run directory holds a finished 3-epoch run: other settings are refused (a larger
    # --epochs alone would extend it).
    before = (run_dir / "metrics.csv").read_bytes()
    r = run_train(["--epochs", "4", "--run-dir", str(run_dir)], tmp_path)
    assert r.returncode == 2
    assert "different settings" in r.stderr and "precision: 'mixed_bfloat16' -> 'float32'" in r.stderr
    assert "epochs: 3 -> 4" not in r.stderr
    assert (run_dir / "metrics.csv").read_bytes() == before


@pytest.mark.slow
def test_deterministic_runs_with_the_same_seed_are_identical(tmp_path):
    import keras

    import keras_resnet  # noqa: F401

    weights = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        r = run_train(["--deterministic", "--seed", str(seed), "--epochs", "1", "--steps-per-epoch",
                    "5", "--run-dir", str(tmp_path / name), "--no-plot", "--quiet"], tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        model = keras.saving.load_model(tmp_path / name / "last.keras", safe_mode=True)
        weights.append(model.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, c) for a, c in zip(weights[0], weights[2]))


@pytest.mark.slow
def test_validation_split_chooses_best_keras(tmp_path):
    run_dir = tmp_path / "val"
    r = run_train(["--val-split", "0.2", "--epochs", "4", "--batch-size", "64", "--run-dir",
                   str(run_dir), "--no-plot"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(1078 train / 269 validation / 450 test images)" in r.stdout
    rows = kt.read_metrics(run_dir / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    val_acc = [row["val_accuracy"] for row in rows]
    best_epoch = int(np.argmax(val_acc)) + 1  # first epoch with the highest validation accuracy
    assert info["best"]["epoch"] == best_epoch and info["best"]["selected_on"] == "validation"
    assert info["config"]["val_split"] == 0.2

    # best.keras is the model of that epoch: its accuracies on the held-out images are the
    # ones recorded for that epoch
    import keras

    import keras_resnet  # noqa: F401
    from keras_resnet import data as kdata

    split = kdata.with_validation(kdata.get_dataset("digits"), 0.2)
    model = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    for name, key in (("validation", "val_accuracy"), ("test", "test_accuracy")):
        x, y = split.arrays(name)
        probs = model.predict(kdata.apply_preprocessing(x, info["preprocessing"]), verbose=0)
        assert abs(float(np.mean(probs.argmax(1) == y)) - rows[best_epoch - 1][key]) < 1e-6

    # the split is a setting of the run: resuming with another one is refused
    r = run_train(["--val-split", "0.1", "--epochs", "4", "--batch-size", "64", "--run-dir",
                   str(run_dir)], tmp_path)
    assert r.returncode == 2 and "val_split: 0.2 -> 0.1" in r.stderr
