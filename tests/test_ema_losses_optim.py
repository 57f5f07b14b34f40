"""WeightEMA against a NumPy average of the weights a real ``model.fit`` produced; the BCE
loss against timm's ``BinaryCrossEntropy``; ``keras.optimizers.Lamb`` against timm's
``Lamb``; LARS against its update rule written out in NumPy."""

import os

import numpy as np
import pytest
import tensorflow as tf

import keras_resnet as kr
from keras_resnet._compat import keras
from keras_resnet.training.ema import WeightEMA
from keras_resnet.training.losses import BinaryCrossEntropy, binary_cross_entropy
from keras_resnet.training.optimizers import LARS, make_lamb
from torch_libraries import libraries


def _digits(n=64):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:n, :, :, None] / 16.0).astype(np.float32)
    return x, d.target[:n].astype(np.int64)


class _Recorder(keras.callbacks.Callback):
    """The model's weights when training begins and after every batch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append([w.copy() for w in self.model.get_weights()])

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append([w.copy() for w in self.model.get_weights()])


def _model():
    keras.utils.set_random_seed(0)
    model = kr.resolve_model("resnet8")(input_shape=(8, 8, 1), classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return model


def _reference(seen, decays):
    avg = [w.astype(np.float64) for w in seen[0]]
    for weights, d in zip(seen[1:], decays):
        avg = [d * a + (1 - d) * w for a, w in zip(avg, weights)]
    return avg


def _close(got, want):
    for g, w in zip(got, want):  # float32 accumulation of a float64 reference
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_ema_matches_numpy_reference_over_fit(strategy):
    """Averages of trainable weights and BN moving statistics after 6 real SGD steps, under
    the default strategy and a one-replica MirroredStrategy."""
    x, y = _digits(96)
    if strategy == "mirrored":
        scope = tf.distribute.MirroredStrategy(["/cpu:0"]).scope()
    else:
        scope = tf.distribute.get_strategy().scope()
    with scope:
        model = _model()
    ema, rec = WeightEMA(decay=0.8), _Recorder()
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[ema, rec], verbose=0)
    assert len(rec.seen) == 7
    moving = [i for i, w in enumerate(model.weights) if "moving" in w.path]
    assert moving and any(not np.allclose(rec.seen[0][i], rec.seen[-1][i]) for i in moving)
    want = _reference(rec.seen, [0.8] * 6)
    _close(ema.averaged_weights(), want)
    averaged = ema.ema_model()
    _close(averaged.get_weights(), want)
    assert averaged is not model and ema.get_state()["step"] == 6


def test_ema_warmup_every_and_resume(tmp_path):
    """timm's warm-up decay ``1 - (1 + step) ** -2/3`` (capped by ``decay``), updates every
    2nd batch, and a second EMA resumed from the first's state mid-run ends equal to it;
    the averaged model saves and loads as a .keras file."""
    x, y = _digits()
    model = _model()
    ema, rec = WeightEMA(decay=0.5, warmup=True, every=2), _Recorder()
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[ema, rec], verbose=0)
    decays = [min(0.5, 1 - (1 + s) ** (-2 / 3)) for s in (1, 2)]
    _close(ema.averaged_weights(), _reference([rec.seen[0], rec.seen[2], rec.seen[4]], decays))
    assert ema.current_decay(1) == pytest.approx(decays[0])

    resumed = WeightEMA(decay=0.5, warmup=True, every=2)
    resumed.set_state(ema.get_state())
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[ema, resumed], verbose=0)
    _close(resumed.averaged_weights(), ema.averaged_weights())
    assert resumed.get_state()["step"] == ema.get_state()["step"] == 4

    path = os.path.join(tmp_path, "ema.keras")
    ema.ema_model().save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x[:8], verbose=0),
                               ema.ema_model().predict(x[:8], verbose=0), rtol=1e-5, atol=1e-6)


def test_ema_set_state_checks_the_model():
    model = _model()
    ema = WeightEMA()
    ema.build(model)
    with pytest.raises(ValueError, match="EMA state has 1 weights"):
        ema.set_state({"step": 0, "weights": [np.zeros(3)]})
    with pytest.raises(RuntimeError, match="no average yet"):
        WeightEMA().get_state()


def test_bce_matches_timm():
    """Mean over batch and classes, soft (mixup) targets, thresholded targets, class-index
    targets: the same values as timm's BinaryCrossEntropy (smoothing 0)."""
    import torch

    _, timm = libraries()
    from timm.loss import BinaryCrossEntropy as TimmBCE

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (8, 10)).astype(np.float32)
    soft = rng.dirichlet(np.ones(10) * 0.3, 8).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    for threshold in (None, 0.2):
        want = float(TimmBCE(smoothing=0.0, target_threshold=threshold)(
            torch.from_numpy(logits), torch.from_numpy(soft)))
        got = float(binary_cross_entropy(threshold, from_logits=True)(soft, logits))
        assert got == pytest.approx(want, rel=1e-6)
        probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
        got_p = float(binary_cross_entropy(threshold)(soft, probs.astype(np.float32)))
        assert got_p == pytest.approx(want, rel=1e-4)  # log of float32 probabilities
    want = float(TimmBCE(smoothing=0.0)(torch.from_numpy(logits), torch.from_numpy(labels)))
    got = float(binary_cross_entropy(from_logits=True)(labels, logits))
    assert got == pytest.approx(want, rel=1e-6)
    loss = binary_cross_entropy(0.2, from_logits=True)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, BinaryCrossEntropy) and again.target_threshold == 0.2
    assert again.from_logits


