"""Augmentation: stateless random ops, so that a ``(seed, epoch, record)`` triple fixes every
draw."""

import tensorflow as tf

from .base import AUGMENTATIONS


def _pad_crop_flip(image, seed, pad, flip):
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.stack([h, w, shape[2]]), seed=seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    return image


def _random_resized_crop(image, size, seed):
    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bbox, seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(image, [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


CENTER_CROP_FRACTION = 0.875  # evaluation: resize to size / 0.875, then the centre crop


def _center_crop(image, size, crop_fraction=CENTER_CROP_FRACTION):
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = (size / crop_fraction) / tf.minimum(h, w)
    new_h = tf.cast(tf.round(h * scale), tf.int32)
    new_w = tf.cast(tf.round(w * scale), tf.int32)
    image = tf.image.resize(image, [new_h, new_w], method="bilinear")
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def transform(image, input_shape, augment, training, seed=None):
    """One example's pixels -> ``input_shape`` pixels, augmented when ``training``.

    Presets: ``none``; ``shift`` (pad 1, random crop: small translations, no flip, for
    digits); ``cifar`` (pad 4, random crop, horizontal flip); ``imagenet`` (random
    resized crop and flip for training, resize + center crop 87.5% for evaluation).
    ``seed`` is a ``[2]`` int tensor for the stateless random ops.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r} is not supported; accepted: {', '.join(AUGMENTATIONS)}")
    h, w, c = input_shape
    if augment == "imagenet":
        image = _random_resized_crop(image, h, seed) if training else _center_crop(image, h)
    else:
        if image.shape[0] != h or image.shape[1] != w:
            image = tf.image.resize(image, [h, w], method="bilinear")
        if training and augment in ("shift", "cifar"):
            pad = 1 if augment == "shift" else max(1, h // 8)
            image = _pad_crop_flip(image, seed, pad, flip=augment == "cifar")
    image = tf.ensure_shape(image, [h, w, c])
    return image


def decode_random_crop(data, size, channels, seed):
    """Random-resized-crop of encoded ``data`` to ``size`` (+ flip), decoding only the crop
    for JPEGs (``decode_and_crop_jpeg``); other formats are decoded whole, then cropped.

    The crop window is the one :func:`transform`'s ``imagenet`` preset draws for the decoded
    image with the same ``seed``, so both give the same pixels.
    """
    def window(shape):
        bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
        begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, bbox, seed=seed, min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, crop

    def jpeg():
        begin, crop = window(tf.image.extract_jpeg_shape(data))
        box = tf.stack([begin[0], begin[1], crop[0], crop[1]])
        return tf.image.decode_and_crop_jpeg(data, box, channels=channels)

    def other():
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        begin, crop = window(tf.shape(image))
        return tf.slice(image, begin, crop)

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, channels])
    # resize takes the uint8 pixels as they are (float32 out, the same numbers as casting
    # first, without a float32 copy of the crop).
    image = tf.image.resize(image, [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
