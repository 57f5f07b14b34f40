"""Mixup and CutMix on a batch, with timm's ``Mixup`` semantics in batch mode.

One ``lambda`` per batch; the batch is mixed with itself reversed (example ``i`` with
example ``B-1-i``). With probability ``switch_prob`` (when both are enabled) the batch gets
CutMix instead of mixup: a box of side ``sqrt(1 - lambda)`` times the image's, centred
uniformly, clipped to the image (timm 1.0's ``rand_bbox``), is pasted from the reversed batch, and ``lambda`` is
corrected to ``1 - box area / image area``. Targets are one-hot (or the given soft labels),
label-smoothed (``on = 1 - s + s/K``, ``off = s/K``), then mixed:
``lambda * y + (1 - lambda) * y_reversed``.

Pure TensorFlow, deterministic in a stateless ``seed`` (shape ``[2]``): usable in a
``tf.function`` (on the accelerator) and in a ``tf.data`` map on batches.
"""

import tensorflow as tf


def smooth_targets(labels, num_classes, label_smoothing=0.0, dtype=tf.float32):
    """Integer class indices (shape ``[B]`` or ``[B, 1]``) or one-hot/soft labels
    (``[B, num_classes]``) -> smoothed targets ``y * (1 - s) + s / K``; for one-hot labels this
    is timm's ``one_hot(on_value=1 - s + s/K, off_value=s/K)``."""
    labels = tf.convert_to_tensor(labels)
    if labels.dtype.is_integer:
        labels = tf.reshape(labels, [-1])
        y = tf.one_hot(labels, num_classes, dtype=dtype)
    else:
        y = tf.cast(labels, dtype)
        if y.shape.rank != 2 or (y.shape[-1] is not None and y.shape[-1] != num_classes):
            raise ValueError(f"float labels must have shape [batch, {num_classes}], got "
                             f"{y.shape}; integer labels are class indices")
    s = float(label_smoothing)
    return y * (1.0 - s) + s / num_classes


