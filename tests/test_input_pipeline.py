"""The one input pipeline at scale: a true shuffle, exact resume, the trainer's batches,
fused JPEG decode, unreadable images met mid-epoch, and folder -> TFRecords -> training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_python, run_train

from keras_resnet import data as kdata
from keras_resnet import training as kt
from keras_resnet.data.augment import decode_random_crop  # the helper's own contract


def _photos():
    from sklearn.datasets import load_sample_images

    return load_sample_images().images  # two real 427x640 RGB photos, bundled


def _tiles(count, size, rng):
    """``count`` distinct real-photo crops of ``size`` (h, w)."""
    photos = _photos()
    out = []
    for i in range(count):
        p = photos[i % len(photos)]
        y = int(rng.integers(0, p.shape[0] - size[0]))
        x = int(rng.integers(0, p.shape[1] - size[1]))
        out.append(p[y:y + size[0], x:x + size[1]])
    return out


def _jpeg_folder(root, classes, per_class, size=(20, 24), seed=0):
    """``root/<class>/<i>.jpg`` of real-photo crops; returns ``{path: class index}``."""
    rng = np.random.default_rng(seed)
    tiles = iter(_tiles(classes * per_class, size, rng))
    files = {}
    for c in range(classes):
        os.makedirs(os.path.join(root, f"c{c:02d}"), exist_ok=True)
        for i in range(per_class):
            path = os.path.join(root, f"c{c:02d}", f"{i:04d}.jpg")
            tf.io.write_file(path, tf.io.encode_jpeg(next(tiles), quality=90))
            files[path] = c
    return files


def _rows(x):
    return sorted(bytes(r) for r in np.asarray(x).reshape(len(x), -1))


def test_first_batches_of_a_class_ordered_folder_hold_every_class(tmp_path):
    # 12 classes x 1,000 files, listed class by class: larger than any shuffle window
    # (SHUFFLE_WINDOW records). A window over the listing would start with classes 0-9 only.
    classes, per_class = 12, 1000
    assert classes * per_class > kdata.SHUFFLE_WINDOW
    one = _tiles(classes, (8, 8), np.random.default_rng(0))
    for c in range(classes):
        folder = tmp_path / "train" / f"c{c:02d}"
        folder.mkdir(parents=True)
        first = folder / "0000.jpg"
        tf.io.write_file(str(first), tf.io.encode_jpeg(one[c]))
        for i in range(1, per_class):
            os.link(first, folder / f"{i:04d}.jpg")  # tiny: hard links to one real JPEG
        (tmp_path / "test" / f"c{c:02d}").mkdir(parents=True)
        os.link(first, tmp_path / "test" / f"c{c:02d}" / "0.jpg")
    ds = kdata.get_dataset("folder", data_dir=str(tmp_path), image_size=8)
    assert ds.sizes == {"train": 12000, "test": 12}
    labels = np.concatenate([y.numpy() for _, y in
                             kdata.make_dataset(ds, "train", 32, seed=0, epoch=0).take(4)])
    # 128 uniform draws over 12 classes miss one with probability < 12 * (11/12)^128 = 2e-4;
    # no class may hold more than a third of them (expected: 10.7 each).
    counts = np.bincount(labels, minlength=classes)
    assert (counts > 0).all() and counts.max() <= 128 // 3, counts.tolist()


def _small_folder(tmp_path, classes=3, per_class=8, size=(20, 24)):
    root = tmp_path / "photos"
    files = _jpeg_folder(str(root / "train"), classes, per_class, size)
    _jpeg_folder(str(root / "test"), classes, 2, size, seed=1)
    return root, files


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_same_seed_and_epoch_give_the_same_batches_and_a_resume_sees_the_rest(tmp_path):
    root, _ = _small_folder(tmp_path)
    ds = kdata.get_dataset("folder", data_dir=str(root), image_size=16)

    def run(**kw):
        kw.setdefault("deterministic", True)
        return _batches(kdata.make_dataset(ds, "train", 4, seed=5, **kw))

    a, b = run(epoch=2), run(epoch=2)
    assert len(a) == 24 // 4
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    other = run(epoch=3)
    assert not all(np.array_equal(p[1], q[1]) for p, q in zip(a, other))
    # Each epoch is a permutation of the training split.
    assert sorted(np.concatenate([y for _, y in a]).tolist()) == [0] * 8 + [1] * 8 + [2] * 8
    # An uninterrupted run of epochs 2-3 vs one resumed after 2 batches of epoch 2.
    whole = run(epoch=2, epochs=2)
    resumed = run(epoch=2, epochs=2, skip_batches=2)
    assert len(whole) == 12 and len(resumed) == 10
    for (xw, yw), (xr, yr) in zip(whole[2:], resumed):
        np.testing.assert_array_equal(xw, xr)
        np.testing.assert_array_equal(yw, yr)
    for (xw, _), (xe, _) in zip(whole, a + other):  # epochs in turn, as single epochs give
        np.testing.assert_array_equal(xw, xe)
    # Without --deterministic parallel work may arrive out of order; each image keeps its
    # augmentation (keyed on seed, epoch and record), so an epoch holds the same pixels.
    free = run(epoch=2, deterministic=False)
    assert _rows(np.concatenate([x for x, _ in free])) == _rows(np.concatenate([x for x, _ in a]))
    # Several epochs stream through one map: an image may land in a batch of the next
    # epoch, but each is delivered once, with its own epoch's augmentation.
    free = run(epoch=2, epochs=2, deterministic=False)
    assert len(free) == 12
    assert _rows(np.concatenate([x for x, _ in free])) == _rows(np.concatenate([x for x, _ in a + other]))


def test_the_trainers_batches_are_make_datasets(tmp_path):
    root, _ = _small_folder(tmp_path)
    ds = kdata.get_dataset("folder", data_dir=str(root), image_size=16)
    cfg = kt.TrainConfig(augment="imagenet", seed=3, deterministic=True)
    # One replica: epochs 1..2 of 6 steps of 4, resumed at step 2 of epoch 1.
    fn = kt.train_input_fn(ds, cfg, 4, 6, start_epoch=1, start_step=2, epochs=3)
    got = _batches(tf.distribute.get_strategy().distribute_datasets_from_function(fn))
    want = []
    for epoch in (1, 2):
        want += _batches(kdata.make_dataset(ds, "train", 4, seed=3, epoch=epoch,
                                            deterministic=True))[2 if epoch == 1 else 0:]
    assert len(got) == len(want) == 10
    for (xg, yg), (xw, yw) in zip(got, want):
        np.testing.assert_array_equal(xg, xw)
        np.testing.assert_array_equal(yg, yw)
    # Two input pipelines (one per worker): disjoint halves whose union is the epoch.
    fn = kt.train_input_fn(ds, cfg, 8, 3, start_epoch=0, start_step=0, epochs=1)
    shards = [np.concatenate([x.numpy() for x, _ in fn(tf.distribute.InputContext(2, i, 2))])
              for i in (0, 1)]
    whole = np.concatenate([x for x, _ in _batches(
        kdata.make_dataset(ds, "train", 4, seed=3, epoch=0, deterministic=True))])
    assert len(shards[0]) == len(shards[1]) == 12
    assert not set(_rows(shards[0])) & set(_rows(shards[1]))
    assert _rows(np.concatenate(shards)) == _rows(whole)


def test_fused_jpeg_decode_crops_what_the_decoded_image_transform_crops():
    photo = _tiles(1, (60, 80), np.random.default_rng(2))[0]
    jpeg = tf.io.encode_jpeg(photo, quality=95)
    png = tf.io.encode_png(photo)
    decoded = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    for i in range(6):
        seed = tf.constant([7, i], tf.int64)
        want = kdata.transform(decoded, (24, 24, 3), "imagenet", True, seed=seed).numpy()
        got = decode_random_crop(jpeg, 24, 3, seed).numpy()
        # decode_and_crop_jpeg decodes the same DCT blocks; only the crop's edge column
        # lacks its right neighbour for chroma upsampling (a few levels there, 0 elsewhere).
        diff = np.abs(got - want)
        assert diff.max() <= 4 and np.mean(diff > 1e-3) <= 2 / 24, (diff.max(), np.mean(diff > 1e-3))
        from_png = decode_random_crop(png, 24, 3, seed).numpy()
        expected = kdata.transform(tf.constant(photo, tf.float32), (24, 24, 3), "imagenet",
                                   True, seed=seed).numpy()
        np.testing.assert_allclose(from_png, expected, atol=1e-3)


_CORRUPT_RUN = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
from keras_resnet import data as kdata, training as kt

root, run_dir = sys.argv[1], sys.argv[2]
ds = kdata.get_dataset("folder", data_dir=root, image_size=20)
files = ds.files("train")
pixels = {bytes(tf.io.decode_jpeg(tf.io.read_file(p), channels=3).numpy()): p for p, _ in files}

def read_in(epoch):  # which files epoch `epoch` reads: 2 steps of 4 images
    got = kdata.make_dataset(ds, "train", 4, augment="none", seed=0, epoch=epoch,
                             steps_per_epoch=2, preprocess=False, deterministic=True)
    return {pixels[bytes(x.astype("uint8"))] for b, _ in got.as_numpy_iterator() for x in b}

late = sorted(read_in(1) - read_in(0))
with open(late[0], "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not a JPEG any more")
cfg = dict(dataset="folder", data_dir=root, image_size=20, model="resnet20", epochs=2,
           steps_per_epoch=2, batch_size=4, run_dir=run_dir, seed=0, deterministic=True,
           plot=False, tensorboard=False, verbose=0)
try:
    kt.train(kt.TrainConfig(**cfg))
    print(json.dumps({"error": None}))
    sys.exit(0)
except kdata.DataError as e:
    error = str(e)
meta = kt.read_checkpoint(run_dir)
result = kt.train(kt.TrainConfig(**cfg, on_corrupt="skip"))
with open(os.path.join(run_dir, "run.json")) as f:
    info = json.load(f)
print(json.dumps({"error": error, "bad": late[0], "committed": [meta["epoch"], meta["step"]],
                  "epochs": [r["epoch"] for r in result.history],
                  "skipped": info["unreadable_images_skipped"], "status": info["status"]}))
"""


