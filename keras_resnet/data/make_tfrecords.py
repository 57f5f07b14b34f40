"""``keras-resnet-make-tfrecords``: the command line of :func:`write_tfrecords` (parses its
arguments before TensorFlow is imported)."""

import argparse
import os
import sys
import time

from ..cli_util import add_version, number, setup_process


def make_tfrecords_main(argv=None):
    """``keras-resnet-make-tfrecords``: an image folder -> shuffled, sharded TFRecords."""
    p = argparse.ArgumentParser(
        allow_abbrev=False,  # a prefix of a flag is a typo, not that flag
        prog="keras-resnet-make-tfrecords",
        description="Write an image folder (DATA_DIR/<class>/<image>, or DATA_DIR/train/... + "
        "DATA_DIR/test/...) as shuffled, sharded TFRecords that `train.py --dataset tfrecord "
        "--data-dir OUT_DIR` reads (train-*, validation-*, classes.txt).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data_dir", help="the image folder")
    p.add_argument("out_dir", help="the folder to create (written under a temporary name, "
                   "then renamed)")
    p.add_argument("--images-per-shard", type=number(int, 1), default=1024,
                   help="records per file (ImageNet's 1.28M training images -> ~1,250 files)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="seed of the shuffle before sharding")
    p.add_argument("--on-corrupt", choices=("fail", "skip"), default="fail",
                   help="an unreadable image: fail naming it, or leave it out and count it")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    add_version(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    setup_process()
    from .tfrecords import write_tfrecords

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
        from ..files import FileWriteError, describe_os_error

        if isinstance(e, OSError) and not isinstance(e, FileWriteError):
            e = describe_os_error(e, e.filename or args.out_dir, "use")
        sys.stderr.write("\n" if not args.quiet else "")
        print(f"keras-resnet-make-tfrecords: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out['train']} training and {out['validation']} validation images to "
          f"{os.path.abspath(args.out_dir)} ({len(out['files']) - 1} TFRecord files"
          + (f"; skipped {len(out['skipped'])} unreadable image(s)" if out["skipped"] else "")
          + ")")
    if out["hidden"]:
        from .on_disk import _hidden_note

        print(_hidden_note(out["hidden"]))
    return 0
