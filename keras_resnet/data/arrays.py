"""Datasets held in memory as NumPy arrays: digits, CIFAR-10/100 and synthetic images."""

import os

import numpy as np
import tensorflow as tf

from .._compat import keras
from ..specs import MAX_CLASSES, MAX_INPUT_SIZE, check_memory
from .base import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, CIFAR10_CLASSES, DataError, Dataset, \
    IndexedSource, preprocessing_from_arrays


def digits_arrays(split):
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes).

    A fixed stratified split: 25% test (450 images), the rest train (1,347).
    Returns ``(images, labels)``: float32 ``[N, 8, 8, 1]`` pixels in 0..255 and int64.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; accepted: 'train', 'test'")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "the default digits data needs scikit-learn: pip install 'keras-residual[data]'"
        ) from e
    digits = load_digits()
    images = (digits.images.astype("float32") * (255.0 / 16.0))[..., None]
    labels = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return (x_train, y_train) if split == "train" else (x_test, y_test)


class ArrayDataset(Dataset):
    """A dataset held in memory as NumPy arrays (digits, CIFAR, synthetic)."""

    arrays_in_memory = True

    def __init__(self, name, arrays, class_names, preprocessing=None, augment="none"):
        self._arrays = arrays  # {"train": (x, y), "test": (x, y)}
        self._whole = {}  # split -> whether its pixels are whole numbers 0..255
        x_train, y_train = arrays["train"]
        if len(x_train) == 0 or len(arrays["test"][0]) == 0:
            raise DataError(f"dataset {name!r} is empty (train {len(x_train)}, test "
                            f"{len(arrays['test'][0])} images)")
        if preprocessing is None:
            preprocessing = preprocessing_from_arrays(x_train)
        super().__init__(
            name, x_train.shape[1:], len(class_names), class_names, preprocessing, augment,
            {s: len(a[0]) for s, a in arrays.items()},
        )

    def arrays(self, split):
        if split not in self._arrays:
            raise ValueError(f"split={split!r} is not supported; accepted: "
                             f"{', '.join(repr(k) for k in self._arrays)}")
        return self._arrays[split]

    def _source(self, split):
        x, y = self.arrays(split)
        # Whole pixel values 0..255 (CIFAR, photos) are held and delivered as uint8 where
        # the augmentation keeps them whole (see make_dataset): a quarter of the memory and
        # of the host-to-device copy, the same numbers once the model casts them.
        whole = self._whole.get(split)
        if whole is None:
            whole = self._whole[split] = _whole_pixels(x)
        xt = tf.constant(x, tf.uint8 if whole else tf.float32)
        yt = tf.constant(y, tf.int64)
        name = tf.constant("")
        return IndexedSource(len(y), lambda i: (tf.gather(xt, i), tf.gather(yt, i), name),
                        encoded=False)


def _whole_pixels(x):
    """Whether every value of ``x`` is a whole number in 0..255 (exactly a uint8)."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return True
    if x.size == 0 or not np.issubdtype(x.dtype, np.number):
        return False
    for i in range(0, len(x), 1024):  # in blocks: no full-size temporary
        block = x[i:i + 1024]
        if block.min() < 0 or block.max() > 255 or not np.array_equal(block, np.floor(block)):
            return False
    return True


def digits_dataset():
    return ArrayDataset(
        "digits", {s: digits_arrays(s) for s in ("train", "test")},
        [str(i) for i in range(10)], augment="shift",
    )


def _keras_cache_dir():
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "datasets")


def cifar_dataset(name, download):
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    cached = os.path.isdir(os.path.join(_keras_cache_dir(), folder))
    if not cached and not download:
        raise DataError(
            f"{name} is not cached in {_keras_cache_dir()} (looked for {folder}/); get it once "
            f"with --download (keras.datasets fetches ~170 MB from cs.toronto.edu), or "
            f"python3 -c \"import keras; keras.datasets.{name}.load_data()\", or use "
            f"tfds:{name} with TensorFlow Datasets"
        )
    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # network or corrupt cache
        raise DataError(f"could not load {name} through keras.datasets: {e}") from e
    classes = CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(100)]
    arrays = {
        "train": (x_train.astype("float32"), y_train.reshape(-1).astype("int64")),
        "test": (x_test.astype("float32"), y_test.reshape(-1).astype("int64")),
    }
    return ArrayDataset(name, arrays, classes, augment="cifar")


def synthetic_dataset(image_size, num_classes, channels=3, train_size=1024, test_size=256):
    size = image_size or 224
    classes = num_classes or 1000
    # Checked before anything is made: a billion class names, or 4096x4096 images held in
    # memory, would take minutes or the machine's memory before any later check.
    for name, value, low, high in (("num_classes", classes, 2, MAX_CLASSES),
                                   ("image_size", size, 8, MAX_INPUT_SIZE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise DataError(f"{name}={value!r} is not supported for the synthetic dataset; "
                            f"expected an integer in [{low}, {high:,}]")
    n = train_size + test_size
    check_memory(n * size * size * channels * 4,
                 f"the synthetic dataset ({n:,} float32 images of {size}x{size}x{channels} held in memory)",
                 "use a smaller --image-size")
    rng = np.random.default_rng(0)

    def make(n):
        # A small bank of random images repeated: cheap to hold, random to the model.
        bank = rng.uniform(0, 255, (min(n, 64), size, size, channels)).astype("float32")
        x = bank[np.arange(n) % len(bank)]
        y = rng.integers(0, classes, n).astype("int64")
        return x, y

    return ArrayDataset(
        "synthetic", {"train": make(train_size), "test": make(test_size)},
        [str(i) for i in range(classes)],
        preprocessing={"scale": [1 / 127.5] * channels, "offset": [-1.0] * channels},
    )
