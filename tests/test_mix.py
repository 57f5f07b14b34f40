"""keras_resnet.data.mix against timm's Mixup (batch mode) and against the label arithmetic
written out in NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import mix
from torch_libraries import libraries

K = 7


def _batch(b=6, h=12, w=16):
    """Example i is the constant i + 1 in every pixel, so every example differs from its
    reversed partner everywhere and a pasted box can be read back from the pixels."""
    images = np.broadcast_to(np.arange(1, b + 1, dtype=np.float32)[:, None, None, None],
                             (b, h, w, 3)).copy()
    labels = np.array([3, 0, 6, 3, 1, 5][:b], np.int64)
    return images, labels


def _smooth(labels, s):
    y = np.eye(K)[labels]
    return y * (1 - s) + s / K


@pytest.mark.parametrize("seed", range(12))
def test_label_arithmetic_is_exact(seed):
    """Soft labels sum to 1 and equal ``lam * y + (1 - lam) * y[::-1]`` with smoothing; for
    CutMix, ``lam`` equals one minus the fraction of pixels taken from the partner, for
    mixup every pixel is ``lam * x + (1 - lam) * x[::-1]``."""
    images, labels = _batch()
    out, soft, lam = mix.mix_batch(images, labels, tf.constant([seed, 2], tf.int64), K,
                                   label_smoothing=0.1, return_lambda=True)
    out, soft, lam = out.numpy(), soft.numpy(), float(lam)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-6)
    y = _smooth(labels, 0.1)
    np.testing.assert_allclose(soft, lam * y + (1 - lam) * y[::-1], atol=1e-6)
    flipped = images[::-1]
    pasted = (out == flipped) & (out != images)
    if pasted.any() and np.all((out == images) | pasted):  # cutmix
        frac = pasted[..., 0].mean(axis=(1, 2))
        np.testing.assert_allclose(frac, frac[0])
        assert lam == pytest.approx(1 - frac[0], abs=1e-7)
    else:
        np.testing.assert_allclose(out, lam * images + (1 - lam) * flipped, rtol=1e-6)


def test_one_hot_labels_and_probability():
    images, labels = _batch()
    seed = tf.constant([4, 4], tf.int64)
    a = mix.mix_batch(images, labels, seed, K)
    b = mix.mix_batch(images, np.eye(K, dtype=np.float32)[labels], seed, K)
    np.testing.assert_allclose(a[1], b[1], atol=1e-7)
    np.testing.assert_array_equal(a[0], b[0])
    out, soft = mix.mix_batch(images, labels, seed, K, prob=0.0, label_smoothing=0.2)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_allclose(soft, _smooth(labels, 0.2), atol=1e-7)
    with pytest.raises(ValueError, match=r"shape \[batch, 7\]"):
        mix.mix_batch(images, np.ones((6, 3), np.float32), seed, K)


def test_deterministic_in_tf_function_and_tf_data():
    images, labels = _batch()
    seeds = tf.constant([[i, 0] for i in range(5)], tf.int64)
    fn = tf.function(lambda x, y, s: mix.mix_batch(x, y, s, K))
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat(5)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(seeds))
    ds = ds.map(lambda xy, s: mix.mix_batch(xy[0], xy[1], s, K))
    outs = list(ds)
    for s, (dx, dy) in zip(seeds, outs):
        fx, fy = fn(images, labels, s)
        ex, ey = mix.mix_batch(images, labels, s, K)
        np.testing.assert_allclose(dx, ex, rtol=1e-6)
        np.testing.assert_allclose(fx, ex, rtol=1e-6)
        np.testing.assert_allclose(dy, ey, atol=1e-6)
        np.testing.assert_allclose(fy, ey, atol=1e-6)
    assert len({o[0].numpy().tobytes() for o in outs}) == 5


def test_draws_follow_timm():
    """Over 2000 seeds: CutMix chosen with probability ``switch_prob``; mixup's lambda is
    Beta(0.8, 0.8) (mean 1/2, variance 1/(4 (2a + 1)) = 0.0962), CutMix's Beta(1, 1)
    (variance 1/12); within 5 standard errors."""
    n = 2000
    seeds = tf.stack([tf.range(n, dtype=tf.int64), tf.ones([n], tf.int64)], 1)
    lam, cut = tf.function(lambda: tf.vectorized_map(
        lambda s: mix.mix_params(s, 0.8, 1.0, 0.3, 1.0), seeds))()
    lam, cut = lam.numpy(), cut.numpy()
    assert abs(cut.mean() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    for sel, var in [(~cut, 1 / (4 * 2.6)), (cut, 1 / 12)]:
        x = lam[sel]
        assert abs(x.mean() - 0.5) < 5 * np.sqrt(var / x.size)
        assert abs(x.var() - var) < 0.15 * var


def test_box_matches_timm_rand_bbox():
    """``cutmix_box_at`` with the centre timm draws gives timm's ``rand_bbox`` box."""
    libraries()
    from timm.data import mixup as timm_mixup

    for k, lam in enumerate([0.0, 0.13, 0.5, 0.77, 0.999]):
        for h, w in [(12, 16), (7, 9), (224, 160)]:
            np.random.seed(k)
            theirs = timm_mixup.rand_bbox((3, h, w), lam)
            np.random.seed(k)
            cy, cx = np.random.randint(0, h), np.random.randint(0, w)
            ours = [int(v) for v in mix.cutmix_box_at(h, w, lam, cy, cx)]
            assert ours == [int(v) for v in theirs], (lam, h, w)


@pytest.mark.parametrize("use_cutmix", [False, True])
def test_same_as_timm_mixup_given_lambda_and_box(use_cutmix):
    """timm's ``Mixup(mode="batch")`` with its lambda draw fixed (the one random choice we
    cannot share) and NumPy's seed fixed for its box: ``apply_mix`` with the same lambda and
    the box at the centre timm draws gives the same images and targets."""
    import torch

    libraries()
    from timm.data.mixup import Mixup

    images, labels = _batch(6, 12, 16)
    images = images + np.random.default_rng(0).uniform(0, 1, images.shape).astype(np.float32)
    for k, lam in enumerate([0.21, 0.5, 0.93]):
        mixer = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mode="batch",
                      label_smoothing=0.1, num_classes=K)
        mixer._params_per_batch = lambda: (lam, use_cutmix)
        np.random.seed(k)
        x, target = mixer(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                          torch.from_numpy(labels))
        np.random.seed(k)
        cy, cx = np.random.randint(0, 12), np.random.randint(0, 16)
        box = mix.cutmix_box_at(12, 16, lam, cy, cx)
        targets = mix.smooth_targets(labels, K, 0.1)
        out, soft, _ = mix.apply_mix(images, targets, lam, use_cutmix, box)
        np.testing.assert_allclose(out.numpy(), x.numpy().transpose(0, 2, 3, 1), rtol=1e-6)
        np.testing.assert_allclose(soft.numpy(), target.numpy(), atol=1e-6)


def test_arithmetic_seeds_cover_mixup_and_cutmix():
    kinds = {bool(mix.mix_params(tf.constant([s, 2], tf.int64))[1]) for s in range(12)}
    assert kinds == {False, True}
