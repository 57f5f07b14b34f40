"""The input pipeline: training, evaluation, calibration, benchmarks and tests all use
:func:`make_dataset`."""

import numpy as np
import tensorflow as tf

from ..preprocessing import apply_preprocessing
from .augment import decode_random_crop, transform
from .base import AUGMENTATIONS, DataError, Dataset, FileSource, IndexedSource, StreamSource
from .catalog import get_dataset


SHUFFLE_WINDOW = 10_000  # records; TFRecord/TFDS streams, after their file order is shuffled
CACHE_BYTES = 512 * 2**20  # evaluation batches are kept in memory only when they fit this


def epoch_records(src, epoch, shuffle, seed, shard, deterministic, pairs=True):
    """One epoch's ``(key, item)`` records, shuffled for ``(seed, epoch)`` when ``shuffle``,
    this input pipeline's shard only. ``key`` (an int64 fixed per record whatever the
    order) keys the record's random augmentation; ``item`` goes to the source's ``load``.
    For an :class:`IndexedSource` the key is the index itself: ``pairs=False`` gives the
    indices alone (no per-record map to pair them)."""
    num, index = shard
    seeds = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    if isinstance(src, IndexedSource):
        order = tf.range(src.n, dtype=tf.int64)
        if shuffle:  # the whole list of (cheap) indices: a true shuffle
            order = tf.random.experimental.stateless_shuffle(order, seed=seeds)
        ds = tf.data.Dataset.from_tensor_slices(order)
        if num > 1:  # each record is a file here, so this shards by file
            ds = ds.shard(num, index)
        return ds.map(lambda i: (i, i)) if pairs else ds
    if isinstance(src, FileSource):
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
        ds = _block_shuffle(ds, seeds, SHUFFLE_WINDOW)
    return ds


def _block_shuffle(ds, seeds, block):
    """``ds`` shuffled within consecutive blocks of ``block`` records, each block's order
    drawn statelessly from ``(seeds, block number)``. Unlike ``Dataset.shuffle`` (whose seed
    must be a Python number, and is combined with the global seed), the order depends on
    nothing but ``seeds``, which may be tensors (an epoch inside ``flat_map``). The next
    block is read while the current one is consumed."""
    spec = ds.element_spec
    flat = tf.nest.flatten(spec)
    # Components that are not scalars (TFDS's decoded images) travel as serialized tensors,
    # so that blocks of images of different shapes batch.
    pack = [s.shape.rank != 0 for s in flat]

    def to_scalars(*elem):
        return tuple(tf.io.serialize_tensor(t) if p else t
                     for t, p in zip(tf.nest.flatten(elem), pack))

    def from_scalars(*elem):
        out = [tf.ensure_shape(tf.io.parse_tensor(t, s.dtype), s.shape) if p else t
               for t, s, p in zip(elem, flat, pack)]
        return tf.nest.pack_sequence_as(spec, out)

    def shuffle_block(b, elems):
        n = tf.shape(elems[0], out_type=tf.int64)[0]
        key = tf.stack([seeds[0] * 100003 + seeds[1], b])
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=key)
        return tuple(tf.gather(t, order) for t in elems)

    ds = ds.map(to_scalars).batch(block).enumerate().map(shuffle_block).prefetch(1)
    return ds.unbatch().map(from_scalars)


