"""Input data: datasets, tf.data input pipelines, augmentation and preprocessing.

Conventions shared by training and export:

* images are NHWC float32 **pixels in 0..255**, whatever the source;
* a model's input is ``pixels * scale + offset`` (per channel), the dataset's
  :func:`preprocessing`; training applies it in the input pipeline and export bakes it
  into the serving signatures, so clients send pixels.

Datasets (``name`` arguments below; nothing is downloaded unless ``download=True``):

=================  =====================================================================
``digits``         scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images,
                   10 classes, a fixed stratified split (1,347 train / 450 test).
``cifar10``        CIFAR-10 / CIFAR-100 through ``keras.datasets`` (cached under
``cifar100``       ``~/.keras/datasets``; ``download=True`` fetches them).
``folder``         an image folder, ``data_dir/<class>/<image>``; with ``train/`` and
                   ``test/`` (or ``val/``, ``validation/``) sub-folders those are the splits,
                   otherwise a fixed stratified 80/20 split of each class.
``tfrecord``       ImageNet-style TFRecord files (``image/encoded``,
                   ``image/class/label``): ``data_dir`` holds ``train-*`` and
                   ``validation-*`` files.
``tfds:NAME``      any TensorFlow Datasets name that is already prepared in ``data_dir``
                   (or ``~/tensorflow_datasets``); ``download=True`` prepares it.
``synthetic``      random images of a fixed size, for throughput measurements.
=================  =====================================================================

:func:`make_dataset` is the one input pipeline (training, evaluation, calibration and the
benchmarks use it); :func:`write_tfrecords` (``keras-resnet-make-tfrecords``) turns an image
folder into the shuffled, sharded TFRecords the ``tfrecord`` dataset reads.

:func:`with_validation` carves a ``validation`` split out of any dataset's training split
(stratified for in-memory datasets, every k-th record for files), for choosing the best
model without looking at the test split.
"""

import glob
import os
import re
import tempfile

import numpy as np

from ._compat import keras
from .preprocessing import apply_preprocessing  # noqa: F401  (keras_resnet.data.apply_preprocessing)

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
FOLDER_TEST_FRACTION = 0.2
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DATASETS = ("digits", "cifar10", "cifar100", "folder", "tfrecord", "synthetic", "tfds:NAME")
AUGMENTATIONS = ("none", "shift", "cifar", "imagenet")
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]


class DataError(ValueError):
    """A dataset is missing, empty, unreadable or mis-specified (message says which)."""


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


def preprocessing_from_arrays(images):
    """``{"scale": [...], "offset": [...]}`` that standardises ``images`` per channel."""
    pixels = np.asarray(images, dtype="float64").reshape(-1, np.shape(images)[-1])
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) + 1e-6
    return {"scale": (1.0 / std).tolist(), "offset": (-mean / std).tolist()}


def _mean_std_preprocessing(mean, std):
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
        """Unbatched ``tf.data`` of ``(pixels float32 [h, w, c] or encoded bytes, label)``
        in the split's stored order (no shuffle).

        Array datasets yield pixels of ``input_shape``; file datasets may yield encoded
        images (see :meth:`decode`), which the pipeline decodes in parallel.
        """
        import tensorflow as tf

        src = self._source(split)
        if isinstance(src, _Indexed):
            ds = tf.data.Dataset.range(src.n).map(src.load, num_parallel_calls=tf.data.AUTOTUNE)
        elif isinstance(src, _Files):
            ds = tf.data.Dataset.from_tensor_slices(src.files).flat_map(src.read)
        else:
            ds = src.make()
        return ds.map(lambda x, y, name: (x, y))

    def _source(self, split):
        """Where a split's records come from: an :class:`_Indexed`, :class:`_Files` or
        :class:`_Stream` (see :func:`make_dataset`)."""
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


class ArrayDataset(Dataset):
    """A dataset held in memory as NumPy arrays (digits, CIFAR, synthetic)."""

    arrays_in_memory = True

    def __init__(self, name, arrays, class_names, preprocessing=None, augment="none"):
        self._arrays = arrays  # {"train": (x, y), "test": (x, y)}
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
        import tensorflow as tf

        x, y = self.arrays(split)
        xt, yt = tf.constant(x, tf.float32), tf.constant(y, tf.int64)
        name = tf.constant("")
        return _Indexed(len(y), lambda i: (tf.gather(xt, i), tf.gather(yt, i), name),
                        encoded=False)


def _check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not supported; accepted: 'train', 'test'")


def _digits():
    return ArrayDataset(
        "digits", {s: digits_arrays(s) for s in ("train", "test")},
        [str(i) for i in range(10)], augment="shift",
    )


def _keras_cache_dir():
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "datasets")


def _cifar(name, download):
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


def _synthetic(image_size, num_classes, channels=3, train_size=1024, test_size=256):
    rng = np.random.default_rng(0)
    size = image_size or 224
    classes = num_classes or 1000

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