@pytest.mark.slow
def test_a_corrupt_jpeg_met_mid_run_fails_naming_it_then_skip_resumes(tmp_path):
    root, _ = _small_folder(tmp_path, classes=2, per_class=8, size=(20, 20))
    argv = f"import sys\nsys.argv = ['run', {str(root)!r}, {str(tmp_path / 'run')!r}]\n"
    proc = run_python(argv + _CORRUPT_RUN, env={"CUDA_VISIBLE_DEVICES": ""}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Met in epoch 2, after epoch 1 was committed: the error names the file, is one line,
    # and the checkpoint of epoch 1 is intact.
    assert out["error"] and out["bad"] in out["error"] and "\n" not in out["error"]
    assert "checkpoint" in out["error"]
    assert out["committed"] == [1, 0]
    # --on-corrupt skip resumes from it, leaves the file out and counts it.
    assert out["epochs"] == [1, 2] and out["status"] == "finished"
    assert out["skipped"] == [out["bad"]]


@pytest.mark.slow
def test_tfrecord_round_trip_folder_to_converter_to_training(tmp_path):
    root, files = _small_folder(tmp_path, classes=3, per_class=6, size=(16, 16))
    out = tmp_path / "records"
    umask = os.umask(0o022)  # a usual umask: the folder is readable by other users and workers
    try:
        assert kdata.make_tfrecords_main([str(root), str(out), "--images-per-shard", "5",
                                          "--quiet"]) == 0
    finally:
        os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o755
    names = sorted(os.listdir(out))
    # The manifest (written first) proves to a later --overwrite that the folder is ours.
    assert names == [".keras-resnet-tfrecords.json", "classes.txt"] + [
        f"train-{i:05d}-of-00004" for i in range(4)] + [f"validation-{i:05d}-of-00002" for i in range(2)]
    # Every training file, bytes unchanged, once, with its class; shuffled across shards.
    feature = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
               "image/class/label": tf.io.FixedLenFeature([], tf.int64),
               "image/filename": tf.io.FixedLenFeature([], tf.string)}
    seen, first_shard = {}, None
    for name in names[2:6]:
        labels = []
        for r in tf.data.TFRecordDataset(str(out / name)):
            ex = tf.io.parse_single_example(r, feature)
            path = str(root / ex["image/filename"].numpy().decode())
            seen[path] = (ex["image/encoded"].numpy(), int(ex["image/class/label"]))
            labels.append(int(ex["image/class/label"]))
        first_shard = first_shard or labels
    assert sorted(seen) == sorted(files)
    for path, (data, label) in seen.items():
        assert data == open(path, "rb").read() and label == files[path]
    assert len(set(first_shard)) > 1  # not class by class
    # Two workers read disjoint files (4 files >= 2 workers: sharded by file) that together
    # hold the split.
    ds = kdata.get_dataset("tfrecord", data_dir=str(out), image_size=16)
    parts = [np.concatenate([x for x, _ in _batches(kdata.make_dataset(
        ds, "train", 1, training=False, augment="none", preprocess=False, shard=(2, i)))])
        for i in (0, 1)]
    assert len(parts[0]) + len(parts[1]) == 18 and len(parts[0]) in (8, 10)
    assert not set(_rows(parts[0])) & set(_rows(parts[1]))
    decoded = np.stack([tf.io.decode_jpeg(data, channels=3).numpy() for data, _ in seen.values()])
    assert _rows(np.concatenate(parts)) == _rows(decoded.astype("float32"))
    # A second run into the same folder is refused (exit 2), leaving it as it was.
    assert kdata.make_tfrecords_main([str(root), str(out), "--quiet"]) == 2
    assert sorted(os.listdir(out)) == names
    # Training reads it: class names from classes.txt, no --num-classes needed.
    r = run_train(["--dataset", "tfrecord", "--data-dir", str(out), "--image-size", "16",
                   "--model", "resnet20", "--epochs", "1", "--batch-size", "4",
                   "--run-dir", str(tmp_path / "run"), "--no-plot", "--no-tensorboard"],
                  tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["class_names"] == ["c00", "c01", "c02"] and info["steps_per_epoch"] == 18 // 4
    assert info["epochs_finished"] == 1 and 0 <= info["test_accuracy"] <= 1
    # Its output goes to a pipe: plain progress lines, no bar redrawn with \r or ANSI codes,
    # and the final line says which split scored the model (TFRecords have no count up front).
    assert "\r" not in r.stdout and "\x1b[" not in r.stdout, r.stdout[-500:]
    assert "None test images" not in r.stdout and "(last model, chosen on nothing; the test split)" in r.stdout


def _make_tfrecords(argv):
    """The command's exit status: returned, or argparse's exit for a bad flag."""
    try:
        return kdata.make_tfrecords_main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("args, message", [
    (["--images-per-shard", "0"], "argument --images-per-shard: 0 is not accepted; expected an integer >= 1"),
    (["--on-corrupt", "skip", "--seed", "1"], None),
])
def test_make_tfrecords_bad_input_and_corrupt_files(tmp_path, capsys, args, message):
    root, _ = _small_folder(tmp_path, classes=2, per_class=3, size=(8, 8))
    bad = root / "train" / "c01" / "zz.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 broken")
    out = tmp_path / "records"
    rc = _make_tfrecords([str(root), str(out), "--quiet", *args])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    if message:
        assert rc == 2 and message in err[-1] and not out.exists()
        rc = _make_tfrecords([str(root), str(out), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and str(bad) in err[-1] and not out.exists()
        assert not [n for n in os.listdir(tmp_path) if "partial" in n]
    else:
        assert rc == 0 and "skipped 1 unreadable" in captured.out
        assert kdata.get_dataset("tfrecord", data_dir=str(out)).class_names == ["c00", "c01"]
