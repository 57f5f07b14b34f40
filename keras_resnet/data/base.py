"""What every dataset shares: constants, :class:`DataError`, the :class:`Dataset` base
class and the three kinds of record source the input pipeline reads."""

import numpy as np
import tensorflow as tf


from .constants import (AUGMENTATIONS, CIFAR10_CLASSES, DATASETS, DIGITS_SPLIT_SEED,  # noqa: F401
                        DIGITS_TEST_FRACTION, FOLDER_TEST_FRACTION, IMAGE_EXTENSIONS,
                        IMAGENET_MEAN, IMAGENET_STD, DataError)


def preprocessing_from_arrays(images):
    """``{"scale": [...], "offset": [...]}`` that standardises ``images`` per channel."""
    pixels = np.asarray(images, dtype="float64").reshape(-1, np.shape(images)[-1])
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) + 1e-6
    return {"scale": (1.0 / std).tolist(), "offset": (-mean / std).tolist()}


def mean_std_preprocessing(mean, std):
    return {
        "scale": [1.0 / s for s in std],
        "offset": [-m / s for m, s in zip(mean, std)],
    }



# ----------------------------------------------------------------------------------------
# Datasets


class Dataset:
    """A dataset: its facts and a source of ``(pixels, label)`` examples per split.

    Attributes: ``name``, ``input_shape`` ``(H, W, C)`` the model sees, ``num_classes``,
    ``class_names``, ``preprocessing`` (``scale``/``offset``), ``augment`` (the default
    augmentation preset), ``sizes`` (``{"train": n, "test": n}``; None where unknown).
    """

    arrays_in_memory = False
    unreadable = ()

    def __init__(self, name, input_shape, num_classes, class_names, preprocessing, augment,
                 sizes):
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.class_names = [str(c) for c in class_names]
        self.preprocessing = preprocessing
        self.augment = augment
        self.sizes = sizes

    on_corrupt = "fail"

    def examples(self, split):
        """Unbatched ``tf.data`` of ``(pixels [h, w, c] or encoded bytes, label)`` in the
        split's stored order (no shuffle); pixels are uint8 where an in-memory dataset's
        are whole numbers 0..255, else float32.

        Array datasets yield pixels of ``input_shape``; file datasets may yield encoded
        images (see :meth:`decode`), which the pipeline decodes in parallel.
        """
        src = self._source(split)
        if isinstance(src, IndexedSource):
            ds = tf.data.Dataset.range(src.n).map(src.load, num_parallel_calls=tf.data.AUTOTUNE)
        elif isinstance(src, FileSource):
            ds = tf.data.Dataset.from_tensor_slices(src.files).flat_map(src.read)
        else:
            ds = src.make()
        return ds.map(lambda x, y, name: (x, y))

    def _source(self, split):
        """Where a split's records come from: an :class:`IndexedSource`, :class:`FileSource` or
        :class:`StreamSource` (see :func:`make_dataset`)."""
        raise NotImplementedError

    def decode(self, item):
        """Turns what :meth:`examples` yields into float32 pixels (identity for arrays)."""
        return item

    def describe(self):
        return {
            "dataset": self.name, "input_shape": list(self.input_shape),
            "num_classes": self.num_classes, "class_names": self.class_names,
            "preprocessing": self.preprocessing,
        }


def check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; accepted: 'train', 'test'")



# Record sources: how a split's records are addressed (see make_dataset)

class IndexedSource:
    """Records addressable by index ``0..n-1`` (arrays in memory, the files of a folder):
    ``load(i) -> (pixels or encoded bytes, label, name)``. Shuffled as a whole every epoch."""

    def __init__(self, n, load, encoded):
        self.n, self.load, self.encoded = int(n), load, encoded


class FileSource:
    """Records in a list of files (TFRecords): ``read(path) -> tf.data`` of
    ``(encoded bytes, label, name)``. Shuffled by file order, then within a window."""

    def __init__(self, files, read, encoded):
        self.files, self.read, self.encoded = list(files), read, encoded


class StreamSource:
    """Records only readable in order (TFDS): ``make() -> tf.data``; shuffled in a window."""

    def __init__(self, make, encoded, size=None):
        self.make, self.encoded, self.size = make, encoded, size
