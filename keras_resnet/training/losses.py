"""Losses of modern ImageNet recipes."""

import tensorflow as tf

from .._compat import keras, register


@register(package="keras_resnet")
class BinaryCrossEntropy(keras.losses.Loss):
    """timm's ``BinaryCrossEntropy`` (ResNet strikes back): per-class sigmoid cross-entropy
    against soft or one-hot targets, averaged over classes and over the batch (timm's
    ``reduction="mean"`` over all ``batch x classes`` elements).

    ``target_threshold``: when set, targets become hard: 1 where ``target > threshold``,
    else 0 (RSB uses 0.2 with mixup/cutmix targets). ``from_logits``: ``y_pred`` are logits
    (timm's semantics, a model with ``classifier_activation=None``); otherwise ``y_pred``
    are per-class probabilities. Integer targets (class indices) are one-hot encoded.
    """

    def __init__(self, target_threshold=None, from_logits=False, name="binary_cross_entropy",
                 reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.target_threshold = None if target_threshold is None else float(target_threshold)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        if y_true.dtype.is_integer or (y_true.shape.rank is not None and y_pred.shape.rank is not None
                                       and (y_true.shape.rank < y_pred.shape.rank
                                            or y_true.shape[-1] != y_pred.shape[-1])):
            y_true = tf.one_hot(tf.reshape(tf.cast(y_true, tf.int32), [-1]),
                                tf.shape(y_pred)[-1], dtype=y_pred.dtype)
        y_true = tf.cast(y_true, y_pred.dtype)
        if self.target_threshold is not None:
            y_true = tf.cast(y_true > self.target_threshold, y_pred.dtype)
        if self.from_logits:
            per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred)
        else:
            eps = keras.backend.epsilon()
            p = tf.clip_by_value(y_pred, eps, 1.0 - eps)
            per_class = -(y_true * tf.math.log(p) + (1.0 - y_true) * tf.math.log(1.0 - p))
        return tf.reduce_mean(per_class, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(target_threshold=self.target_threshold, from_logits=self.from_logits)
        return config


def binary_cross_entropy(target_threshold=None, from_logits=False):
    """A :class:`BinaryCrossEntropy` loss (timm's, see there)."""
    return BinaryCrossEntropy(target_threshold=target_threshold, from_logits=from_logits)


__all__ = ["BinaryCrossEntropy", "binary_cross_entropy"]
