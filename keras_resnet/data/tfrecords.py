"""An image folder written as shuffled, sharded TFRecords (``keras-resnet-make-tfrecords``)."""

import errno
import fcntl
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from ..files import (FileWriteError, current_umask, file_write_error, read_json_object,
                     write_error_from_message)
from .base import DataError
from .on_disk import TFRECORD_CLASSES_FILE, FolderDataset


def _tf_example(data, label, class_name, filename):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(data),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "image/class/text": b(class_name.encode()),
        "image/filename": b(filename.encode()),
    })).SerializeToString()


# Written first into every output folder (and rewritten with the file list at the end): the
# proof that this command wrote the folder, which --overwrite and the leftover sweep require.
MANIFEST = ".keras-resnet-tfrecords.json"
_WRITER = "keras-resnet-make-tfrecords"


def _read_manifest(folder):
    """The manifest of ``folder`` (a dict), or None when it has none of ours."""
    doc = read_json_object(os.path.join(folder, MANIFEST))
    return doc if doc is not None and doc.get("writer") == _WRITER else None


def _ours(folder):
    """Whether ``folder`` is a real folder (not a symlink) that this command wrote whole:
    our manifest, listing every entry it holds."""
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    doc = _read_manifest(folder)
    if doc is None or not isinstance(doc.get("files"), list):
        return False
    return set(os.listdir(folder)) <= set(doc["files"]) | {MANIFEST}


def _check_not_overlapping(data_dir, out_dir):
    """Refuses an output that is the input, contains it or lies inside it (real paths)."""
    src, dst = os.path.realpath(data_dir), os.path.realpath(out_dir)
    if src == dst:
        raise DataError(f"the output {out_dir} is the input folder {data_dir}; choose a new folder "
                        "outside it")
    if src.startswith(dst.rstrip(os.sep) + os.sep):
        raise DataError(f"the output {out_dir} contains the input folder {data_dir}; choose a new "
                        "folder outside it")
    if dst.startswith(src.rstrip(os.sep) + os.sep):
        raise DataError(f"the output {out_dir} lies inside the input folder {data_dir}; choose a "
                        "new folder outside it")


def _sweep_leftovers(parent, base):
    """Removes ``.BASE.partial-*`` / ``.BASE.old-*`` folders that a killed run of this
    command left in ``parent``: only real folders holding our manifest whose writer is gone
    (its lock on the folder is free); a live run's are left alone."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not (name.startswith(f".{base}.partial-") or name.startswith(f".{base}.old-")):
            continue
        path = os.path.join(parent, name)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        inner = os.path.join(path, "x") if name.startswith(f".{base}.old-") else path
        if name.startswith(f".{base}.old-") and not os.path.lexists(inner):
            try:
                os.rmdir(path)  # an empty set-aside folder
            except OSError:
                pass
            continue
        if _read_manifest(inner) is None:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            shutil.rmtree(path, ignore_errors=True)  # rmtree never follows symlinks
        finally:
            os.close(fd)


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
    written. Returns ``{"train": n, "validation": n, "skipped": [paths], "hidden": [folders
    named ".*", left out: not classes], "files": [...]}``.
    """
    if isinstance(images_per_shard, bool) or not isinstance(images_per_shard, int) or images_per_shard < 1:
        raise ValueError(f"images_per_shard={images_per_shard!r} is not supported; expected a "
                         "positive integer")
    if on_corrupt not in ("fail", "skip"):
        raise ValueError(f"on_corrupt={on_corrupt!r} is not supported; accepted: 'fail', 'skip'")
    if not out_dir:
        raise ValueError("out_dir is empty; expected the folder to write the TFRecords to")
    out_dir = os.path.abspath(out_dir)
    _check_not_overlapping(data_dir, out_dir)
    if os.path.lexists(out_dir):
        if not overwrite:
            raise DataError(f"{out_dir} already exists; choose a new folder or pass --overwrite")
        if not _ours(out_dir):
            raise DataError(f"{out_dir} was not written by keras-resnet-make-tfrecords (no manifest "
                            f"{MANIFEST} listing all it holds, or it is a symlink), so --overwrite "
                            "leaves it alone; remove it yourself or choose a new folder")
    folder = FolderDataset(data_dir, on_corrupt=on_corrupt)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    _sweep_leftovers(parent, os.path.basename(out_dir))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    lock = None
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; the usual mode
    total = folder.sizes["train"] + folder.sizes["test"]
    done, skipped, counts = 0, list(folder.unreadable), {}  # entries left out at listing
    try:
        lock = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while this run lives: its folder is not a leftover
        manifest = {"writer": _WRITER, "files": []}
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f)  # first: the folder is provably ours from here on
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
        manifest["files"] = sorted(n for n in os.listdir(tmp) if n != MANIFEST)
        with open(os.path.join(tmp, MANIFEST + ".new"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        os.replace(os.path.join(tmp, MANIFEST + ".new"), os.path.join(tmp, MANIFEST))
        if os.path.lexists(out_dir):  # overwrite (ours, checked above): set the old folder aside, then swap
            if not _ours(out_dir):
                raise DataError(f"{out_dir} changed while the records were written and is no longer "
                                "only ours; it is left alone")
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "x"))
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        # A write the operating system refused (a full disk, ...): one line naming the output.
        if isinstance(e, tf.errors.OpError):
            refused = write_error_from_message(e, out_dir)
            if refused is not None and refused.errno != errno.EACCES:  # (an input may be unreadable)
                raise refused from None
        elif isinstance(e, OSError) and not isinstance(e, FileWriteError):
            raise file_write_error(e, out_dir) from None
        raise
    finally:
        if lock is not None:
            os.close(lock)
    return {"train": counts["train"], "validation": counts["test"], "skipped": skipped,
            "hidden": list(folder.hidden),
            "files": sorted(n for n in os.listdir(out_dir) if n != MANIFEST)}
