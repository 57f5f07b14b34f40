"""Datasets by name (:func:`get_dataset`), validation splits carved from training data, and
the dataset arguments a run records."""

import numpy as np
import tensorflow as tf

from .arrays import ArrayDataset, cifar_dataset, digits_dataset, synthetic_dataset
from .base import DATASETS, DataError, Dataset, FileSource, IndexedSource, StreamSource
from .on_disk import FolderDataset, TFDSDataset, TFRecordDataset
# The get_dataset arguments a run records in run.json (keras_resnet.rundir owns run.json).
from ..rundir import RUN_DATASET_ARGS  # noqa: F401
from ..rundir import dataset_kwargs as run_dataset_kwargs  # noqa: F401


VALIDATION_SEED = 0


def check_val_split(fraction):
    """Refuses a ``val_split`` that is not a fraction strictly between 0 and 1."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"val_split={fraction!r} is not supported; expected a fraction "
                         "0 < val_split < 1 of the training split")


def with_validation(dataset, fraction):
    """``dataset`` with a ``validation`` split taken out of its training split.

    In-memory datasets: ``round(fraction * n)`` images of each class, chosen with a fixed
    seed (the same images whatever the training seed). File datasets: every k-th training
    record, ``k = round(1 / fraction)`` (class-balanced for image folders, which list each
    class in turn). The test split is untouched; the preprocessing stays the dataset's.
    """
    check_val_split(fraction)
    if isinstance(dataset, ArrayDataset):
        x, y = dataset.arrays("train")
        rng = np.random.default_rng(VALIDATION_SEED)
        held = np.zeros(len(y), bool)
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            held[rng.permutation(idx)[: int(round(fraction * len(idx)))]] = True
        if not held.any() or held.all():
            raise DataError(f"val_split={fraction} leaves {int(held.sum())} of {len(y)} training "
                            f"images of {dataset.name!r} for validation; choose another fraction")
        arrays = {"train": (x[~held], y[~held]), "validation": (x[held], y[held]),
                  "test": dataset.arrays("test")}
        return ArrayDataset(dataset.name, arrays, dataset.class_names,
                            preprocessing=dataset.preprocessing, augment=dataset.augment)
    return _EveryKth(dataset, fraction)


class _EveryKth(Dataset):
    """A file dataset whose every k-th training record is the validation split."""

    def __init__(self, base, fraction):
        self.base = base
        self.every = max(2, int(round(1 / fraction)))
        n = base.sizes.get("train")
        sizes = dict(base.sizes)
        if n is not None:
            held = -(-n // self.every)
            if held >= n:  # ceil(n / k) >= 1, so only a one-image training split gets here
                raise DataError(f"val_split={fraction} leaves {held} of {n} training images "
                                f"of {base.name!r} for validation; choose another fraction")
            sizes.update(train=n - held, validation=held)
        else:
            sizes["validation"] = None
        super().__init__(base.name, base.input_shape, base.num_classes, base.class_names,
                         base.preprocessing, base.augment, sizes)
        self.arrays_in_memory = base.arrays_in_memory

    def _source(self, split):
        if split not in ("train", "validation", "test"):
            raise ValueError(f"split={split!r} is not supported; accepted: 'train', "
                             "'validation', 'test'")
        base = self.base._source("train" if split != "test" else "test")
        if split == "test":
            return base
        k, want = self.every, split == "validation"
        if isinstance(base, IndexedSource):
            kept = np.arange(base.n)
            kept = kept[(kept % k == 0) == want]
            index = tf.constant(kept, tf.int64)
            return IndexedSource(len(kept), lambda i: base.load(tf.gather(index, i)), base.encoded)

        def every_kth(ds):  # per file for TFRecords: the same records whatever the file order
            ds = ds.enumerate().filter(lambda i, *ex: (i % k == 0) == want)
            return ds.map(lambda i, *ex: ex)

        if isinstance(base, FileSource):
            return FileSource(base.files, lambda f: every_kth(base.read(f)), base.encoded)
        return StreamSource(lambda: every_kth(base.make()), base.encoded)

    def decode(self, item):
        return self.base.decode(item)

    @property
    def on_corrupt(self):
        return self.base.on_corrupt

    @property
    def unreadable(self):
        return self.base.unreadable


def get_dataset(name="digits", data_dir=None, image_size=None, num_classes=None,
                on_corrupt="fail", download=False, label_offset=0, progress=None):
    """The dataset ``name`` (see the module docstring) as a :class:`Dataset`.

    Raises :class:`DataError` (a ``ValueError``) naming what is missing and how to get it.
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset={name!r} is not supported; accepted: {', '.join(DATASETS)}")
    if name == "digits":
        return digits_dataset()
    if name in ("cifar10", "cifar100"):
        return cifar_dataset(name, download)
    if name == "synthetic":
        return synthetic_dataset(image_size, num_classes)
    if name == "folder":
        return FolderDataset(data_dir, image_size, on_corrupt=on_corrupt, progress=progress)
    if name == "tfrecord":
        return TFRecordDataset(data_dir, num_classes, image_size, label_offset=label_offset,
                               on_corrupt=on_corrupt)
    if name.startswith("tfds:") and len(name) > 5:
        return TFDSDataset(name[5:], data_dir, image_size, download)
    raise ValueError(f"dataset={name!r} is not supported; accepted: {', '.join(DATASETS)}")

