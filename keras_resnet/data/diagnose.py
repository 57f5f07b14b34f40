"""Naming the file behind a decoding error: the unreadable image, the damaged TFRecord shard."""

import os
import re

import tensorflow as tf

from .base import DataError, Dataset, IndexedSource
from .pipeline import epoch_records, guarded


def locate_unreadable(dataset, split="train", seed=0, epoch=0, shard=None, shuffle=None,
                      start=0):
    """The name (path) of the first record of ``split`` that cannot be decoded, in the
    order :func:`make_dataset` reads it for ``(seed, epoch, shard, shuffle)``, from position
    ``start`` of the epoch on; None when every one decodes. Decodes in parallel."""
    src = dataset._source(split)
    if not src.encoded:
        return None
    shuffle = split == "train" if shuffle is None else shuffle
    channels = dataset.input_shape[-1]

    def check(key, item):
        raw, _, name = src.load(item) if isinstance(src, IndexedSource) else item
        _, ok = guarded(lambda r: tf.shape(tf.io.decode_image(
            r, channels=channels, expand_animations=False))[0], raw, tf.constant(0, tf.int32))
        return ok, name

    ds = epoch_records(src, tf.constant(int(epoch), tf.int64), shuffle,
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
    vanished = _vanished_file(error, dataset, split)
    if vanished is not None:
        return vanished
    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                              tf.errors.UnknownError)):
        return None
    if not isinstance(dataset, Dataset) or not dataset._source(split).encoded:
        return None
    found = re.search(r"\[keras_resnet: TFRecord label out of range\] \[(.*?)\] \[(-?\d+)\] \[(.*?)\]",
                      str(error))
    if found:  # TFRecordDataset's range check
        return DataError(f"{found.group(1)}: label {found.group(2)} is {found.group(3)} "
                         f"({dataset.num_classes} classes); check --num-classes / --label-offset "
                         "or classes.txt")
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


# TensorFlow's words for a file it could not open: "<path>; No such file or directory".
_OPEN_FAILURES = ("No such file or directory", "Permission denied", "Is a directory",
                  "Not a directory", "Too many levels of symbolic links")


def _vanished_file(error, dataset, split):
    """A :class:`DataError` naming the file behind ``error`` when TensorFlow could not open
    it (deleted, moved or made unreadable after the dataset was listed, while training
    ran), else None. The name is taken from TensorFlow's message and must be one of the
    split's listed files."""
    if not isinstance(error, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
                              tf.errors.FailedPreconditionError, tf.errors.UnknownError)):
        return None
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(getattr(error, "message", None) or error))
    for reason in _OPEN_FAILURES:
        found = re.search(rf"(?:^|\s)([^\n]*?); {reason}", text)
        if found is None:
            continue
        path = found.group(1).strip()
        listed = getattr(dataset, "files", None) or getattr(getattr(dataset, "base", None), "files", None)
        if listed is not None:
            try:
                paths = {p for p, _ in listed(split if split != "validation" else "train")}
            except (ValueError, KeyError):
                paths = set()
            if path not in paths:  # words before the name: find the listed file named
                path = next((p for p in paths if f"{p}; {reason}" in text), None)
                if path is None:
                    continue
        elif not dataset._source(split).encoded:
            return None
        state = "no longer exists" if not os.path.lexists(path) else f"cannot be opened ({reason})"
        return DataError(f"{path} {state}; it was listed when the dataset was read and changed while "
                         "training ran: restore it, or rerun (the folder is listed again), or use "
                         "--on-corrupt skip to leave such images out")
    return None


def damaged_file(dataset, split="train"):
    """The first file of ``dataset``'s ``split`` whose records cannot be read to the end
    (a truncated or corrupt TFRecord shard), or None."""
    source = dataset._source(split)
    for path in getattr(source, "files", ()):
        try:
            for _ in source.read(path):
                pass
        except tf.errors.DataLossError:
            return path
    return None
