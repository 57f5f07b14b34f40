"""FusedBatchNormalization: the fused training step against Keras's own BatchNormalization
and a NumPy computation of the statistics, and the cases where it must not be used."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnet as kr


def _pair(policy, channels, momentum=0.9, epsilon=1e-5):
    layers = [
        cls(epsilon=epsilon, momentum=momentum, dtype=policy)
        for cls in (kr.FusedBatchNormalization, keras.layers.BatchNormalization)
    ]
    for layer in layers:
        layer.build((None, None, None, channels))
        layer.gamma.assign(np.linspace(0.5, 2.0, channels))
        layer.beta.assign(np.linspace(-1.0, 1.0, channels))
    return layers


def _step(layer, x, weights):
    """One training-mode call: output and the gradients of a weighted sum of it."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.cast(layer(x, training=True), "float32")
        loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [y.numpy()] + [g.numpy().astype("float32") for g in grads]


def _close(a, b, rtol):
    scale = max(float(np.max(np.abs(b))), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("policy,rtol", [("float32", 1e-5), ("mixed_bfloat16", 2e-2)])
@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (8, 3, 3, 16), (1, 2, 1, 4)])
def test_training_step_matches_keras_batchnorm(policy, rtol, shape, rng):
    fused, reference = _pair(policy, shape[-1])
    for _ in range(3):  # several steps: the moving statistics accumulate
        x = (rng.standard_normal(shape) * 3 + 2).astype("float32")
        weights = rng.standard_normal(shape).astype("float32")
        for got, want in zip(_step(fused, x, weights), _step(reference, x, weights)):
            _close(got, want, rtol)
    for name in ("moving_mean", "moving_variance"):
        _close(getattr(fused, name).numpy(), getattr(reference, name).numpy(), 1e-6)


def test_moving_statistics_use_the_biased_batch_variance(rng):
    """Keras's convention (the op itself reports the n/(n-1) corrected variance)."""
    layer = kr.FusedBatchNormalization(momentum=0.75, epsilon=1e-5)
    x = (rng.standard_normal((5, 4, 3, 6)) * 2 - 1).astype("float32")
    y = layer(x, training=True).numpy()
    flat = x.reshape(-1, 6).astype("float64")
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.25 * flat.mean(0), atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.75 + 0.25 * flat.var(0), atol=1e-6)
    want = (x - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(y, want, atol=1e-5)


@pytest.mark.parametrize("scale,center", [(False, True), (True, False), (False, False)])
def test_without_scale_or_offset(scale, center, rng):
    x = (rng.standard_normal((3, 4, 4, 5)) + 1).astype("float32")
    fused = kr.FusedBatchNormalization(scale=scale, center=center)
    reference = keras.layers.BatchNormalization(scale=scale, center=center)
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-5)
    np.testing.assert_allclose(fused.moving_variance, reference.moving_variance, atol=1e-6)


def test_single_value_per_channel(rng):
    """n = 1: zero variance, so the output is beta and the moving variance only decays."""
    layer = kr.FusedBatchNormalization(momentum=0.9, beta_initializer="ones")
    x = rng.standard_normal((1, 1, 1, 4)).astype("float32")
    np.testing.assert_allclose(layer(x, training=True), np.ones((1, 1, 1, 4)), atol=1e-6)
    np.testing.assert_allclose(layer.moving_mean, 0.1 * x.reshape(4), atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance, np.full(4, 0.9), atol=1e-6)


def _op_types(layer, training, shape=(2, 4, 4, 3)):
    fn = tf.function(lambda x: layer(x, training=training))
    return {op.type for op in fn.get_concrete_function(tf.TensorSpec(shape)).graph.get_operations()}


def test_fused_op_only_in_training_steps():
    layer = kr.FusedBatchNormalization()
    layer.build((None, 4, 4, 3))
    assert "FusedBatchNormV3" in _op_types(layer, True)
    # inference keeps Keras's graph, which the exporters convert
    assert "FusedBatchNormV3" not in _op_types(layer, False)
    layer.trainable = False  # frozen BN normalises with the moving statistics
    assert "FusedBatchNormV3" not in _op_types(layer, True)


def test_falls_back_where_the_fused_op_does_not_apply(rng):
    synced = kr.FusedBatchNormalization(synchronized=True)
    synced.build((None, 4, 4, 3))
    assert "FusedBatchNormV3" not in _op_types(synced, True)
    dense = kr.FusedBatchNormalization()  # 2-D input: the parent's computation
    x = rng.standard_normal((16, 5)).astype("float32")
    reference = keras.layers.BatchNormalization()
    np.testing.assert_allclose(dense(x, training=True), reference(x, training=True), atol=1e-6)
    np.testing.assert_allclose(dense.moving_variance, reference.moving_variance, atol=1e-6)


def test_models_and_layers_use_it_and_serialise_it(tmp_path, rng):
    model = kr.ResNet20CIFAR(classes=10)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 19 and all(type(b) is kr.FusedBatchNormalization for b in bns)
    assert type(kr.ProjectionShortcut(8).bn) is kr.FusedBatchNormalization

    layer = kr.FusedBatchNormalization(epsilon=1e-3, momentum=0.8, center=False)
    clone = kr.FusedBatchNormalization.from_config(layer.get_config())
    assert (clone.epsilon, clone.momentum, clone.center) == (1e-3, 0.8, False)

    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(rng.standard_normal((16, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 16),
              epochs=1, verbose=0)  # moves the statistics away from their initial values
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = rng.standard_normal((2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
