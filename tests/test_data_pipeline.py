"""Input pipelines: digits, folders, TFRecords, synthetic; augmentation; exporter helpers."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import data as kdata


def test_digits_helpers_match_the_fixed_split():
    x_test, y_test = kdata.test_arrays("digits")
    ref_x, ref_y = kdata.digits_arrays("test")
    np.testing.assert_array_equal(x_test, ref_x)
    np.testing.assert_array_equal(y_test, ref_y)
    assert x_test.dtype == np.float32 and x_test.shape == (450, 8, 8, 1)

    x_train, _ = kdata.digits_arrays("train")
    rep = kdata.representative_images("digits", num_samples=100, seed=3)
    assert rep.shape == (100, 8, 8, 1) and rep.dtype == np.float32
    assert 0 <= rep.min() and rep.max() <= 255
    # Raw training pixels (not preprocessed), a seeded draw without repeats.
    train_rows = {r.tobytes() for r in x_train}
    assert all(r.tobytes() in train_rows for r in rep)
    assert len({r.tobytes() for r in rep}) == len({r.tobytes() for r in rep})
    np.testing.assert_array_equal(rep, kdata.representative_images("digits", 100, seed=3))
    assert not np.array_equal(rep, kdata.representative_images("digits", 100, seed=4))
    with pytest.raises(ValueError, match="num_samples"):
        kdata.representative_images("digits", 0)


def test_preprocessing_standardises_the_training_split():
    ds = kdata.get_dataset("digits")
    x, _ = kdata.digits_arrays("train")
    z = kdata.apply_preprocessing(x, ds.preprocessing)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3


def test_training_batches_are_seeded_and_change_per_epoch():
    ds = kdata.get_dataset("digits")

    def first(seed, epoch):
        x, y = next(iter(kdata.make_dataset(ds, "train", 32, seed=seed, epoch=epoch)))
        return x.numpy(), y.numpy()

    a, b = first(0, 1), first(0, 1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], first(0, 2)[1])
    assert not np.array_equal(a[1], first(1, 1)[1])
    # Evaluation batches are in order and unaugmented.
    x, y = next(iter(kdata.make_dataset(ds, "test", 450, preprocess=False)))
    np.testing.assert_array_equal(x.numpy(), kdata.digits_arrays("test")[0])


def test_shift_and_cifar_augmentations_are_translations_and_flips():
    rng = np.random.default_rng(0)
    image = rng.uniform(1, 255, (8, 8, 1)).astype("float32")

    def shifted(img, dy, dx, pad):
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
        return padded[pad + dy: pad + dy + img.shape[0], pad + dx: pad + dx + img.shape[1]]

    seen = set()
    for i in range(40):
        out = kdata.transform(tf.constant(image), (8, 8, 1), "shift", True,
                              seed=tf.constant([0, i], tf.int64)).numpy()
        match = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if np.array_equal(out, shifted(image, dy, dx, 1))]
        assert match, "shift augmentation must be a translation by at most 1 pixel"
        seen.add(match[0])
    assert len(seen) > 3

    image = rng.uniform(1, 255, (32, 32, 3)).astype("float32")
    flips = 0
    for i in range(30):
        out = kdata.transform(tf.constant(image), (32, 32, 3), "cifar", True,
                              seed=tf.constant([1, i], tf.int64)).numpy()
        ok = []
        for img, flipped in ((image, False), (image[:, ::-1], True)):
            ok += [flipped for dy in range(-4, 5) for dx in range(-4, 5)
                   if np.array_equal(out, shifted(img, dy, dx, 4))]
        assert ok, "cifar augmentation must be a pad-4 crop, possibly flipped"
        flips += ok[0]
    assert 0 < flips < 30
    # Evaluation leaves pixels alone.
    out = kdata.transform(tf.constant(image), (32, 32, 3), "cifar", False).numpy()
    np.testing.assert_array_equal(out, image)


def test_imagenet_preset_crops_to_size():
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (60, 90, 3)), tf.float32)
    train = kdata.transform(image, (32, 32, 3), "imagenet", True, seed=tf.constant([0, 1], tf.int64))
    assert train.shape == (32, 32, 3)
    # Eval: resize the short side to 32 / 0.875 = 36.57 -> 37, then a center 32x32 crop.
    ev = kdata.transform(image, (32, 32, 3), "imagenet", False).numpy()
    resized = tf.image.resize(image, [37, 55]).numpy()
    np.testing.assert_allclose(ev, resized[2:34, 11:43], atol=1e-4)


def _write_png(path, array):
    tf.io.write_file(path, tf.io.encode_png(tf.constant(array, tf.uint8)))


def _image_folder(root, per_class=6, size=12, classes=("cat", "dog", "eel")):
    rng = np.random.default_rng(0)
    truth = {}
    for c in classes:
        os.makedirs(os.path.join(root, c))
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            path = os.path.join(root, c, f"{i}.png")
            _write_png(path, img)
            truth[path] = (img, c)
    return truth


def test_image_folder_reads_every_class_and_splits_stratified(tmp_path):
    truth = _image_folder(str(tmp_path))
    ds = kdata.get_dataset("folder", data_dir=str(tmp_path), image_size=12)
    assert ds.class_names == ["cat", "dog", "eel"] and ds.num_classes == 3
    assert ds.sizes == {"train": 15, "test": 3}  # 20% of 6 per class, rounded
    x, y = kdata.test_arrays(ds)
    assert np.bincount(y).tolist() == [1, 1, 1]
    # ImageNet-style evaluation: short side to 12 / 0.875 -> 14, centre 12x12 crop.
    expected = [(tf.image.resize(img.astype("float32"), [14, 14]).numpy()[1:13, 1:13],
                 ds.class_names.index(c)) for img, c in truth.values()]
    for img, label in zip(x, y):
        matches = [lab for e, lab in expected if np.allclose(e, img, atol=1e-3)]
        assert matches == [label]


def test_corrupt_images_fail_naming_the_file_or_are_skipped_when_read(tmp_path):
    _image_folder(str(tmp_path))
    bad = tmp_path / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    # Listing does not decode: the folder opens, the file fails when the pipeline meets it.
    ds = kdata.get_dataset("folder", data_dir=str(tmp_path))
    assert ds.sizes["train"] + ds.sizes["test"] == 19
    split = "train" if any(p == str(bad) for p, _ in ds.files("train")) else "test"
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        list(kdata.make_dataset(ds, split, 1, training=False))
    err = kdata.unreadable_image_error(info.value, ds, split)
    assert isinstance(err, kdata.DataError) and str(bad) in str(err)
    assert kdata.locate_unreadable(ds, split) == str(bad)
    assert kdata.unreadable_image_error(ValueError("something else"), ds, split) is None
    ds = kdata.get_dataset("folder", data_dir=str(tmp_path), on_corrupt="skip")
    n = sum(int(tf.size(y)) for s in ("train", "test")
            for _, y in kdata.make_dataset(ds, s, 1, training=False))
    assert n == 18 and ds.unreadable == [str(bad)]


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no images"):
        kdata.get_dataset("folder", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not a directory"):
        kdata.get_dataset("folder", data_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="accepted"):
        kdata.get_dataset("mnist-ish")
    # A class folder without images would be a class the model never sees: refused, by name.
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
    png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    for i in range(4):
        (tmp_path / "pets" / "cat" / f"{i}.png").write_bytes(png)
    with pytest.raises(ValueError, match=r"class folder .*dog holds no images.*remove it"):
        kdata.get_dataset("folder", data_dir=str(tmp_path / "pets"))


def test_tfrecord_dataset_decodes_imagenet_style_records(tmp_path):
    rng = np.random.default_rng(1)
    records = {}
    for split, prefix in (("train", "train"), ("test", "validation")):
        path = str(tmp_path / f"{prefix}-00000-of-00001")
        with tf.io.TFRecordWriter(path) as w:
            for i in range(5):
                img = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
                label = int(rng.integers(1, 5))  # 1-based, as ImageNet build scripts write
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[tf.io.encode_png(img).numpy()])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }))
                w.write(ex.SerializeToString())
                records.setdefault(split, []).append((img, label))
    ds = kdata.get_dataset("tfrecord", data_dir=str(tmp_path), num_classes=4, image_size=10,
                           label_offset=-1)
    x, y = kdata.test_arrays(ds)
    # ImageNet-style evaluation: short side to 10 / 0.875 -> 11, centre 10x10 crop.
    expected = np.stack([tf.image.resize(r[0].astype("float32"), [11, 11]).numpy()[:10, :10]
                         for r in records["test"]])
    np.testing.assert_allclose(x, expected, atol=1e-3)
    assert y.tolist() == [r[1] - 1 for r in records["test"]]
    batches = list(kdata.make_dataset(ds, "train", 2, preprocess=False))
    assert [b[0].shape.as_list() for b in batches] == [[2, 10, 10, 3]] * 2
    with pytest.raises(ValueError, match="num-classes"):
        kdata.get_dataset("tfrecord", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="no train TFRecord"):
        kdata.get_dataset("tfrecord", data_dir=str(tmp_path / "x"), num_classes=3)


def test_missing_cifar_and_tfds_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="--download"):
        kdata.get_dataset("cifar10")
    with pytest.raises(ValueError, match="tfds|TensorFlow Datasets"):
        kdata.get_dataset("tfds:mnist", data_dir=str(tmp_path))


def test_synthetic_has_the_requested_shape():
    ds = kdata.get_dataset("synthetic", image_size=32, num_classes=7)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 7
    x, y = next(iter(kdata.make_dataset(ds, "train", 8)))
    assert x.shape == (8, 32, 32, 3) and int(tf.reduce_max(y)) < 7


def _rows(x):
    return sorted(map(bytes, x.reshape(len(x), -1).astype("float32")))


def test_validation_split_of_arrays_is_stratified_and_disjoint():
    digits = kdata.get_dataset("digits")
    x, y = digits.arrays("train")
    ds = kdata.with_validation(digits, 0.2)
    (xt, yt), (xv, yv) = ds.arrays("train"), ds.arrays("validation")
    # every training image lands in exactly one of the two
    assert _rows(np.concatenate([xt, xv])) == _rows(x)
    assert not set(_rows(xt)) & set(_rows(xv))
    # per class: round(20%) held out
    assert np.bincount(yv).tolist() == [int(round(0.2 * n)) for n in np.bincount(y)]
    assert ds.sizes == {"train": len(yt), "validation": len(yv), "test": 450}
    np.testing.assert_array_equal(ds.arrays("test")[0], digits.arrays("test")[0])
    assert ds.preprocessing == digits.preprocessing  # the model's input convention is unchanged
    # the same images whatever else happens (fixed seed)
    np.testing.assert_array_equal(kdata.with_validation(digits, 0.2).arrays("validation")[1], yv)


def test_validation_split_of_files_is_every_kth_record(tmp_path):
    _image_folder(str(tmp_path), per_class=10)
    folder = kdata.get_dataset("folder", data_dir=str(tmp_path), image_size=12)
    ds = kdata.with_validation(folder, 0.25)  # k = 4
    assert folder.sizes["train"] == 24 and ds.sizes == {"train": 18, "validation": 6, "test": 6}

    def items(d, split):
        return [(bytes(e.numpy()), int(y)) for e, y in d.examples(split)]

    base, train, val = items(folder, "train"), items(ds, "train"), items(ds, "validation")
    assert val == base[::4] and sorted(train + val) == sorted(base)
    assert sorted(y for _, y in val) == [0, 0, 1, 1, 2, 2]  # classes listed in turn
    assert items(ds, "test") == items(folder, "test")


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.2"])
def test_validation_fraction_must_be_between_0_and_1(fraction):
    with pytest.raises(ValueError, match="expected a fraction 0 < val_split < 1"):
        kdata.with_validation(kdata.get_dataset("digits"), fraction)
