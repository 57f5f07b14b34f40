"""Datasets of encoded images on disk: an image folder, TFRecord files, TensorFlow Datasets."""

import errno
import glob
import os
import stat

import numpy as np
import tensorflow as tf

from ..specs import MAX_CLASSES
from .base import FOLDER_TEST_FRACTION, IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, DataError, \
    Dataset, check_split, FileSource, IndexedSource, mean_std_preprocessing, StreamSource


class FileDataset(Dataset):
    """Encoded images on disk (image folder, TFRecord, TFDS); decoded in the pipeline."""

    def __init__(self, name, image_size, channels, num_classes, class_names, sizes,
                 augment="imagenet", on_corrupt="fail"):
        if on_corrupt not in ("fail", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
        self.on_corrupt = on_corrupt
        self.unreadable = []  # paths of unreadable images met so far (on_corrupt="skip")
        if channels == 3:
            pre = mean_std_preprocessing(IMAGENET_MEAN, IMAGENET_STD)
        else:
            pre = {"scale": [1 / 127.5] * channels, "offset": [-1.0] * channels}
        super().__init__(name, (image_size, image_size, channels), num_classes, class_names,
                         pre, augment, sizes)
        self.channels = channels

    def decode(self, item):
        image = tf.io.decode_image(item, channels=self.channels, expand_animations=False)
        image = tf.cast(image, tf.float32)
        image.set_shape([None, None, self.channels])
        return image


class FolderDataset(FileDataset):
    """``data_dir/<class>/<image>`` (or ``data_dir/{train,test}/<class>/<image>``)."""

    def __init__(self, data_dir, image_size=None, channels=3, on_corrupt="fail",
                 progress=None):
        if not data_dir:
            raise DataError("the folder dataset needs --data-dir (data_dir): the image folder, "
                            "data_dir/<class_name>/<image files>; none was given")
        if not os.path.isdir(data_dir):
            raise DataError(f"--data-dir {data_dir!r} is not a directory; the folder dataset "
                            "needs data_dir/<class_name>/<image files>")
        if on_corrupt not in ("fail", "skip"):
            raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
        splits, skipped = {}, []
        test_name = next((d for d in ("test", "val", "validation")
                          if os.path.isdir(os.path.join(data_dir, d))), None)
        if os.path.isdir(os.path.join(data_dir, "train")) and test_name:
            root = os.path.join(data_dir, "train")
            class_names, hidden = _class_dirs(root)
            for split, sub in (("train", "train"), ("test", test_name)):
                splits[split] = _list_images(os.path.join(data_dir, sub), class_names,
                                             every_class=split == "train", on_corrupt=on_corrupt,
                                             skipped=skipped)
        else:
            root = data_dir
            class_names, hidden = _class_dirs(data_dir)
            files = _list_images(data_dir, class_names, on_corrupt=on_corrupt, skipped=skipped)
            splits = _stratified_split(files)
        # A classifier of one class learns nothing, and would still train with exit status 0.
        _check_class_count(root, class_names, hidden)
        for split in ("train", "test"):
            if not splits[split]:
                raise DataError(f"the folder dataset {data_dir} has no {split} images")
        self.hidden = hidden  # folders named ".*" left out (not classes), said in the log
        if progress:
            if hidden:
                progress(_hidden_note(hidden))
            progress(f"found {sum(len(v) for v in splits.values())} images in "
                     f"{len(class_names)} classes in {data_dir} (read as training goes)")
        self._files = splits
        super().__init__("folder", image_size or 224, channels, len(class_names), class_names,
                         {s: len(v) for s, v in splits.items()}, on_corrupt=on_corrupt)
        self.unreadable.extend(skipped)  # left out at listing time (on_corrupt="skip")
        self.data_dir = data_dir

    def files(self, split):
        """``[(path, label), ...]`` of a split, class by class (the listing order)."""
        check_split(split)
        return list(self._files[split])

    def _source(self, split):
        check_split(split)
        paths = tf.constant([p for p, _ in self._files[split]])
        labels = tf.constant([y for _, y in self._files[split]], tf.int64)
        # on_corrupt="skip": a file gone since the listing (deleted while training runs) reads
        # as no bytes, fails to decode and is skipped like any unreadable image.
        read = _read_or_nothing if self.on_corrupt == "skip" else tf.io.read_file

        def load(i):
            path = tf.gather(paths, i)
            return read(path), tf.gather(labels, i), path

        return IndexedSource(len(self._files[split]), load, encoded=True)


def _read_or_nothing(path):
    """The bytes of the file ``path``, or ``b""`` when it cannot be opened."""
    good = tf.data.Dataset.from_tensors(path).map(tf.io.read_file).ignore_errors()
    empty = tf.data.Dataset.from_tensors(tf.constant(b""))
    return good.concatenate(empty).take(1).get_single_element()


def _class_dirs(root):
    """``(class folder names, hidden folders)`` of ``root``: each sub-folder is a class, except
    those named ``.*`` (``.git``, ``.ipynb_checkpoints``, ...), which are left out and
    returned as paths so the caller can say so."""
    names, hidden = [], []
    for d in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, d)):
            (hidden if d.startswith(".") else names).append(d)
    hidden = [os.path.join(root, d) for d in hidden]
    if not names:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class_name>/<images>"
                        + (f" ({_hidden_note(hidden)})" if hidden else ""))
    odd = [n for n in names if any(c in n for c in "\n\r\x00")]
    if odd:  # classes.txt holds one class name a line: such a name would become two classes
        raise DataError(f"class folder {os.path.join(root, odd[0])!r} has a line break in its name; "
                        "rename it (class names are written one a line)")
    return names, hidden