VALIDATION_SEED = 0


def _check_fraction(fraction):
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
    _check_fraction(fraction)
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
        import tensorflow as tf

        if split not in ("train", "validation", "test"):
            raise ValueError(f"split={split!r} is not supported; accepted: 'train', "
                             "'validation', 'test'")
        base = self.base._source("train" if split != "test" else "test")
        if split == "test":
            return base
        k, want = self.every, split == "validation"
        if isinstance(base, _Indexed):
            kept = np.arange(base.n)
            kept = kept[(kept % k == 0) == want]
            index = tf.constant(kept, tf.int64)
            return _Indexed(len(kept), lambda i: base.load(tf.gather(index, i)), base.encoded)

        def every_kth(ds):  # per file for TFRecords: the same records whatever the file order
            ds = ds.enumerate().filter(lambda i, *ex: (i % k == 0) == want)
            return ds.map(lambda i, *ex: ex)

        if isinstance(base, _Files):
            return _Files(base.files, lambda f: every_kth(base.read(f)), base.encoded)
        return _Stream(lambda: every_kth(base.make()), base.encoded)

    def decode(self, item):
        return self.base.decode(item)

    @property
    def on_corrupt(self):
        return self.base.on_corrupt

    @property
    def unreadable(self):
        return self.base.unreadable


