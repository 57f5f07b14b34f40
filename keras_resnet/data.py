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

:func:`with_validation` carves a ``validation`` split out of any dataset's training split
(stratified for in-memory datasets, every k-th record for files), for choosing the best
model without looking at the test split.
"""

import glob
import os

import numpy as np

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


def apply_preprocessing(images, preprocessing):
    """``images * scale + offset`` (works on NumPy arrays and tensors)."""
    scale = np.asarray(preprocessing["scale"], dtype="float32")
    offset = np.asarray(preprocessing["offset"], dtype="float32")
    return images * scale + offset


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

    def __init__(self, name, input_shape, num_classes, class_names, preprocessing, augment,
                 sizes):
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.class_names = [str(c) for c in class_names]
        self.preprocessing = preprocessing
        self.augment = augment
        self.sizes = sizes

    def examples(self, split):
        """Unbatched ``tf.data`` of ``(pixels float32 [h, w, c] or encoded bytes, label)``.

        Array datasets yield pixels of ``input_shape``; file datasets may yield encoded
        images (see :meth:`decode`), which the pipeline decodes in parallel.
        """
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

    def examples(self, split):
        import tensorflow as tf

        x, y = self.arrays(split)
        return tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("int64")))


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
    import keras

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

    def examples(self, split):
        if split not in ("train", "validation", "test"):
            raise ValueError(f"split={split!r} is not supported; accepted: 'train', "
                             "'validation', 'test'")
        if split == "test":
            return self.base.examples("test")
        k, want = self.every, split == "validation"
        ds = self.base.examples("train").enumerate()
        return ds.filter(lambda i, ex: (i % k == 0) == want).map(lambda i, ex: ex)

    def decode(self, item):
        return self.base.decode(item)


class FileDataset(Dataset):
    """Encoded images on disk (image folder, TFRecord, TFDS); decoded in the pipeline."""

    def __init__(self, name, image_size, channels, num_classes, class_names, sizes,
                 augment="imagenet"):
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
                splits[split] = _list_images(os.path.join(data_dir, sub), class_names)
        else:
            class_names = _class_dirs(data_dir)
            files = _list_images(data_dir, class_names)
            splits = _stratified_split(files)
        self.skipped = []
        if progress:
            progress(f"checking {sum(len(v) for v in splits.values())} images in {data_dir} ...")
        for split in ("train", "test"):
            good, bad = _verify_images([p for p, _ in splits[split]], channels)
            if bad:
                if on_corrupt == "fail":
                    raise DataError(
                        f"{len(bad)} unreadable image(s) in {data_dir}, first: {bad[0]} "
                        "(use --on-corrupt skip to leave them out)"
                    )
                self.skipped += bad
                if progress:
                    for b in bad:
                        progress(f"skipping unreadable image {b}")
                splits[split] = [(p, y) for p, y in splits[split] if p in good]
            if not splits[split]:
                raise DataError(f"the folder dataset {data_dir} has no readable {split} images")
        if progress and self.skipped:
            progress(f"skipped {len(self.skipped)} unreadable image(s) in {data_dir}")
        self._files = splits
        super().__init__("folder", image_size or 224, channels, len(class_names), class_names,
                         {s: len(v) for s, v in splits.items()})
        self.data_dir = data_dir

    def examples(self, split):
        import tensorflow as tf

        _check_split(split)
        paths = [p for p, _ in self._files[split]]
        labels = np.asarray([y for _, y in self._files[split]], dtype="int64")
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        return ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=tf.data.AUTOTUNE)


def _class_dirs(root):
    names = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not names:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class_name>/<images>")
    return names


def _list_images(root, class_names):
    files = []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                files.append((os.path.join(folder, f), label))
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


def _verify_images(paths, channels):
    """Decodes every file once (in parallel); returns (set of good paths, sorted bad paths)."""
    import tensorflow as tf

    if not paths:
        return set(), []

    def check(p):
        image = tf.io.decode_image(tf.io.read_file(p), channels=channels,
                                   expand_animations=False)
        return p, tf.shape(image)[0]

    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        check, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = {p.decode() for p, h in ds.as_numpy_iterator() if h > 0}
    bad = sorted(set(paths) - good)
    return good, bad


class TFRecordDataset(FileDataset):
    """ImageNet-style TFRecords: ``image/encoded`` and ``image/class/label`` features."""

    def __init__(self, data_dir, num_classes, image_size=None, channels=3, label_offset=0):
        if not num_classes:
            raise DataError("the tfrecord dataset needs --num-classes (labels are not scanned)")
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
                         [str(i) for i in range(num_classes)], {"train": None, "test": None})

    def examples(self, split):
        import tensorflow as tf

        _check_split(split)
        features = {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        }
        offset = self.label_offset

        def parse(record):
            ex = tf.io.parse_single_example(record, features)
            return ex["image/encoded"], ex["image/class/label"] + offset

        files = tf.data.Dataset.from_tensor_slices(self._files[split])
        ds = files.interleave(tf.data.TFRecordDataset, cycle_length=tf.data.AUTOTUNE,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)

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

    def examples(self, split):
        _check_split(split)
        import tensorflow as tf

        ds = self._builder.as_dataset(split=self._split_names[split], shuffle_files=False,
                                      decoders=None)
        return ds.map(lambda ex: (tf.cast(ex["image"], tf.float32), tf.cast(ex["label"], tf.int64)),
                      num_parallel_calls=tf.data.AUTOTUNE)

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
        return TFRecordDataset(data_dir, num_classes, image_size, label_offset=label_offset)
    if name.startswith("tfds:") and len(name) > 5:
        return TFDSDataset(name[5:], data_dir, image_size, download)
    raise ValueError(f"dataset={name!r} is not supported; accepted: {', '.join(DATASETS)}")


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


def _batched_pipeline(dataset, split, batch_size, training, augment, seed, epoch=None,
                      shard=None, skip=0, preprocess=True, cache=None):
    """``(images, labels)`` batches of one split (see :func:`make_dataset`)."""
    import tensorflow as tf

    ds = dataset.examples(split)
    if shard is not None and shard[0] > 1:
        ds = ds.shard(shard[0], shard[1])
    if cache is None:
        cache = dataset.arrays_in_memory is False and (dataset.sizes.get(split) or 1e9) <= 50000
    if cache and not dataset.arrays_in_memory:
        # Decoded-but-unaugmented examples of small file datasets stay in memory.
        ds = ds.map(lambda x, y: (dataset.decode(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.cache()
        decode = None
    else:
        decode = dataset.decode
    ds = ds.enumerate()
    if training:
        n = dataset.sizes.get(split) or 10000
        ds = ds.shuffle(min(n, 10000), seed=tf.cast(seed * 100003 + epoch, tf.int64),
                        reshuffle_each_iteration=False)
    if skip:
        ds = ds.skip(skip)
    shape = dataset.input_shape
    pre = dataset.preprocessing

    def one(i, example):
        x, y = example
        if decode is not None:
            x = decode(x)
        s = tf.stack([tf.cast(seed, tf.int64) * 1000003 + tf.cast(epoch if epoch is not None else 0, tf.int64), i])
        x = transform(x, shape, augment, training, seed=s)
        if preprocess:
            x = apply_preprocessing(x, pre)
        return x, tf.cast(y, tf.int32)

    ds = ds.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(dataset, split="train", batch_size=128, training=None, augment=None, seed=0,
                 epoch=0, preprocess=True, prefetch=True):
    """A batched ``tf.data.Dataset`` of ``(images, int32 labels)`` for one split.

    ``training`` (default: ``split == "train"``) shuffles with ``seed``/``epoch``,
    augments with ``augment`` (default: the dataset's preset) and drops the last partial
    batch. Images are preprocessed (``pixels * scale + offset``) unless
    ``preprocess=False``. Decoding and augmentation run in parallel; every random draw
    is stateless, so a ``(seed, epoch)`` pair gives the same batches in any run.
    """
    import tensorflow as tf

    if not isinstance(dataset, Dataset):
        dataset = get_dataset(dataset)
    training = split == "train" if training is None else training
    augment = dataset.augment if augment is None else augment
    ds = _batched_pipeline(dataset, split, batch_size, training, augment, seed, epoch,
                           preprocess=preprocess)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _eval_pixels(dataset, split, limit=None, seed=None):
    import tensorflow as tf

    ds = dataset.examples(split)
    if seed is not None and limit is not None:
        # Draw a seeded sample: shuffle a window of the split, deterministically.
        n = dataset.sizes.get(split) or 10000
        ds = ds.shuffle(min(n, 20000), seed=seed, reshuffle_each_iteration=False)
    if limit is not None:
        ds = ds.take(limit)
    shape, augment = dataset.input_shape, dataset.augment
    ds = ds.map(lambda x, y: (transform(dataset.decode(x), shape, augment, False), y),
                num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in ds.batch(256).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
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


def representative_images(name="digits", num_samples=100, seed=0, **dataset_kwargs):
    """``num_samples`` training images (a seeded random draw) as float32 NHWC pixels
    0..255 of the dataset's ``input_shape``, not preprocessed: calibration data for
    quantization. Uses the evaluation transform (no augmentation).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} is not supported; expected a positive integer")
    dataset = name if isinstance(name, Dataset) else get_dataset(name, **dataset_kwargs)
    if dataset.arrays_in_memory:
        x, _ = dataset.arrays("train")
        idx = np.random.default_rng(seed).permutation(len(x))[:num_samples]
        return x[np.sort(idx)].astype("float32")
    x, _ = _eval_pixels(dataset, "train", limit=num_samples, seed=seed)
    return x


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