def _check_class_count(root, names, hidden):
    if len(names) < 2:
        raise DataError(f"{root} has 1 class folder ({names[0]}); a classifier needs at least 2 "
                        f"classes, one sub-folder of images each"
                        + (f" ({_hidden_note(hidden)})" if hidden else ""))


def _hidden_note(hidden):
    shown = ", ".join(hidden[:3]) + (f" and {len(hidden) - 3} more" if len(hidden) > 3 else "")
    return (f"left out {len(hidden)} hidden folder{'s' if len(hidden) > 1 else ''} {shown}: "
            "a name starting with '.' is not a class; rename it to make it one")


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
            (stat.S_ISDIR, "a directory"))


def _not_a_file(path):
    """Why ``path`` (named like an image) cannot be read as one, or None for a regular file
    (a symlink is followed once, without opening anything)."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks; never opens (a FIFO would block)
    except OSError as e:
        if os.path.islink(path):
            kind = "a symlink loop" if e.errno == errno.ELOOP else "a dangling symlink"
            return f"{kind} (to {os.readlink(path)})"
        return f"unreadable ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    for test, what in _SPECIAL:
        if test(mode):
            return what + (f" (through the symlink to {os.readlink(path)})" if os.path.islink(path) else "")
    return "not a regular file"


def _list_images(root, class_names, every_class=True, on_corrupt="fail", skipped=None):
    """``[(path, label)]`` of the images in ``root/<class>/``. With ``every_class`` (the
    folder that defines the classes) a class folder without images is refused: it would
    train a class the model can never learn. An entry named like an image that is not a
    regular file (a FIFO, a device, a socket, a directory, a dangling symlink or a symlink
    loop) is refused naming it, or with ``on_corrupt="skip"`` left out and added to
    ``skipped``, here, before anything reads it."""
    files = []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        found = []
        with os.scandir(folder) as it:  # the directory's own file types: no stat per image
            entries = sorted((e for e in it if e.name.lower().endswith(IMAGE_EXTENSIONS)),
                             key=lambda e: e.name)
        for entry in entries:
            path = os.path.join(folder, entry.name)
            regular = not entry.is_symlink() and entry.is_file(follow_symlinks=False)
            why = None if regular else _not_a_file(path)
            if why is None:
                found.append(path)
            elif on_corrupt == "skip":
                if skipped is not None:
                    skipped.append(path)
            else:
                raise DataError(f"{path} is {why}, not an image file; remove it, or use "
                                "--on-corrupt skip to leave such entries out")
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


LABEL_ERROR = "keras_resnet: TFRecord label out of range"


def _check_first_record(path, num_classes, offset):
    """The first record of ``path`` holds ``image/encoded`` (bytes) and an int64
    ``image/class/label`` within the classes; else one line naming the file."""
    try:
        raw = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError:
        return  # a damaged file: named when it is read (diagnose.damaged_file)
    if raw is None:
        return
    try:
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
    except Exception:  # noqa: BLE001 - not a tf.train.Example
        raise DataError(f"{path}: its first record is not a tf.train.Example; expected "
                        "ImageNet-style TFRecords (keras-resnet-make-tfrecords writes them)") from None
    expected = ("expected image/encoded (bytes) and image/class/label (int64), as "
                "keras-resnet-make-tfrecords writes")
    for key, kind in (("image/encoded", "bytes_list"), ("image/class/label", "int64_list")):
        if key not in feature:
            has = ", ".join(sorted(feature)[:6]) or "none"
            raise DataError(f"{path}: record 0 has no feature {key!r} (it has {has}); {expected}")
        if feature[key].WhichOneof("kind") != kind or len(getattr(feature[key], kind).value) != 1:
            raise DataError(f"{path}: record 0's {key!r} is not one {kind.split('_')[0]} value; {expected}")
    label = feature["image/class/label"].int64_list.value[0] + offset
    if not 0 <= label < num_classes:
        raise DataError(f"{path}: record 0 has label {label}, outside 0..{num_classes - 1} "
                        f"({num_classes} classes); check --num-classes / --label-offset or classes.txt")


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
        if num_classes and num_classes > MAX_CLASSES:
            raise DataError(f"num_classes={num_classes:,} is not supported; at most {MAX_CLASSES:,}")
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
            _check_first_record(files[0], num_classes, int(label_offset))
        self.label_offset = int(label_offset)
        super().__init__("tfrecord", image_size or 224, channels, num_classes,
                         class_names or [str(i) for i in range(num_classes)],
                         {"train": None, "test": None},
                         on_corrupt=on_corrupt)

    def _source(self, split):
        check_split(split)
        features = {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        }
        offset, classes = self.label_offset, self.num_classes

        def read(path):
            def parse(i, record):
                ex = tf.io.parse_single_example(record, features)
                name = tf.strings.join([path, " record ", tf.strings.as_string(i)])
                label = ex["image/class/label"] + offset
                # Range-checked, never wrapped by a later cast (diagnose turns this into one line).
                check = tf.debugging.Assert(
                    tf.logical_and(label >= 0, label < classes),
                    [LABEL_ERROR, name, label, f"outside 0..{classes - 1}"])
                with tf.control_dependencies([check]):
                    label = tf.identity(label)
                return ex["image/encoded"], label, name

            return tf.data.TFRecordDataset(path, buffer_size=1 << 20).enumerate().map(parse)

        return FileSource(list(self._files[split]), read, encoded=True)

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
        check_split(split)
        def make():
            ds = self._builder.as_dataset(split=self._split_names[split], shuffle_files=False,
                                          decoders=None)
            name = tf.constant(f"{self.name}:{self._split_names[split]}")
            return ds.map(lambda ex: (tf.cast(ex["image"], tf.float32),
                                      tf.cast(ex["label"], tf.int64), name),
                          num_parallel_calls=tf.data.AUTOTUNE)

        return StreamSource(make, encoded=False, size=self.sizes.get(split))

    def decode(self, item):
        return item
