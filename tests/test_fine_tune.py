"""Fine-tuning pretrained weights on other classes: ``--init-from`` with a different head
(or none) keeps the backbone and builds a new head; ``--freeze-epochs`` trains the head
alone first (backbone and its BatchNormalization statistics untouched), then everything."""

import os

import numpy as np
import pytest

import keras
import keras_resnet as kr
from conftest import randomize_weights


def _jpeg_folder(root, classes=3, per_class=8, seed=0):
    """``root/<class>/<i>.jpg``: real JPEG files (PIL), a colour and a stripe per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(root / f"class{c}", exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(28, 48)), int(rng.integers(28, 48))
            img = rng.integers(0, 80, (h, w, 3)).astype("uint8")
            img[..., c] += 150
            img[:, (i + c * 5) % w] = 255
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.jpg", quality=90)
    return root


def _pretrained_like(rng, **kwargs):
    """A random-weight ImageNet ResNet-18 (1000 classes) whose features stay of order 1, as
    a trained model's do (zero-initialised residual branches), with BN moving statistics
    that are not the defaults (so that "unchanged" means something)."""
    model = kr.ResNet18(zero_init=True, **kwargs)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.8, 1.2, var.shape).astype("float32")])
    return model


def _backbone(model):
    """Every array of every layer but the head, moving statistics included."""
    return {v.path: np.array(v.numpy()) for layer in model.layers if layer.name != "predictions"
            for v in layer.weights}


def test_fine_tune_function_keeps_backbone_and_builds_a_new_head(tmp_path, rng):
    source = randomize_weights(kr.ResNet18(input_shape=(32, 32, 3)), rng, 0.0, 0.1)
    headless = kr.ResNet18(input_shape=(32, 32, 3), include_top=False, pooling="avg")
    for layer in headless.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    for src in (source, headless):
        model = kr.fine_tune(src, classes=3, classifier_activation=None)
        assert model.output_shape == (None, 3) and model.get_config()["include_top"]
        # Same features: the backbone is the source's, weight for weight.
        features = keras.Model(model.input, model.get_layer("avg_pool").output)
        ref = keras.Model(source.input, source.get_layer("avg_pool").output)
        np.testing.assert_array_equal(np.asarray(features(x)), np.asarray(ref(x)))
        # A fresh head: Keras's Dense default initialises the bias to zero.
        assert not np.any(model.get_layer("predictions").get_weights()[1])
    source.save(str(tmp_path / "r18.keras"))
    from_file = kr.fine_tune(str(tmp_path / "r18.keras"), classes=5)
    assert from_file.output_shape == (None, 5)
    # Growing keeps its own wording; a different backbone is refused in fine-tuning's.
    with pytest.raises(ValueError, match=r"cannot fine-tune from a different backbone "
                                         r"\(block: 'basic' -> 'bottleneck'\)"):
        from keras_resnet.growth import grow_into
        grow_into(source, kr.ResNet50(input_shape=(32, 32, 3), classes=3), fine_tune=True)


def test_set_backbone_trainable_freezes_batchnorm_in_inference_mode(rng):
    model = randomize_weights(kr.ResNet18(input_shape=(32, 32, 3), classes=3), rng)
    kr.set_backbone_trainable(model, False)
    assert [v.path for v in model.trainable_variables] == ["predictions/kernel",
                                                           "predictions/bias"]
    before = _backbone(model)
    x = rng.uniform(-2, 2, (4, 32, 32, 3)).astype("float32")
    # A training-mode call of a frozen model uses (and keeps) the moving statistics.
    np.testing.assert_allclose(np.asarray(model(x, training=True)),
                               np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-6)
    after = _backbone(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    kr.set_backbone_trainable(model, True)
    assert len(model.trainable_variables) > 2


@pytest.mark.slow  # ~25 s: two epochs of ResNet-18
def test_train_fine_tunes_a_1000_class_model_frozen_then_whole(tmp_path, rng, capsys):
    from keras_resnet.training import TrainConfig, train

    data = _jpeg_folder(tmp_path / "photos")
    source = _pretrained_like(rng, input_shape=(None, None, 3))
    source.save(str(tmp_path / "r18.keras"))
    original = _backbone(source)
    seen = {}

    def on_epoch_end(epoch, model):
        seen[epoch] = (_backbone(model), [np.array(w) for w in
                                          model.get_layer("predictions").get_weights()])

    result = train(TrainConfig(
        dataset="folder", data_dir=str(data), image_size=32, model="resnet18",
        init_from=str(tmp_path / "r18.keras"), freeze_epochs=1, epochs=2, batch_size=4,
        lr=0.01, backbone_lr_mult=0.1, run_dir=str(tmp_path / "run"), tensorboard=False,
        plot=False), on_epoch_end=on_epoch_end)
    out = capsys.readouterr().out
    assert (f"fine-tuning from {tmp_path / 'r18.keras'}: backbone of resnet18 kept (its "
            "1000-class head dropped), new 3-class head") in out
    assert "cannot grow" not in out and "deepen" not in out
    assert "backbone frozen for epochs 1-1" in out and "backbone unfrozen from epoch 2" in out

    frozen, head1 = seen[1]
    assert frozen.keys() == original.keys()
    changed = [k for k in original if not np.array_equal(original[k], frozen[k])]
    assert changed == []  # kernels, gammas, betas and BN moving statistics, bit for bit
    assert head1[0].shape == (512, 3) and np.any(head1[1] != 0)  # the head trained (bias from 0)
    whole, head2 = seen[2]
    moved = [k for k in original if not np.array_equal(original[k], whole[k])]
    assert any(k.endswith("moving_mean") for k in moved)  # BN in training mode again
    assert any(k.endswith("kernel") for k in moved)
    assert not np.array_equal(head1[0], head2[0])
    assert len(result.history) == 2

    import json

    with open(tmp_path / "run" / "run.json") as f:
        info = json.load(f)
    assert info["init_from"]["fine_tune"] is True
    assert info["init_from"]["source_head"] == "1000 classes"
    assert info["config"]["freeze_epochs"] == 1 and info["config"]["backbone_lr_mult"] == 0.1


@pytest.mark.parametrize("flags, message", [
    (["--freeze-epochs", "1"], "freeze_epochs=1 applies to fine-tuning; pass init_from"),
    (["--init-from", "SRC", "--backbone-lr-mult", "0.1", "--optimizer", "adamw"],
     "backbone_lr_mult=0.1 applies to optimizer 'sgd'"),
    (["--init-from", "SRC", "--freeze-epochs", "3", "--epochs", "2"],
     "freeze_epochs=3 is more than epochs=2"),
])
def test_fine_tuning_flags_are_checked(tmp_path, capsys, flags, message):
    from keras_resnet.train import main

    src = tmp_path / "src.keras"
    kr.resnet_cifar(8, input_shape=(8, 8, 1)).save(str(src))
    flags = [str(src) if f == "SRC" else f for f in flags]
    code = main(["--epochs", "1", *flags, "--run-dir", str(tmp_path / "run"), "--quiet"],
                prog="train.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1]
    assert not (tmp_path / "run").exists()


def test_backbone_lr_mult_is_exactly_a_lower_backbone_learning_rate(rng):
    """One SGD step (weight decay on): the backbone moves M times as far as without the
    multiplier, the head as far (SGD's update is -lr x gradient)."""
    import tensorflow as tf

    from keras_resnet.finetune import backbone_variables
    from keras_resnet.training import TrainConfig, decayed_variables, make_train_chunk

    x = rng.uniform(-1, 1, (8, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 8).astype("int32")
    cfg = TrainConfig(weight_decay=5e-4, label_smoothing=0.0)
    deltas = {}
    for mult in (1.0, 0.1):
        keras.utils.set_random_seed(0)
        model = kr.resnet_cifar(8, input_shape=(8, 8, 1), classes=3, classifier_activation=None)
        before = [np.array(v.numpy()) for v in model.trainable_variables]
        optimizer = keras.optimizers.SGD(0.1)
        optimizer.build(model.trainable_variables)
        batches = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
        chunk = make_train_chunk(tf.distribute.get_strategy(), model, optimizer, batches, cfg, 8,
                                 decayed_variables(model), 3, backbone=backbone_variables(model),
                                 lr_mult=mult)
        chunk(1)
        deltas[mult] = {v.path: v.numpy() - b for v, b in zip(model.trainable_variables, before)}
        # A delta read as new - old weights is off by up to one float32 spacing of the
        # weights (the rounding of the update and of the subtraction).
        ulp = {v.path: 2 * float(np.spacing(np.max(np.abs(b)).astype("float32")))
               for v, b in zip(model.trainable_variables, before)}
    head = {"predictions/kernel", "predictions/bias"}
    for path, full in deltas[1.0].items():
        want = full if path in head else 0.1 * full
        np.testing.assert_allclose(deltas[0.1][path], want, rtol=1e-5, atol=ulp[path],
                                   err_msg=path)
    assert any(np.any(d != 0) for p, d in deltas[0.1].items() if p not in head)