def test_keras_lamb_matches_timm_lamb():
    """``keras.optimizers.Lamb`` and timm's ``Lamb`` (no weight decay, trust ratio always on,
    no gradient clipping: the settings where the two define the same update) on the same
    gradients for 8 steps, within float32 rounding."""
    import torch

    _, timm = libraries()
    from timm.optim import Lamb

    rng = np.random.default_rng(1)
    shapes = [(3, 3, 4, 8), (8,), (5, 5)]
    init = [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]
    grads = [[rng.normal(0, 1, s).astype(np.float32) for s in shapes] for _ in range(8)]
    k_vars = [tf.Variable(w) for w in init]
    t_params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in init]
    k_opt = make_lamb(0.01)
    t_opt = Lamb(t_params, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                 max_grad_norm=None, always_adapt=True)
    for step in grads:
        k_opt.apply_gradients(zip([tf.constant(g) for g in step], k_vars))
        for p, g in zip(t_params, step):
            p.grad = torch.from_numpy(g.copy())
        t_opt.step()
    for k, t, w in zip(k_vars, t_params, init):
        moved = np.abs(t.detach().numpy() - w).max()
        assert moved > 1e-3
        np.testing.assert_allclose(k.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


def _lars_reference(w, grads, lr, momentum, wd, eeta, nesterov, decay, adapt):
    w = w.astype(np.float64)
    v = np.zeros_like(w)
    for g in grads:
        g = g.astype(np.float64) + (wd * w if decay else 0)
        trust = 1.0
        wn, gn = np.linalg.norm(w), np.linalg.norm(g)
        if adapt and wn > 0 and gn > 0:
            trust = eeta * wn / gn
        v = momentum * v + lr * trust * g
        w = w - (momentum * v + lr * trust * g if nesterov else v)
    return w


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_matches_numpy_reference(nesterov):
    """A kernel (weight decay and trust ratio), a bias (rank 1: neither) and a kernel whose
    path is excluded from both, over 5 steps."""
    rng = np.random.default_rng(2)
    kernel = keras.Variable(rng.normal(0, 0.3, (4, 6)).astype(np.float32), name="kernel")
    bias = keras.Variable(rng.normal(0, 0.3, (6,)).astype(np.float32), name="bias")
    skipped = keras.Variable(rng.normal(0, 0.3, (3, 3)).astype(np.float32), name="skip_me")
    variables = [kernel, bias, skipped]
    init = [v.numpy().copy() for v in variables]
    grads = [[rng.normal(0, 1, v.shape).astype(np.float32) for v in variables] for _ in range(5)]
    opt = LARS(learning_rate=0.5, momentum=0.9, weight_decay=0.01, eeta=0.02,
               nesterov=nesterov, exclude_from_weight_decay=["skip_me"])
    for step in grads:
        opt.apply_gradients(zip([tf.constant(g) for g in step], variables))
    flags = [(True, True), (False, False), (False, False)]
    for i, (var, (decay, adapt)) in enumerate(zip(variables, flags)):
        want = _lars_reference(init[i], [g[i] for g in grads], 0.5, 0.9, 0.01, 0.02,
                               nesterov, decay, adapt)
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-5, atol=1e-6)
    assert [opt.decays(v) for v in variables] == [True, False, False]


def test_lars_trains_and_serializes():
    x, y = _digits()
    model = _model()
    model.compile(optimizer=LARS(learning_rate=1.0, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    config = keras.optimizers.serialize(model.optimizer)
    again = keras.optimizers.deserialize(config)
    assert isinstance(again, LARS)
    assert again.get_config()["weight_decay"] == 1e-4 and again.eeta == 0.001
