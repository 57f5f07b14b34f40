"""Held-out and sampled pixels for evaluation and calibration, and a small real-photo folder."""

import os

import numpy as np
import tensorflow as tf

from .base import DataError, Dataset
from .catalog import get_dataset
from .diagnose import unreadable_image_error
from .pipeline import make_dataset


def _eval_pixels(dataset, split, limit=None, seed=None):
    xs, ys = [], []
    ds = make_dataset(dataset, split, 256, training=False, seed=seed or 0, preprocess=False,
                      shuffle=seed is not None and limit is not None, limit=limit,
                      cache_bytes=0)
    try:
        for x, y in ds.as_numpy_iterator():
            xs.append(x)
            ys.append(y)
    except Exception as e:
        err = unreadable_image_error(e, dataset, split, seed=seed or 0,
                                     shuffle=seed is not None and limit is not None)
        if err is None:
            raise
        raise err from None
    if not xs:
        raise DataError(f"dataset {dataset.name!r} has no {split} images")
    return np.concatenate(xs).astype("float32"), np.concatenate(ys).astype("int64")


def test_arrays(name="digits", **dataset_kwargs):
    """Held-out ``(pixels, labels)``: float32 NHWC pixels 0..255 of ``input_shape``
    (evaluation transform applied: resize / center crop), int64 labels.

    ``name`` is a dataset name or a :class:`Dataset`; other keyword arguments go to
    :func:`get_dataset` (``data_dir``, ``image_size``, ...).
    """
    dataset = name if isinstance(name, Dataset) else get_dataset(name, **dataset_kwargs)
    if dataset.arrays_in_memory:
        x, y = dataset.arrays("test")
        return x.astype("float32"), y.astype("int64")
    return _eval_pixels(dataset, "test")


def train_sample(name="digits", num_samples=100, seed=0, **dataset_kwargs):
    """``(pixels, labels)`` of ``num_samples`` training images (a seeded random draw):
    float32 NHWC pixels 0..255 of the dataset's ``input_shape``, not preprocessed, with the
    evaluation transform (no augmentation); int64 labels."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} is not supported; expected a positive integer")
    dataset = name if isinstance(name, Dataset) else get_dataset(name, **dataset_kwargs)
    if dataset.arrays_in_memory:
        x, y = dataset.arrays("train")
        idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:num_samples])
        return x[idx].astype("float32"), y[idx].astype("int64")
    return _eval_pixels(dataset, "train", limit=num_samples, seed=seed)


def representative_images(name="digits", num_samples=100, seed=0, **dataset_kwargs):
    """``num_samples`` training images (a seeded random draw) as float32 NHWC pixels
    0..255 of the dataset's ``input_shape``, not preprocessed: calibration data for
    quantization. Uses the evaluation transform (no augmentation).
    """
    return train_sample(name, num_samples, seed, **dataset_kwargs)[0]


def sample_photo_folder(root, per_class=60, size=64, seed=0):
    """Write a small real-photo folder dataset, ``root/<class>/<i>.jpg``, from the two
    photos scikit-learn ships (no download): class ``china`` and class ``flower``, each
    ``per_class`` random ``size``×``size`` JPEG crops (from 96-240 px windows, so scales
    vary). For trying the folder workflow end to end; returns ``root``."""
    from sklearn.datasets import load_sample_images  # scikit-learn: an optional extra

    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            side = int(rng.integers(96, 241))
            y, x = (int(rng.integers(0, photo.shape[k] - side)) for k in (0, 1))
            crop = tf.image.resize(photo[y:y + side, x:x + side], (size, size)).numpy()
            jpeg = tf.io.encode_jpeg(np.clip(np.round(crop), 0, 255).astype("uint8"), quality=90)
            tf.io.write_file(os.path.join(folder, f"{i:04d}.jpg"), jpeg)
    return root