def make_dataset(dataset, split="train", batch_size=128, training=None, augment=None, seed=0,
                 epoch=0, preprocess=False, prefetch=True, *, epochs=1, steps_per_epoch=None,
                 skip_batches=0, shard=None, deterministic=None, shuffle=None, limit=None,
                 preprocessing=None, cache_bytes=CACHE_BYTES, image_ops=None, image_size=None,
                 repeats=1):
    """A batched ``tf.data.Dataset`` of ``(images, int32 labels)`` for one split: the one
    input pipeline of keras_resnet (the trainer, evaluation, export calibration and the
    benchmarks are built on it). Its defaults are the trainer's training input.

    ``training`` (default: ``split == "train"``) shuffles, augments with ``augment``
    (default: the dataset's preset) and drops each epoch's last partial batch.

    Images are **pixels in 0..255** by default: ``uint8`` where the source holds whole
    pixel values and the augmentation keeps them whole (arrays of integer pixels under the
    ``none``, ``shift`` and ``cifar`` presets: padding, cropping and flipping), else
    float32 (a resize interpolates). The model applies the preprocessing as its first
    layers (the trainer wraps its model in :func:`keras_resnet.training.pixel_model`), so
    no per-pixel arithmetic is left on the CPU and the host-to-device copy of ``uint8``
    batches is 4x smaller. ``preprocess=True`` gives float32 ``pixels * scale + offset``
    (``preprocessing`` or the dataset's) instead, computed here: the same numbers.

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
    neighbouring images may trade places between batches, also across an epoch's end
    (each keeps its augmentation).

    Memory: no decoded image is kept beyond the shuffle window and the prefetch buffers;
    files are read again each epoch (the OS page cache holds recently read files).
    Evaluation batches are cached only when they fit ``cache_bytes``.

    Encoded images that cannot be decoded take the dataset's ``on_corrupt`` path:
    ``"fail"`` stops iteration with TensorFlow's decoding error, which
    :func:`unreadable_image_error` turns into one naming the file; ``"skip"`` leaves them
    out and appends them to ``dataset.unreadable``.

    Recipe hooks: ``image_ops(pixels, seed)`` runs on each example's 0..255 pixels (uint8
    or float32, its dtype kept) after the crop and flip, before the preprocessing
    (RandAugment, TrivialAugment, random erasing; ``seed`` a ``[2]`` int64 tensor keyed as the crop's). ``image_size`` crops
    training images to that size instead of the dataset's (a train resolution distinct
    from the test one). ``repeats`` > 1 (repeated augmentation): each block of
    ``batch_size`` records is emitted ``repeats`` times in a row, each copy with its own
    augmentation, so that consecutive batches (which go to different replicas) hold
    differently augmented copies of the same images; an epoch keeps its length.
    """
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
    shape = dataset.input_shape
    if image_size is not None:
        shape = (int(image_size), int(image_size), shape[-1])
    if steps_per_epoch is None and training and isinstance(src, IndexedSource):
        local = len(range(index, src.n, num))
        steps_per_epoch = local // batch_size
        if steps_per_epoch < 1:
            raise DataError(f"batch_size={batch_size} is larger than the {split} split of "
                            f"{dataset.name!r} ({local} images)")
    skip_corrupt = encoded and dataset.on_corrupt == "skip"
    seed_ = tf.constant(int(seed), tf.int64)
    first_epoch = int(epoch)
    plain = tf.autograph.experimental.do_not_convert  # no Python control flow on tensors
    indexed = isinstance(src, IndexedSource)
    keyed_by_index = indexed and int(repeats) == 1
    # Indexed sources whose every record is read (no skipped files) give each training
    # epoch exactly steps_per_epoch batches of records, counted before reading.
    exact = bool(training and steps_per_epoch and indexed and not skip_corrupt)
    example = _example_fn(dataset, src, augment, training,
                          (preprocessing or dataset.preprocessing) if preprocess else None, seed_,
                          shape, image_ops)

    def records(e):
        # Indexed sources pass their indices alone (the key is the index), unless repeated
        # augmentation gives each copy a key of its own.
        ds = epoch_records(src, e, shuffle, seed_, (num, index), deterministic, pairs=not keyed_by_index)
        if repeats > 1:
            ds = _repeat_records(ds, batch_size, int(repeats))
        if training and steps_per_epoch:
            if exact:
                ds = ds.repeat().take(steps_per_epoch * batch_size)  # exact, before reading
            else:
                ds = ds.repeat(2)  # room for skipped files, or a short TFRecord shard
        if skip_batches:
            ds = ds.skip(tf.where(e == first_epoch, tf.cast(skip_batches * batch_size, tf.int64),
                                  tf.constant(0, tf.int64)))
        if limit is not None:
            ds = ds.take(limit)
        return ds

    # One map per record: an index (indexed sources, the key itself) or a (key, item).
    if keyed_by_index:
        def per_record(e, i):
            return example(e, i, i)
    else:
        def per_record(e, record):
            return example(e, *record)

    def batched(ds):
        # A plain batch, as the decode limit does: the copy into the batch is memory-bound,
        # and parallel batching only takes cores from the decoding on a small machine.
        return ds.batch(batch_size, drop_remainder=training)

    if exact and limit is None:
        # Every epoch holds whole batches of records known before anything is read: the
        # epochs' records stream through ONE map and ONE batch, so that decoding runs on
        # across an epoch's end instead of draining and restarting a map per epoch. The
        # epoch travels with each record (its augmentation keys on it).
        def tagged(e):
            return tf.data.Dataset.zip((tf.data.Dataset.from_tensors(e).repeat(), records(e)))

        if epochs == 1:
            ds = tagged(tf.constant(first_epoch, tf.int64))
        else:
            ds = tf.data.Dataset.range(first_epoch, first_epoch + int(epochs)).flat_map(plain(tagged))
        ds = ds.map(plain(per_record), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=deterministic)
        ds = batched(ds)
    else:
        def one_epoch(e):
            ds = records(e).map(plain(lambda *r: per_record(e, r[0] if keyed_by_index else r)),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            if skip_corrupt:
                ds = ds.filter(plain(lambda x, y, ok: ok)).map(plain(lambda x, y, ok: (x, y)))
            ds = batched(ds)
            if training and steps_per_epoch:
                ds = ds.take(tf.where(e == first_epoch,
                                      tf.cast(steps_per_epoch - skip_batches, tf.int64),
                                      tf.cast(steps_per_epoch, tf.int64)))
            return ds

        if epochs == 1:
            ds = one_epoch(tf.constant(first_epoch, tf.int64))
        else:
            ds = tf.data.Dataset.range(first_epoch, first_epoch + int(epochs)).flat_map(plain(one_epoch))
    # Labels: cast once per batch, not per record.
    ds = ds.map(plain(lambda x, y: (x, tf.cast(y, tf.int32))))
    if not training and _fits(src, shape, limit, cache_bytes):
        ds = ds.cache()
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _repeat_records(ds, block, repeats):
    """Each block of ``block`` ``(key, item)`` records ``repeats`` times in a row, copy
    ``r`` keyed ``key * repeats + r`` (its own augmentation draws)."""
    def copies(keys, items):
        return tf.data.Dataset.range(repeats).map(lambda r: (keys * repeats + r, items))

    return ds.batch(block).flat_map(copies).unbatch()


def _example_fn(dataset, src, augment, training, preprocessing, seed, shape=None, image_ops=None):
    """``example(epoch, key, item) -> (pixels, label)`` (``(pixels, label, ok)`` under
    ``on_corrupt="skip"``): one record read, decoded, augmented (keyed on ``(seed, epoch,
    key)``) and, only when ``preprocessing`` is given, preprocessed to float32. ``ok`` is
    False only for an unreadable image, which is also added to ``dataset.unreadable``.

    The per-record work is only what the image needs: the stateless seed of the record,
    the read, the decode (fused with the crop for JPEGs), the crop/resize/flip. Labels are
    cast per batch (see :func:`make_dataset`); the file's name travels only on the
    ``skip`` path (the ``fail`` path names an unreadable file afterwards, see
    :func:`unreadable_image_error`).

    ``shape`` (default: the dataset's) is the size examples are cropped to (a train
    resolution of its own); ``image_ops(pixels, seed)`` (training only) runs on the
    augmented pixels, before any preprocessing."""
    shape = shape or dataset.input_shape
    channels = shape[-1]
    encoded = src.encoded
    fused = encoded and training and augment == "imagenet"
    unreadable = dataset.unreadable

    def pixels(e, key, raw):
        s = tf.stack([seed * 1000003 + e, key])
        if fused:
            x = decode_random_crop(raw, shape[0], channels, s)
        else:
            x = dataset.decode(raw) if encoded else raw
            x = transform(x, shape, augment, training, seed=s)
        # Per-image ops on the augmented pixels (0..255, ``shape``): after the crop and
        # flip, before any preprocessing, keyed on ``s``.
        if image_ops is not None and training:
            x = tf.ensure_shape(image_ops(x, s), shape)
        if preprocessing is not None:
            x = apply_preprocessing(tf.cast(x, tf.float32), preprocessing)
        return x

    def note_unreadable(name):
        path = name.numpy().decode(errors="replace")
        if path not in unreadable:
            unreadable.append(path)
        return False

    @tf.autograph.experimental.do_not_convert
    def example(e, key, item):
        raw, label, name = src.load(item) if isinstance(src, IndexedSource) else item
        if not encoded or dataset.on_corrupt == "fail":
            # The fast path: a decoding error ends iteration; unreadable_image_error()
            # then finds and names the file.
            return pixels(e, key, raw), label
        # on_corrupt="skip": an unreadable file must not end the pipeline. Decode in a
        # nested dataset that ignores the error and falls back to a placeholder marked not
        # ok (about 15% more CPU per image than the fast path).
        x, ok = guarded(lambda r: pixels(e, key, r), raw, tf.zeros(shape, tf.float32))
        ok = tf.cond(ok, lambda: ok, lambda: tf.ensure_shape(
            tf.py_function(note_unreadable, [name], tf.bool), []))
        return x, label, ok

    return example


def _fits(src, shape, limit, cache_bytes):
    """Whether a split's decoded images (at most ``limit``) fit ``cache_bytes``."""
    n = src.n if isinstance(src, IndexedSource) else (src.size if isinstance(src, StreamSource) else None)
    if n is None or not cache_bytes:
        return False
    if limit is not None:
        n = min(n, limit)
    return n * int(np.prod(shape)) * 4 <= cache_bytes


def guarded(fn, raw, fallback):
    """``(fn(raw), True)``, or ``(fallback, False)`` where ``fn`` raises."""
    good = tf.data.Dataset.from_tensors(raw).map(lambda r: (fn(r), True)).ignore_errors()
    bad = tf.data.Dataset.from_tensors((fallback, False))
    return good.concatenate(bad).take(1).get_single_element()