def cutmix_box_at(height, width, lam, cy, cx):
    """timm's ``rand_bbox`` for a given centre ``(cy, cx)``: the box ``(top, bottom, left,
    right)`` (int32, bottom and right exclusive) of ``int(H sqrt(1-lam))`` by
    ``int(W sqrt(1-lam))`` pixels around the centre (``cut // 2`` before it, ``(cut + 1) // 2``
    from it), clipped to the image."""
    ratio = tf.sqrt(1.0 - tf.cast(lam, tf.float32))
    h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    cut_h = tf.cast(tf.cast(h, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(w, tf.float32) * ratio, tf.int32)
    cy, cx = tf.cast(cy, tf.int32), tf.cast(cx, tf.int32)
    top = tf.clip_by_value(cy - cut_h // 2, 0, h)
    bottom = tf.clip_by_value(cy + (cut_h + 1) // 2, 0, h)
    left = tf.clip_by_value(cx - cut_w // 2, 0, w)
    right = tf.clip_by_value(cx + (cut_w + 1) // 2, 0, w)
    return top, bottom, left, right


def cutmix_box(height, width, lam, seed):
    """:func:`cutmix_box_at` with the centre drawn uniformly over the image from ``seed``."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    cy = tf.random.stateless_uniform([], seeds[0], 0, tf.cast(height, tf.int32), tf.int32)
    cx = tf.random.stateless_uniform([], seeds[1], 0, tf.cast(width, tf.int32), tf.int32)
    return cutmix_box_at(height, width, lam, cy, cx)


def apply_mix(images, targets, lam, use_cutmix, box):
    """The deterministic part: mix ``images`` (``[B, H, W, C]``) and ``targets`` (already
    smoothed, ``[B, K]``) with their reversal. With ``use_cutmix`` the ``box`` ``(top,
    bottom, left, right)`` is pasted and ``lam`` is replaced by ``1 - box area / H W``; else
    the images are blended with ``lam``. Returns ``(images, targets, lam)``."""
    images = tf.convert_to_tensor(images)
    targets = tf.convert_to_tensor(targets)
    dtype = images.dtype
    x = tf.cast(images, tf.float32)
    flipped = tf.reverse(x, [0])
    shape = tf.shape(x)
    top, bottom, left, right = [tf.cast(b, tf.int32) for b in box]
    rows = tf.range(shape[1])[:, None, None]
    cols = tf.range(shape[2])[None, :, None]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    box_lam = 1.0 - area / tf.cast(shape[1] * shape[2], tf.float32)
    lam = tf.cast(lam, tf.float32)
    use_cutmix = tf.convert_to_tensor(use_cutmix, tf.bool)
    cut = tf.where(inside[None], flipped, x)
    blended = lam * x + (1.0 - lam) * flipped
    lam = tf.where(use_cutmix, box_lam, lam)
    out = tf.where(use_cutmix, cut, blended)
    if dtype.is_integer:
        out = tf.round(out)
    out = tf.cast(out, dtype)
    t = tf.cast(targets, tf.float32)
    mixed = lam * t + (1.0 - lam) * tf.reverse(t, [0])
    return out, tf.cast(mixed, targets.dtype), lam


def _beta(seed, alpha):
    seeds = tf.random.experimental.stateless_split(seed, 2)
    a = tf.random.stateless_gamma([], seeds[0], alpha=float(alpha))
    b = tf.random.stateless_gamma([], seeds[1], alpha=float(alpha))
    return a / (a + b)


def mix_params(seed, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0):
    """timm's ``Mixup._params_per_batch``: ``(lam, use_cutmix)`` for ``seed``. With
    probability ``1 - prob``, or when both alphas are 0, ``lam`` is 1 (no mixing)."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, "
                         f"{cutmix_alpha}")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return tf.constant(1.0), tf.constant(False)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = tf.random.stateless_uniform([], seeds[0]) < switch_prob
        lam = tf.where(use_cutmix, _beta(seeds[1], cutmix_alpha), _beta(seeds[2], mixup_alpha))
    elif mixup_alpha > 0:
        use_cutmix = tf.constant(False)
        lam = _beta(seeds[2], mixup_alpha)
    else:
        use_cutmix = tf.constant(True)
        lam = _beta(seeds[1], cutmix_alpha)
    active = tf.random.stateless_uniform([], seeds[3]) < prob
    return tf.where(active, lam, 1.0), use_cutmix & active


def mix_batch(images, labels, seed, num_classes, mixup_alpha=0.8, cutmix_alpha=1.0,
              switch_prob=0.5, prob=1.0, label_smoothing=0.1, return_lambda=False):
    """Mixup/CutMix a batch as timm's ``Mixup(mode="batch")``.

    ``images``: ``[B, H, W, C]``; ``labels``: int class indices ``[B]`` (or ``[B, 1]``) or
    one-hot/soft ``[B, num_classes]``; ``seed``: stateless seed, shape ``[2]``. Returns
    ``(images, soft_labels)`` (float32 ``[B, num_classes]``, each row summing to 1), plus the
    effective ``lambda`` when ``return_lambda``. Images keep their dtype (integer images are
    rounded after the blend)."""
    images = tf.convert_to_tensor(images)
    targets = smooth_targets(labels, num_classes, label_smoothing)
    seed = tf.cast(seed, tf.int64)
    lam, use_cutmix = mix_params(seed, mixup_alpha, cutmix_alpha, switch_prob, prob)
    shape = tf.shape(images)
    box = cutmix_box(shape[1], shape[2], lam, tf.random.experimental.stateless_fold_in(seed, 7))
    # lam == 1 (no mixing) leaves everything as it is: the box is then empty.
    out, mixed, lam = apply_mix(images, targets, lam, use_cutmix, box)
    if return_lambda:
        return out, mixed, lam
    return out, mixed


__all__ = ["mix_batch", "mix_params", "cutmix_box", "cutmix_box_at", "apply_mix", "smooth_targets"]
