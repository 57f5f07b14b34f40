#!/usr/bin/env python3
"""Input-pipeline throughput (images/s) and peak memory: keras_resnet's training pipeline
(``keras_resnet.data.make_dataset`` with its defaults, the trainer's path, ``imagenet``
preset) against two peers written without keras_resnet, on a JPEG folder this script makes
from real photos, in one run:

* ``limit``, the decode limit: the file list shuffled, ``tf.io.read_file``, the fused
  ``tf.image.decode_and_crop_jpeg`` with a ``tf.image.sample_distorted_bounding_box``
  window, resize to 224, random flip, nothing else; what this CPU can decode and crop.
* ``peer``, Model Garden's ImageNet input as its authors write it: the same, plus the
  per-channel normalisation in ``tf.data``.

The folder: ``--images`` JPEGs (default 1,500) of 500x375 pixels in 10 class folders, each a
crop (some mirrored) of scikit-learn's two bundled sample photos (427x640; nothing is
downloaded). Every pipeline maps with ``num_parallel_calls=AUTOTUNE``, batches 128 and
prefetches. keras_resnet delivers pixels (0..255; its model preprocesses them as its
first layer, inside the compiled step); the peer delivers normalised images.

Each measurement runs in its own process (so peak memory, ``ru_maxrss``, is its own) pinned
to ``N`` cores with ``sched_setaffinity`` before TensorFlow starts; the processes alternate
in rounds (the order rotates each round), so machine noise hits all alike, and the table
gives the median round and the range of the per-round ratios. Figures: the first epoch
(listing and pipeline start included) and the mean of the later epochs, batches of 128
drawn as fast as the pipeline gives them; every pipeline streams all epochs from one
dataset, as training does (keras_resnet: ``make_dataset(epochs=...)``, what the trainer
calls; the peers: ``repeat()``). Images per CPU second (the process's user and system
time, every thread) measure the work per image, which other processes on a shared machine
disturb much less than the wall clock. The load average (``os.getloadavg``) is printed before and
after: on a shared machine a high load makes the figures noisy.

A second part times start-up on a ``--startup-files`` folder (default 200,000 files: hard
links to one small JPEG, in a temporary folder removed afterwards): listing the folder
and building the dataset, then the first batch.

    python3 bench/bench_input.py                      # 2 and 1 cores, 3 rounds, 3 epochs
    python3 bench/bench_input.py --cores 2 --rounds 2 --startup-files 0
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PIPELINES = ("keras_resnet", "peer", "limit")
SIZE = 224
BATCH = 128
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def make_folder(root, images, classes=10, size=(375, 500), seed=0):
    """``root/train/<class>/``: ``images`` real-photo JPEG crops of ``size`` (h, w) in
    ``classes`` class folders (``root/test/`` holds one more per class, so keras_resnet
    trains on all of ``train/``, as the peer does)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for i in range(images + classes):
        split = "train" if i < images else "test"
        photo = photos[i % len(photos)]
        y = int(rng.integers(0, photo.shape[0] - size[0] + 1))
        x = int(rng.integers(0, photo.shape[1] - size[1] + 1))
        tile = photo[y:y + size[0], x:x + size[1]]
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        folder = os.path.join(root, split, f"class{i % classes:02d}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(tile)).save(
            os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def labelled_files(data_dir):
    """The folder's files and class indices (class folders in sorted order), as both peers
    list them: plain ``os.listdir``, nothing of keras_resnet."""
    paths, labels = [], []
    for label, c in enumerate(sorted(os.listdir(data_dir))):
        for f in sorted(os.listdir(os.path.join(data_dir, c))):
            paths.append(os.path.join(data_dir, c, f))
            labels.append(label)
    return paths, labels


def peer_dataset(data_dir):
    """The Model-Garden-style pipeline, as its authors write it."""
    import tensorflow as tf

    paths, labels = labelled_files(data_dir)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.shuffle(len(paths), reshuffle_each_iteration=True).repeat()

    def parse(path, label):
        image_bytes = tf.io.read_file(path)
        shape = tf.image.extract_jpeg_shape(image_bytes)
        bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, bounding_boxes=bbox, min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        offset_y, offset_x, _ = tf.unstack(begin)
        target_height, target_width, _ = tf.unstack(size)
        crop_window = tf.stack([offset_y, offset_x, target_height, target_width])
        image = tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3)
        image = tf.image.resize(image, [SIZE, SIZE], method=tf.image.ResizeMethod.BILINEAR)
        image = tf.image.random_flip_left_right(image)
        image = (image - tf.constant(MEAN)) / tf.constant(STD)
        return image, label

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def limit_dataset(data_dir):
    """The decode limit: read, fused decode-and-crop, resize, flip, nothing else."""
    import tensorflow as tf

    paths, labels = labelled_files(data_dir)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.shuffle(len(paths), reshuffle_each_iteration=True).repeat()

    def parse(path, label):
        image_bytes = tf.io.read_file(path)
        bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.image.extract_jpeg_shape(image_bytes), bounding_boxes=bbox,
            min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True)
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
        image = tf.image.resize(image, [SIZE, SIZE], method="bilinear")
        return tf.image.random_flip_left_right(image), label

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def worker(name, data_dir, epochs, cores):
    """One measurement, in this process: prints a JSON line."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import tensorflow as tf

    from keras_resnet import data as kdata

    tf.config.threading.set_inter_op_parallelism_threads(cores)
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    t0, cpu_t0 = time.perf_counter(), _cpu_seconds()
    # All stream every epoch from one dataset, as training does: keras_resnet with
    # make_dataset(epochs=...) (what the trainer calls), the peers with repeat().
    if name == "peer":
        ds = peer_dataset(os.path.join(data_dir, "train"))
    elif name == "limit":
        ds = limit_dataset(os.path.join(data_dir, "train"))
    else:  # make_dataset's defaults: the trainer's training input
        dataset = kdata.get_dataset("folder", data_dir=data_dir, image_size=SIZE)
        ds = kdata.make_dataset(dataset, "train", BATCH, epoch=0, epochs=epochs)
    steps = len([f for c in os.listdir(os.path.join(data_dir, "train"))
                 for f in os.listdir(os.path.join(data_dir, "train", c))]) // BATCH
    rates, per_cpu, it = [], [], iter(ds)
    for e in range(epochs):
        start = t0 if e == 0 else time.perf_counter()
        cpu0 = cpu_t0 if e == 0 else _cpu_seconds()
        n = 0
        for _ in range(steps):
            x, y = next(it)
            n += int(y.shape[0])
        rates.append(n / (time.perf_counter() - start))
        per_cpu.append(n / (_cpu_seconds() - cpu0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"name": name, "cores": cores, "first": rates[0],
                      "later": sum(rates[1:]) / max(1, len(rates) - 1), "peak": peak,
                      "cpu_first": per_cpu[0],
                      "cpu_later": sum(per_cpu[1:]) / max(1, len(per_cpu) - 1), "images": n}))


def _cpu_seconds():
    """CPU seconds this process has used (every thread, user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(name, data_dir, epochs, cores):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name,
                           "--data-dir", data_dir, "--epochs", str(epochs), "--cores", str(cores)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_input.py: {name} on {cores} core(s) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def startup(files):
    """Seconds to list a ``files``-image folder and build the dataset, and to a first batch."""
    import tensorflow as tf

    from keras_resnet import data as kdata

    root = tempfile.mkdtemp(prefix="bench_input_startup_")
    try:
        classes = 1000
        jpeg = tf.io.encode_jpeg(tf.zeros([32, 32, 3], tf.uint8))
        for i in range(files):
            folder = os.path.join(root, "data", f"c{i % classes:04d}")
            if i < classes:  # one small JPEG per class, hard-linked (links per file are limited)
                os.makedirs(folder)
                tf.io.write_file(os.path.join(root, f"{i}.jpg"), jpeg)
            os.link(os.path.join(root, f"{i % classes}.jpg"),
                    os.path.join(folder, f"{i:07d}.jpg"))
        t0 = time.perf_counter()
        ds = kdata.get_dataset("folder", data_dir=os.path.join(root, "data"), image_size=32)
        listed = time.perf_counter() - t0
        next(iter(kdata.make_dataset(ds, "train", 128)))
        first = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return listed, first, sum(ds.sizes.values())


def machine():
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                      if line.startswith("model name")), platform.processor())
        flags = " ".join(sorted({w for w in info.split() if w.startswith("avx512")})) or "no AVX-512"
    except OSError:
        model = platform.processor()
    return f"{model}, {os.cpu_count()} logical CPUs ({len(os.sched_getaffinity(0))} usable), {flags}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=1500, help="JPEGs in the bench folder")
    p.add_argument("--data-dir", help="use this folder instead of making one in /tmp")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (>= 2)")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds; the median is reported (0: only the start-up part)")
    p.add_argument("--cores", type=int, nargs="+", default=[2, 1],
                   help="core counts to measure (the first one is the headline)")
    p.add_argument("--startup-files", type=int, default=200_000,
                   help="files in the start-up folder (0: skip that part)")
    p.add_argument("--target", type=float, default=3000.0,
                   help="images/s a GPU consumes (ResNet-50, one H100, mixed precision)")
    p.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.data_dir, args.epochs, args.cores[0])
        return 0
    if args.epochs < 2 or args.rounds < 0 or args.images < BATCH:
        p.error(f"need --epochs >= 2, --rounds >= 0 and --images >= {BATCH}")
    available = len(os.sched_getaffinity(0))
    if any(c < 1 or c > available for c in args.cores):
        p.error(f"--cores must be between 1 and {available} (usable cores here)")

    if args.rounds:
        throughput(args)
    if args.startup_files:
        listed, first, n = startup(args.startup_files)
        print(f"\nstart-up, {n} files (hard links to small JPEGs, 1,000 classes): "
              f"listing and building the dataset {listed:.2f} s, first batch after {first:.2f} s")
    return 0


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def throughput(args):
    made = None
    data_dir = args.data_dir
    if not data_dir:
        made = tempfile.mkdtemp(prefix="bench_input_")
        data_dir = os.path.join(made, "photos")
        print(f"making {args.images} JPEGs (500x375, 10 classes) in {data_dir} ...", flush=True)
        make_folder(data_dir, args.images)
    load_before = os.getloadavg()
    try:
        rounds = {}
        for r in range(args.rounds):
            for cores in args.cores:
                k = r % len(PIPELINES)
                for name in PIPELINES[k:] + PIPELINES[:k]:  # who goes first rotates
                    m = run_worker(name, data_dir, args.epochs, cores)
                    print(f"round {r + 1} {name:12s} {cores} core(s): first epoch "
                          f"{m['first']:.0f} img/s, later {m['later']:.0f} img/s "
                          f"({m['cpu_later']:.0f} img/CPU-s), peak "
                          f"{m['peak'] / 2**30:.2f} GiB", flush=True)
                    rounds.setdefault((name, cores), []).append(m)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    load_after = os.getloadavg()

    print(f"\nmachine: {machine()}; Python {platform.python_version()}")
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}; {args.images} JPEGs 500x375, batch {BATCH}, "
          f"{args.epochs} epochs a process, median of {args.rounds} alternating rounds; "
          f"load average (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load_before)} before, "
          f"{', '.join(f'{v:.2f}' for v in load_after)} after\n")
    print("| cores | figure | keras_resnet | peer | limit | vs peer | vs limit | "
          "per-round vs peer | per-round vs limit |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for cores in args.cores:
        k, q, lim = (rounds[(n, cores)] for n in PIPELINES)
        for fig, unit in (("first", "img/s"), ("later", "img/s"), ("cpu_first", "img/CPU-s"),
                          ("cpu_later", "img/CPU-s"), ("peak", "GiB")):
            scale = 2**30 if fig == "peak" else 1
            med = [_median([m[fig] for m in runs]) for runs in (k, q, lim)]
            vs_peer = [a[fig] / b[fig] for a, b in zip(k, q)]
            vs_limit = [a[fig] / b[fig] for a, b in zip(k, lim)]
            label = {"first": "first epoch", "later": "later epochs", "peak": "peak memory",
                     "cpu_first": "first epoch, per CPU second",
                     "cpu_later": "later epochs, per CPU second"}[fig]
            print(f"| {cores} | {label} ({unit}) | {med[0] / scale:.2f} | {med[1] / scale:.2f} | "
                  f"{med[2] / scale:.2f} | {_median(vs_peer):.2f}x | {_median(vs_limit):.2f}x | "
                  f"{min(vs_peer):.2f}-{max(vs_peer):.2f} | {min(vs_limit):.2f}-{max(vs_limit):.2f} |")
    ones = [c for c in args.cores if c == 1]
    if ones:
        per_core = _median([m["later"] for m in rounds[("keras_resnet", 1)]])
        print(f"\nkeras_resnet on 1 core: {per_core:.0f} img/s (later epochs) -> "
              f"{args.target:.0f} img/s needs about {args.target / per_core:.0f} such cores "
              "at linear scaling")


if __name__ == "__main__":
    sys.exit(main())
