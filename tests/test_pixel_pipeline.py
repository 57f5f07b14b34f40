"""The pixel pipeline: make_dataset delivers pixels (uint8 where they stay whole) and the
training model preprocesses them as its first layer. The model computes the same function
as when the preprocessing ran in tf.data, and a run started by the earlier pipeline (a
fixture made by that code, tests/data/make_old_pipeline_run.py) resumes with the same
result."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_python

from keras_resnet import data as kdata
from keras_resnet import training as kt

HERE = os.path.dirname(os.path.abspath(__file__))
OLD_RUN = os.path.join(HERE, "data", "old_pipeline_run")


def _batches(ds):
    return list(ds.as_numpy_iterator())


def test_default_batches_are_pixels_whose_affine_map_is_the_preprocessed_batches():
    ds = kdata.get_dataset("digits")
    kw = dict(seed=3, epoch=1, steps_per_epoch=2)
    pixels = _batches(kdata.make_dataset(ds, "train", 16, **kw))
    pre = _batches(kdata.make_dataset(ds, "train", 16, preprocess=True, **kw))
    assert len(pixels) == len(pre) == 2
    for (x, y), (xp, yp) in zip(pixels, pre):
        assert x.dtype == np.float32 and y.dtype == np.int32  # digits: 255/16 steps, not whole
        assert 0 <= x.min() and x.max() <= 255
        np.testing.assert_array_equal(y, yp)
        # The same float32 arithmetic as the tf.data path, in NumPy: bit for bit.
        np.testing.assert_array_equal(kdata.apply_preprocessing(x, ds.preprocessing), xp)


def _integer_dataset(offset=0.0):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (40, 8, 8, 3)).astype("float32") + offset
    y = rng.integers(0, 4, 40).astype("int64")
    arrays = {"train": (x[:32], y[:32]), "test": (x[32:], y[32:])}
    return kdata.ArrayDataset("ints", arrays, ["a", "b", "c", "d"], augment="cifar")


def test_whole_pixels_travel_as_uint8_and_augment_exactly_as_floats():
    whole, halves = _integer_dataset(), _integer_dataset(0.5)
    kw = dict(seed=1, epoch=2, steps_per_epoch=2)
    a = _batches(kdata.make_dataset(whole, "train", 8, **kw))
    b = _batches(kdata.make_dataset(halves, "train", 8, **kw))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == np.uint8 and xb.dtype == np.float32
        np.testing.assert_array_equal(ya, yb)
        # Padding is 0 in both; every other pixel is the same source pixel (+0.5 in b).
        np.testing.assert_array_equal(np.where(xa > 0, xa + 0.5, 0).astype("float32"), xb)
    # Evaluation without augmentation: the stored pixels, unchanged.
    x, _ = _batches(kdata.make_dataset(whole, "test", 8))[0]
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x, whole.arrays("test")[0])


def test_pixel_model_is_the_model_on_preprocessed_images():
    ds = kdata.get_dataset("digits")
    model = kt.build_model("resnet8", ds.input_shape, ds.num_classes, classifier_activation=None)
    wrapped = kt.pixel_model(model, ds.preprocessing)
    assert wrapped.trainable_variables == model.trainable_variables
    x, _ = _batches(kdata.make_dataset(ds, "test", 64))[0]
    want = model(kdata.apply_preprocessing(x, ds.preprocessing), training=False)
    np.testing.assert_array_equal(wrapped(x, training=False), want)
    ints = _integer_dataset()
    m8 = kt.build_model("resnet8", ints.input_shape, 4, classifier_activation=None)
    x8, _ = _batches(kdata.make_dataset(ints, "test", 8))[0]
    np.testing.assert_array_equal(
        kt.pixel_model(m8, ints.preprocessing)(tf.constant(x8), training=False),
        m8(kdata.apply_preprocessing(x8.astype("float32"), ints.preprocessing), training=False))


# The earlier pipeline's training, from the library's parts: the model without its
# preprocessing, fed make_dataset(preprocess=True), stepped by the trainer's own step.
# What tf.data computed per image (float32 pixels * scale + offset) and what the model's
# Rescaling layer computes per batch are the same float32 multiply then add, so the weights
# must agree bit for bit (no XLA here: jit=False, which could fuse them into one rounding).
_OLD_PATH = r"""
import json, sys
import numpy as np
import tensorflow as tf
from keras_resnet import data as kdata, training as kt
from keras_resnet.training import loop, recipe