class FileDataset(Dataset):
    """Encoded images on disk (image folder, TFRecord, TFDS); decoded in the pipeline."""

    def __init__(self, name, image_size, channels, num_classes, class_names, sizes,
                 augment="imagenet", on_corrupt="fail"):
        if on_corrupt not in ("fail", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
        self.on_corrupt = on_corrupt
        self.unreadable = []  # paths of unreadable images met so far (on_corrupt="skip")
        if channels == 3:
            pre = _mean_std_preprocessing(IMAGENET_MEAN, IMAGENET_STD)
        else:
            pre = {"scale": [1 / 127.5] * channels, "offset": [-1.0] * channels}
        super().__init__(name, (image_size, image_size, channels), num_classes, class_names,
                         pre, augment, sizes)
        self.channels = channels

    def decode(self, item):
        import tensorflow as tf

        image = tf.io.decode_image(item, channels=self.channels, expand_animations=False)
        image = tf.cast(image, tf.float32)
        image.set_shape([None, None, self.channels])
        return image


class FolderDataset(FileDataset):
    """``data_dir/<class>/<image>`` (or ``data_dir/{train,test}/<class>/<image>``)."""

    def __init__(self, data_dir, image_size=None, channels=3, on_corrupt="fail",
                 progress=None):
        if not data_dir or not os.path.isdir(data_dir):
            raise DataError(f"--data-dir {data_dir!r} is not a directory; the folder dataset "
                            "needs data_dir/<class_name>/<image files>")
        if on_corrupt not in ("fail", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
        splits = {}
        test_name = next((d for d in ("test", "val", "validation")
                          if os.path.isdir(os.path.join(data_dir, d))), None)
        if os.path.isdir(os.path.join(data_dir, "train")) and test_name:
            class_names = _class_dirs(os.path.join(data_dir, "train"))
            for split, sub in (("train", "train"), ("test", test_name)):
                splits[split] = _list_images(os.path.join(data_dir, sub), class_names,
                                             every_class=split == "train")
        else:
            class_names = _class_dirs(data_dir)
            files = _list_images(data_dir, class_names)
            splits = _stratified_split(files)
        for split in ("train", "test"):
            if not splits[split]:
                raise DataError(f"the folder dataset {data_dir} has no {split} images")
        if progress:
            progress(f"found {sum(len(v) for v in splits.values())} images in "
                     f"{len(class_names)} classes in {data_dir} (read as training goes)")
        self._files = splits
        super().__init__("folder", image_size or 224, channels, len(class_names), class_names,
                         {s: len(v) for s, v in splits.items()}, on_corrupt=on_corrupt)
        self.data_dir = data_dir

    def files(self, split):
        """``[(path, label), ...]`` of a split, class by class (the listing order)."""
        _check_split(split)
        return list(self._files[split])

    def _source(self, split):
        import tensorflow as tf

        _check_split(split)
        paths = tf.constant([p for p, _ in self._files[split]])
        labels = tf.constant([y for _, y in self._files[split]], tf.int64)

        def load(i):
            path = tf.gather(paths, i)
            return tf.io.read_file(path), tf.gather(labels, i), path

        return _Indexed(len(self._files[split]), load, encoded=True)


def _class_dirs(root):
    names = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not names:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class_name>/<images>")
    return names


def _list_images(root, class_names, every_class=True):
    """``[(path, label)]`` of the images in ``root/<class>/``. With ``every_class`` (the
    folder that defines the classes) a class folder without images is refused: it would
    train a class the model can never learn."""
    files = []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        found = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found and every_class:
            raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add images to it or remove it (each sub-folder is a class)")
        files.extend((path, label) for path in found)
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class "
                        "sub-folders; the dataset is empty")
    return files


def _stratified_split(files):
    rng = np.random.default_rng(0)
    by_class = {}
    for p, y in files:
        by_class.setdefault(y, []).append((p, y))
    train, test = [], []
    for y in sorted(by_class):
        items = by_class[y]
        order = rng.permutation(len(items))
        n_test = int(round(len(items) * FOLDER_TEST_FRACTION)) if len(items) > 1 else 0
        test += [items[i] for i in order[:n_test]]
        train += [items[i] for i in order[n_test:]]
    return {"train": train, "test": test}


TFRECORD_CLASSES_FILE = "classes.txt"


class TFRecordDataset(FileDataset):
    """ImageNet-style TFRecords: ``image/encoded`` and ``image/class/label`` features."""

    def __init__(self, data_dir, num_classes, image_size=None, channels=3, label_offset=0,
                 on_corrupt="fail"):
        class_names = None
        listed = os.path.join(data_dir or "", TFRECORD_CLASSES_FILE)
        if os.path.isfile(listed):  # written by write_tfrecords
            with open(listed, encoding="utf-8") as f:
                class_names = [line.rstrip("\n") for line in f if line.strip()]
            if num_classes and num_classes != len(class_names):
                raise DataError(f"--num-classes {num_classes} disagrees with {listed} "
                                f"({len(class_names)} classes)")
            num_classes = len(class_names)
        if not num_classes:
            raise DataError("the tfrecord dataset needs --num-classes (labels are not scanned; "
                            f"no {TFRECORD_CLASSES_FILE} in {data_dir!r})")
        self._files = {}
        for split, patterns in (("train", ("train-*", "train*.tfrecord*")),
                                ("test", ("validation-*", "val-*", "test-*",
                                          "validation*.tfrecord*", "test*.tfrecord*"))):
            files = sorted({f for pat in patterns
                            for f in glob.glob(os.path.join(data_dir or "", pat))})
            if not files:
                raise DataError(
                    f"no {split} TFRecord files in {data_dir!r}; expected files named "
                    f"{' or '.join(patterns)}"
                )
            self._files[split] = files
        self.label_offset = int(label_offset)
        super().__init__("tfrecord", image_size or 224, channels, num_classes,
                         class_names or [str(i) for i in range(num_classes)],
                         {"train": None, "test": None},
                         on_corrupt=on_corrupt)

    def _source(self, split):
        import tensorflow as tf

        _check_split(split)
        features = {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        }
        offset = self.label_offset

        def read(path):
            def parse(i, record):
                ex = tf.io.parse_single_example(record, features)
                name = tf.strings.join([path, " record ", tf.strings.as_string(i)])
                return ex["image/encoded"], ex["image/class/label"] + offset, name

            return tf.data.TFRecordDataset(path, buffer_size=1 << 20).enumerate().map(parse)

        return _Files(list(self._files[split]), read, encoded=True)

    def file_count(self, split):
        return len(self._files[split])


class TFDSDataset(FileDataset):
    """A TensorFlow Datasets dataset that is already prepared (or ``download=True``)."""

    def __init__(self, tfds_name, data_dir=None, image_size=None, download=False):
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:
            raise DataError(f"tfds:{tfds_name} needs TensorFlow Datasets: "
                            "python3 -m pip install tensorflow-datasets") from e
        try:
            builder = tfds.builder(tfds_name, data_dir=data_dir)
        except Exception as e:
            raise DataError(f"unknown TFDS dataset {tfds_name!r}: {e}") from e
        prepared = os.path.exists(os.path.join(str(builder.data_dir), "dataset_info.json"))
        if not prepared:
            if not download:
                raise DataError(
                    f"TFDS dataset {tfds_name!r} is not prepared in {builder.data_dir}; "
                    f"prepare it with `tfds build {tfds_name}` or pass --download"
                )
            builder.download_and_prepare()
        info = builder.info
        splits = list(info.splits.keys())
        test_split = next((s for s in ("test", "validation") if s in splits), None)
        if "train" not in splits or test_split is None:
            raise DataError(f"TFDS dataset {tfds_name!r} has splits {splits}; need 'train' "
                            "and 'test' or 'validation'")
        self._builder, self._split_names = builder, {"train": "train", "test": test_split}
        image_key = next((k for k in ("image",) if k in info.features), None)
        if image_key is None or "label" not in info.features:
            raise DataError(f"TFDS dataset {tfds_name!r} has no 'image' and 'label' features")
        shape = info.features["image"].shape
        channels = shape[-1] or 3
        size = image_size or (shape[0] if shape[0] else 224)
        label = info.features["label"]
        super().__init__(f"tfds:{tfds_name}", size, channels, label.num_classes, label.names,
                         {s: info.splits[n].num_examples for s, n in self._split_names.items()},
                         augment="cifar" if size <= 64 else "imagenet")

    def _source(self, split):
        _check_split(split)
        import tensorflow as tf

        def make():
            ds = self._builder.as_dataset(split=self._split_names[split], shuffle_files=False,
                                          decoders=None)
            name = tf.constant(f"{self.name}:{self._split_names[split]}")
            return ds.map(lambda ex: (tf.cast(ex["image"], tf.float32),
                                      tf.cast(ex["label"], tf.int64), name),
                          num_parallel_calls=tf.data.AUTOTUNE)

        return _Stream(make, encoded=False, size=self.sizes.get(split))

    def decode(self, item):
        return item


def get_dataset(name="digits", data_dir=None, image_size=None, num_classes=None,
                on_corrupt="fail", download=False, label_offset=0, progress=None):
    """The dataset ``name`` (see the module docstring) as a :class:`Dataset`.

    Raises :class:`DataError` (a ``ValueError``) naming what is missing and how to get it.
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset={name!r} is not supported; accepted: {', '.join(DATASETS)}")
    if name == "digits":
        return _digits()
    if name in ("cifar10", "cifar100"):
        return _cifar(name, download)
    if name == "synthetic":
        return _synthetic(image_size, num_classes)
    if name == "folder":
        return FolderDataset(data_dir, image_size, on_corrupt=on_corrupt, progress=progress)
    if name == "tfrecord":
        return TFRecordDataset(data_dir, num_classes, image_size, label_offset=label_offset,
                               on_corrupt=on_corrupt)
    if name.startswith("tfds:") and len(name) > 5:
        return TFDSDataset(name[5:], data_dir, image_size, download)
    raise ValueError(f"dataset={name!r} is not supported; accepted: {', '.join(DATASETS)}")


# ----------------------------------------------------------------------------------------
# Folder -> TFRecords (keras-resnet-make-tfrecords)


def _tf_example(data, label, class_name, filename):
    import tensorflow as tf

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(data),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/class/text": b(class_name.encode()),
        "image/filename": b(filename.encode()),
    })).SerializeToString()


def write_tfrecords(data_dir, out_dir, images_per_shard=1024, seed=0, on_corrupt="fail",
                    overwrite=False, progress=None):
    """Writes the image folder ``data_dir`` (the ``folder`` dataset's layout and splits) as
    shuffled, sharded TFRecords in ``out_dir``: ``train-NNNNN-of-MMMMM`` and
    ``validation-NNNNN-of-MMMMM`` files of ``image/encoded`` (the file's bytes, not
    re-encoded), ``image/class/label`` (0-based), ``image/class/text`` and
    ``image/filename``, plus ``classes.txt`` (one class name a line), which is what the
    ``tfrecord`` dataset reads (no ``--num-classes`` or ``--label-offset`` needed).

    Every image is decoded once, in parallel, to check it; an unreadable one fails with
    its name (``on_corrupt="fail"``) or is left out (``"skip"``). Each split's files are
    shuffled with ``seed`` before sharding, so every shard holds every class. The output is
    written to a temporary folder that is renamed to ``out_dir`` at the end: a failure
    leaves nothing at ``out_dir``. ``progress(done, total)`` is called as records are
    written. Returns ``{"train": n, "validation": n, "skipped": [paths], "files": [...]}``.
    """
    import shutil

    import tensorflow as tf

    if isinstance(images_per_shard, bool) or not isinstance(images_per_shard, int) or images_per_shard < 1:
        raise ValueError(f"images_per_shard={images_per_shard!r} is not supported; expected a "
                         "positive integer")
    if on_corrupt not in ("fail", "skip"):
        raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
    if not out_dir:
        raise ValueError("out_dir is empty; expected the folder to write the TFRecords to")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise DataError(f"{out_dir} already exists; choose a new folder or pass --overwrite")
    folder = FolderDataset(data_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    total = folder.sizes["train"] + folder.sizes["test"]
    done, skipped, counts = 0, [], {}
    try:
        for split, prefix in (("train", "train"), ("test", "validation")):
            files = folder.files(split)
            order = np.random.default_rng([seed, 1 if split == "train" else 2]).permutation(len(files))
            files = [files[i] for i in order]

            def check(path):
                data = tf.io.read_file(path)
                ok = tf.data.Dataset.from_tensors(data).map(
                    lambda d: tf.shape(tf.io.decode_image(d, channels=3, expand_animations=False))[0] > 0
                ).ignore_errors().concatenate(tf.data.Dataset.from_tensors(False)).take(1)
                return data, ok.get_single_element()

            checked = tf.data.Dataset.from_tensor_slices([p for p, _ in files]).map(
                check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(64)
            planned = max(1, -(-len(files) // images_per_shard))
            names, writer, in_shard, n = [], None, 0, 0
            try:
                for (path, label), (data, ok) in zip(files, checked.as_numpy_iterator()):
                    done += 1
                    if progress:
                        progress(done, total)
                    if not ok:
                        if on_corrupt == "fail":
                            raise DataError(f"unreadable image {path} (use --on-corrupt skip to "
                                            "leave such images out)")
                        skipped.append(path)
                        continue
                    if writer is None:  # one shard open at a time: memory stays flat
                        names.append(f"{prefix}-{len(names):05d}-of-{planned:05d}")
                        writer = tf.io.TFRecordWriter(os.path.join(tmp, names[-1]))
                    writer.write(_tf_example(data, label, folder.class_names[label],
                                             os.path.relpath(path, data_dir)))
                    in_shard, n = in_shard + 1, n + 1
                    if in_shard == images_per_shard:
                        writer.close()
                        writer, in_shard = None, 0
            finally:
                if writer is not None:
                    writer.close()
            if not names:
                raise DataError(f"{data_dir} has no readable {split} images")
            if len(names) < planned:  # skipped images left fewer shards than planned
                for i, name in enumerate(names):
                    os.rename(os.path.join(tmp, name),
                              os.path.join(tmp, f"{prefix}-{i:05d}-of-{len(names):05d}"))
            counts[split] = n
        with open(os.path.join(tmp, TFRECORD_CLASSES_FILE), "w", encoding="utf-8") as f:
            f.write("".join(f"{c}\n" for c in folder.class_names))
        if os.path.exists(out_dir):  # overwrite: set the old folder aside, then swap
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "x"))
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"train": counts["train"], "validation": counts["test"], "skipped": skipped,
            "files": sorted(os.listdir(out_dir))}


def make_tfrecords_main(argv=None):
    """``keras-resnet-make-tfrecords``: an image folder -> shuffled, sharded TFRecords."""
    import argparse
    import sys
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(
        prog="keras-resnet-make-tfrecords",
        description="Write an image folder (DATA_DIR/<class>/<image>, or DATA_DIR/train/... + "
        "DATA_DIR/test/...) as shuffled, sharded TFRecords that `train.py --dataset tfrecord "
        "--data-dir OUT_DIR` reads (train-*, validation-*, classes.txt).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data_dir", help="the image folder")
    p.add_argument("out_dir", help="the folder to create (written under a temporary name, "
                   "then renamed)")
    p.add_argument("--images-per-shard", type=int, default=1024,
                   help="records per file (ImageNet's 1.28M training images -> ~1,250 files)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding")
    p.add_argument("--on-corrupt", choices=("fail", "skip"), default="fail",
                   help="an unreadable image: fail naming it, or leave it out and count it")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    start, last = time.time(), [0.0]

    def bar(done, total):
        now = time.time()
        if now - last[0] < 0.2 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / max(now - start, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images "
                         f"{rate:.0f}/s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    try:
        out = write_tfrecords(args.data_dir, args.out_dir, args.images_per_shard, args.seed,
                              args.on_corrupt, args.overwrite, None if args.quiet else bar)
    except (ValueError, OSError) as e:
        sys.stderr.write("\n" if not args.quiet else "")
        print(f"keras-resnet-make-tfrecords: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out['train']} training and {out['validation']} validation images to "
          f"{os.path.abspath(args.out_dir)} ({len(out['files']) - 1} TFRecord files"
          + (f"; skipped {len(out['skipped'])} unreadable image(s)" if out["skipped"] else "")
          + ")")
    return 0


# ----------------------------------------------------------------------------------------
# Augmentation (stateless random ops: a (seed, epoch, index) triple fixes every draw)


def _pad_crop_flip(image, seed, pad, flip):
    import tensorflow as tf

    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.stack([h, w, shape[2]]), seed=seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    return image


def _random_resized_crop(image, size, seed):
    import tensorflow as tf

    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bbox, seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(image, [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


def _center_crop(image, size, crop_fraction=0.875):
    import tensorflow as tf

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
    import tensorflow as tf

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


# ----------------------------------------------------------------------------------------
# The input pipeline (training, evaluation, calibration, benchmarks and tests all use it)

SHUFFLE_WINDOW = 10_000  # records; TFRecord/TFDS streams, after their file order is shuffled
CACHE_BYTES = 512 * 2**20  # evaluation batches are kept in memory only when they fit this


class _Indexed:
    """Records addressable by index ``0..n-1`` (arrays in memory, the files of a folder):
    ``load(i) -> (pixels or encoded bytes, label, name)``. Shuffled as a whole every epoch."""

    def __init__(self, n, load, encoded):
        self.n, self.load, self.encoded = int(n), load, encoded


class _Files:
    """Records in a list of files (TFRecords): ``read(path) -> tf.data`` of
    ``(encoded bytes, label, name)``. Shuffled by file order, then within a window."""

    def __init__(self, files, read, encoded):
        self.files, self.read, self.encoded = list(files), read, encoded


class _Stream:
    """Records only readable in order (TFDS): ``make() -> tf.data``; shuffled in a window."""

    def __init__(self, make, encoded, size=None):
        self.make, self.encoded, self.size = make, encoded, size


def _decode_random_crop(data, size, channels, seed):
    """Random-resized-crop of encoded ``data`` to ``size`` (+ flip), decoding only the crop
    for JPEGs (``decode_and_crop_jpeg``); other formats are decoded whole, then cropped.

    The crop window is the one :func:`transform`'s ``imagenet`` preset draws for the decoded
    image with the same ``seed``, so both give the same pixels.
    """
    import tensorflow as tf

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
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


def _epoch_records(src, epoch, shuffle, seed, shard, deterministic):
    """One epoch's ``(key, item)`` records, shuffled for ``(seed, epoch)`` when ``shuffle``,
    this input pipeline's shard only. ``key`` (an int64 fixed per record whatever the
    order) keys the record's random augmentation; ``item`` goes to :func:`_load`."""
    import tensorflow as tf

    num, index = shard
    seeds = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    if isinstance(src, _Indexed):
        order = tf.range(src.n, dtype=tf.int64)
        if shuffle:  # the whole list of (cheap) indices: a true shuffle
            order = tf.random.experimental.stateless_shuffle(order, seed=seeds)
        ds = tf.data.Dataset.from_tensor_slices(order)
        if num > 1:  # each record is a file here, so this shards by file
            ds = ds.shard(num, index)
        return ds.map(lambda i: (i, i))
    if isinstance(src, _Files):
        files = tf.constant(src.files)
        if shuffle:
            files = tf.random.experimental.stateless_shuffle(files, seed=seeds)
        ds = tf.data.Dataset.from_tensor_slices(files)
        by_file = num > 1 and len(src.files) >= num  # AutoShardPolicy.FILE, done by hand
        if by_file:
            ds = ds.shard(num, index)
        n_files = -(-len(src.files) // num) if by_file else len(src.files)
        ds = ds.interleave(src.read, cycle_length=max(1, min(n_files, 16)), block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        if num > 1 and not by_file:  # fewer files than pipelines: AutoShardPolicy.DATA
            ds = ds.shard(num, index)
    else:
        ds = src.make()
        if num > 1:
            ds = ds.shard(num, index)
    ds = ds.enumerate()
    if shuffle:
        ds = ds.shuffle(SHUFFLE_WINDOW, seed=seeds[0] * 100003 + seeds[1],
                        reshuffle_each_iteration=False)
    return ds.map(lambda i, item: (i, item))


def make_dataset(dataset, split="train", batch_size=128, training=None, augment=None, seed=0,
                 epoch=0, preprocess=True, prefetch=True, *, epochs=1, steps_per_epoch=None,
                 skip_batches=0, shard=None, deterministic=None, shuffle=None, limit=None,
                 preprocessing=None, cache_bytes=CACHE_BYTES):
    """A batched ``tf.data.Dataset`` of ``(images, int32 labels)`` for one split: the one
    input pipeline of keras_resnet (the trainer, evaluation, export calibration and the
    benchmarks are built on it).

    ``training`` (default: ``split == "train"``) shuffles, augments with ``augment``
    (default: the dataset's preset) and drops each epoch's last partial batch. Images are
    preprocessed (``pixels * scale + offset``, ``preprocessing`` or the dataset's) unless
    ``preprocess=False``.

    Order: every epoch shuffles the whole list of records (images in memory, files of a
    folder) before anything is read; TFRecords shuffle their file order, interleave the
    files and shuffle records within a window of ``SHUFFLE_WINDOW``. Every random draw
    (order, crops, flips) is stateless and keyed on ``(seed, epoch, record)``.

    ``epochs`` consecutive epochs from ``epoch``, each ``steps_per_epoch`` batches (default:
    one pass); ``skip_batches`` skips the first batches of the first epoch without reading
    them (a resumed run's position). ``shard=(num, index)`` keeps this input pipeline's part
    of each epoch: by file (folders; TFRecords with at least ``num`` files), else by record.

    ``deterministic`` (default: True except when training on encoded files) fixes the
    order in which parallel work is delivered; with it, a ``(seed, epoch)`` pair gives the
    same batches in any run, and a resumed run the batches it would have seen. Without it,
    neighbouring images may trade places between batches (each keeps its augmentation).

    Memory: no decoded image is kept beyond the shuffle window and the prefetch buffers;
    files are read again each epoch (the OS page cache holds recently read files).
    Evaluation batches are cached only when they fit ``cache_bytes``.

    Encoded images that cannot be decoded take the dataset's ``on_corrupt`` path:
    ``"fail"`` stops iteration with TensorFlow's decoding error, which
    :func:`unreadable_image_error` turns into one naming the file; ``"skip"`` leaves them
    out and appends them to ``dataset.unreadable``.
    """
    import tensorflow as tf

    if not isinstance(dataset, Dataset):
        dataset = get_dataset(dataset)
    training = split == "train" if training is None else bool(training)
    shuffle = training if shuffle is None else bool(shuffle)
    augment = dataset.augment if augment is None else augment
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment={augment!r} is not supported; accepted: {', '.join(AUGMENTATIONS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not supported; expected a positive integer")
    src = dataset._source(split)
    encoded = src.encoded
    if deterministic is None:
        deterministic = not (training and encoded)
    num, index = shard or (1, 0)
    shape, channels = dataset.input_shape, dataset.input_shape[-1]
    pre = preprocessing or dataset.preprocessing
    if steps_per_epoch is None and training and isinstance(src, _Indexed):
        local = len(range(index, src.n, num))
        steps_per_epoch = local // batch_size
        if steps_per_epoch < 1:
            raise DataError(f"batch_size={batch_size} is larger than the {split} split of "
                            f"{dataset.name!r} ({local} images)")
    fused = encoded and training and augment == "imagenet"
    on_corrupt = dataset.on_corrupt
    unreadable = dataset.unreadable
    seed_ = tf.constant(int(seed), tf.int64)
    first_epoch = int(epoch)
    plain = tf.autograph.experimental.do_not_convert  # no Python control flow on tensors

    def pixels(e, key, raw):
        s = tf.stack([seed_ * 1000003 + e, key])
        if fused:
            x = _decode_random_crop(raw, shape[0], channels, s)
        else:
            x = dataset.decode(raw) if encoded else raw
            x = transform(x, shape, augment, training, seed=s)
        x = tf.ensure_shape(x, shape)
        if preprocess:
            x = apply_preprocessing(x, pre)
        return x

    def note_unreadable(name):
        path = name.numpy().decode(errors="replace")
        if path not in unreadable:
            unreadable.append(path)
        return False

    @plain
    def example(e, key, item):
        raw, label, name = src.load(item) if isinstance(src, _Indexed) else item
        label = tf.cast(label, tf.int32)
        if not encoded or on_corrupt == "fail":
            # The fast path: a decoding error ends iteration; unreadable_image_error()
            # then finds and names the file.
            return pixels(e, key, raw), label, True, name
        # on_corrupt="skip": an unreadable file must not end the pipeline. Decode in a
        # nested dataset that ignores the error and falls back to a placeholder marked not
        # ok (about 15% more CPU per image than the fast path).
        x, ok = _guarded(lambda r: pixels(e, key, r), raw, tf.zeros(shape, tf.float32))
        ok = tf.cond(ok, lambda: ok, lambda: tf.ensure_shape(
            tf.py_function(note_unreadable, [name], tf.bool), []))
        return x, label, ok, name

    def one_epoch(e):
        ds = _epoch_records(src, e, shuffle, seed_, (num, index), deterministic)
        if training and steps_per_epoch:
            if isinstance(src, _Indexed) and not (encoded and on_corrupt == "skip"):
                ds = ds.repeat().take(steps_per_epoch * batch_size)  # exact, before reading
            else:
                ds = ds.repeat(2)  # room for skipped files, or a short TFRecord shard
        if skip_batches:
            ds = ds.skip(tf.where(e == first_epoch, tf.cast(skip_batches * batch_size, tf.int64),
                                  tf.constant(0, tf.int64)))
        if limit is not None:
            ds = ds.take(limit)
        ds = ds.map(plain(lambda key, item: example(e, key, item)),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        if encoded and on_corrupt == "skip":
            ds = ds.filter(plain(lambda x, y, ok, name: ok))
        ds = ds.map(plain(lambda x, y, ok, name: (x, y)))
        ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=deterministic)
        if training and steps_per_epoch:
            ds = ds.take(tf.where(e == first_epoch, tf.cast(steps_per_epoch - skip_batches, tf.int64),
                                  tf.cast(steps_per_epoch, tf.int64)))
        return ds

    if epochs == 1:
        ds = one_epoch(tf.constant(first_epoch, tf.int64))
    else:
        ds = tf.data.Dataset.range(first_epoch, first_epoch + int(epochs)).flat_map(plain(one_epoch))
    if not training and cache_bytes:
        n = src.n if isinstance(src, _Indexed) else (src.size if isinstance(src, _Stream) else None)
        if n is not None and limit is not None:
            n = min(n, limit)
        if n is not None and n * int(np.prod(shape)) * 4 <= cache_bytes:
            ds = ds.cache()
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _guarded(fn, raw, fallback):
    """``(fn(raw), True)``, or ``(fallback, False)`` where ``fn`` raises."""
    import tensorflow as tf

    good = tf.data.Dataset.from_tensors(raw).map(lambda r: (fn(r), True)).ignore_errors()
    bad = tf.data.Dataset.from_tensors((fallback, False))
    return good.concatenate(bad).take(1).get_single_element()


def locate_unreadable(dataset, split="train", seed=0, epoch=0, shard=None, shuffle=None,
                      start=0):
    """The name (path) of the first record of ``split`` that cannot be decoded, in the
    order :func:`make_dataset` reads it for ``(seed, epoch, shard, shuffle)``, from position
    ``start`` of the epoch on; None when every one decodes. Decodes in parallel."""
    import tensorflow as tf

    src = dataset._source(split)
    if not src.encoded:
        return None
    shuffle = split == "train" if shuffle is None else shuffle
    channels = dataset.input_shape[-1]

    def check(key, item):
        raw, _, name = src.load(item) if isinstance(src, _Indexed) else item
        _, ok = _guarded(lambda r: tf.shape(tf.io.decode_image(
            r, channels=channels, expand_animations=False))[0], raw, tf.constant(0, tf.int32))
        return ok, name

    ds = _epoch_records(src, tf.constant(int(epoch), tf.int64), shuffle,
                        tf.constant(int(seed), tf.int64), shard or (1, 0), True)
    ds = ds.skip(max(0, int(start))).map(check, num_parallel_calls=tf.data.AUTOTUNE)
    for ok, name in ds.as_numpy_iterator():
        if not ok:
            return name.decode(errors="replace")
    return None


def unreadable_image_error(error, dataset, split="train", **where):
    """The :class:`DataError` naming the unreadable image behind ``error`` (a TensorFlow
    error raised while iterating :func:`make_dataset` of ``dataset``'s ``split``), or None
    when ``error`` is something else. ``where``: ``seed``, ``epoch``, ``shard``,
    ``shuffle``, ``start`` of that iteration, as for :func:`locate_unreadable`, which
    this calls (it decodes the split from ``start`` until it meets the file)."""
    import tensorflow as tf

    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                              tf.errors.UnknownError)):
        return None
    if not isinstance(dataset, Dataset) or not dataset._source(split).encoded:
        return None
    if isinstance(error, tf.errors.DataLossError):
        damaged = damaged_file(dataset, split)
        if damaged is not None:
            found = re.search(r"(truncated|corrupted) record at \d+", str(error))
            reason = found.group(0) if found else "its records cannot be read"
            return DataError(f"{damaged} is truncated or corrupt ({reason}); "
                             "write it again (keras-resnet-make-tfrecords) or remove it")
    name = locate_unreadable(dataset, split, **where)
    if name is None and where.get("start"):
        name = locate_unreadable(dataset, split, **dict(where, start=0))
    if name is None:
        return None
    return DataError(f"unreadable image {name} (use --on-corrupt skip to leave such images out)")


def damaged_file(dataset, split="train"):
    """The first file of ``dataset``'s ``split`` whose records cannot be read to the end
    (a truncated or corrupt TFRecord shard), or None."""
    import tensorflow as tf

    source = dataset._source(split)
    for path in getattr(source, "files", ()):
        try:
            for _ in source.read(path):
                pass
        except tf.errors.DataLossError:
            return path
    return None


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


# Arguments of get_dataset that a run records in run.json ("dataset_kwargs").
RUN_DATASET_ARGS = ("data_dir", "image_size", "num_classes", "label_offset", "on_corrupt")


def run_dataset_kwargs(run):
    """The :func:`get_dataset` arguments of a training run, from its ``run.json`` dict.

    Runs record them as ``dataset_kwargs``; for older run.json files the image size and
    class count are taken from ``input_shape`` and ``num_classes``.
    """
    kwargs = dict(run.get("dataset_kwargs") or {})
    name = str(run.get("dataset") or "")
    if name in ("folder", "tfrecord", "synthetic") or name.startswith("tfds:"):
        if "image_size" not in kwargs and run.get("input_shape"):
            kwargs["image_size"] = int(run["input_shape"][0])
        if name in ("tfrecord", "synthetic") and "num_classes" not in kwargs and run.get("num_classes"):
            kwargs["num_classes"] = int(run["num_classes"])
    return {k: v for k, v in kwargs.items() if k in RUN_DATASET_ARGS and v is not None}


def sample_photo_folder(root, per_class=60, size=64, seed=0):
    """Write a small real-photo folder dataset, ``root/<class>/<i>.jpg``, from the two
    photos scikit-learn ships (no download): class ``china`` and class ``flower``, each
    ``per_class`` random ``size``×``size`` JPEG crops (from 96-240 px windows, so scales
    vary). For trying the folder workflow end to end; returns ``root``."""
    import tensorflow as tf
    from sklearn.datasets import load_sample_images

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