config, run_dir, start = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
dataset = kdata.get_dataset(config["dataset"])
cfg = kt.TrainConfig(**config).resolved(dataset)
if start == "train":  # the new code's trainer: pixels, preprocessed in the model
    result = kt.train(kt.TrainConfig(run_dir=run_dir, **config))
    weights = result.model.get_weights()
else:  # the old arithmetic, from scratch or from a checkpoint prefix
    strategy = kt.make_strategy("auto")
    import keras
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    steps, epochs, batch = cfg.steps_per_epoch, cfg.epochs, cfg.batch_size
    with strategy.scope():
        model = kt.build_model(cfg.model, dataset.input_shape, dataset.num_classes,
                               classifier_activation=None)
        schedule = kt.learning_rate_schedule(cfg.lr, epochs * steps,
                                             int(round(cfg.warmup_epochs * steps)),
                                             cfg.schedule, cfg.step_boundaries)
        optimizer = kt.make_optimizer(cfg, schedule, model)
        optimizer.build(model.trainable_variables)
    first = 0
    if start != "scratch":
        tf.train.Checkpoint(model=model, optimizer=optimizer).restore(start).expect_partial()
        first = int(optimizer.iterations.numpy()) // steps

    def dataset_fn(ctx):
        return kdata.make_dataset(dataset, "train", batch, training=True, augment=cfg.augment,
                                  seed=cfg.seed, epoch=first, epochs=epochs - first,
                                  steps_per_epoch=steps, deterministic=True, preprocess=True)

    it = iter(strategy.distribute_datasets_from_function(dataset_fn))
    decayed = kt.decayed_variables(model) if cfg.optimizer == "sgd" and cfg.weight_decay else []
    chunk = kt.make_train_chunk(strategy, model, optimizer, it, cfg, batch, decayed,
                                dataset.num_classes)
    for _ in range((epochs - first) * steps):
        chunk(1)
    weights = model.get_weights()
np.savez(run_dir + ".npz", *weights)
"""

CONFIG = dict(dataset="digits", model="resnet8", epochs=2, steps_per_epoch=3, batch_size=16,
              lr=0.05, seed=0, deterministic=True, plot=False, tensorboard=False, verbose=0)


def _train(tmp_path, name, start, config=CONFIG):
    run_dir = str(tmp_path / name)
    argv = f"import sys\nsys.argv = ['x', {json.dumps(json.dumps(config))}, {run_dir!r}, {start!r}]\n"
    run_python(argv + _OLD_PATH, env={"CUDA_VISIBLE_DEVICES": ""}, cwd=str(tmp_path))
    with np.load(run_dir + ".npz") as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.slow  # three short trainings in processes of their own
def test_training_on_pixels_gives_the_weights_of_training_on_preprocessed_images(tmp_path):
    # 6 steps of SGD with momentum and weight decay; BN statistics included.
    new = _train(tmp_path, "new", "train")
    old = _train(tmp_path, "old", "scratch")
    _assert_same(new, old)
    assert not np.array_equal(new[0], _train(tmp_path, "other", "scratch",
                                             dict(CONFIG, seed=1))[0])


@pytest.mark.slow  # two short trainings in processes of their own
def test_a_run_of_the_earlier_pipeline_resumes_with_the_same_result(tmp_path):
    # The fixture: made by keras_resnet before this pipeline, stopped after epoch 1 of 2.
    run_dir = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, run_dir)
    prefix = str(run_dir / "checkpoint" / "ckpt-3")
    want = _train(tmp_path, "reference", prefix)  # epoch 2, the old arithmetic
    got = _train(tmp_path, "old_run", "train")  # the new trainer resumes the run
    _assert_same(got, want)
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["status"] == "finished" and info["epochs_finished"] == 2
    assert os.path.isfile(run_dir / "last.keras")
    # The resumed old run exports, and each export computes what its Keras model computes
    # on the run's own test split (the exporter's parity gates, in LiteRT and ONNX Runtime).
    from keras_resnet.export import export_all

    report = export_all(str(run_dir), str(tmp_path / "exports"), formats="tflite,onnx",
                        tflite_precisions="fp32", onnx_precisions="fp32", latency_runs=1,
                        progress=None)
    assert report["passed"], report
    assert {a["format"] for a in report["artifacts"]} >= {"tflite", "onnx"}
