"""Train a keras_resnet model with tf.distribute (thin CLI over keras_resnet.training).

Installed as ``keras-resnet-train`` and ``python -m keras_resnet.train``; the repository's
``train.py`` calls the same :func:`main`.

    python3 train.py                       # CIFAR ResNet-20 on the bundled digits, CPU, ~1 min
    python3 train.py --export exports      # ... then export every format and print the report
    python3 train.py --dataset cifar10 --preset cifar          # the paper's CIFAR recipe
    python3 train.py --dataset folder --data-dir photos/ --model resnet50 --strategy mirrored
    python3 train.py --model resnet56 --init-from runs/digits_resnet20   # grow and fine-tune
    python3 train.py --evaluate runs/digits_resnet20        # a run directory or a .keras file
"""

import argparse
import sys

from .cli_util import HelpFormatter, check_distribution, flatten, list_of, quiet_tensorflow_logs


def _parser(prog="train.py"):
    from . import data as kdata
    from . import training as kt

    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=(
            "Linear scaling rule: --batch-size is per replica and --lr is the learning rate "
            "for that batch; with R replicas the global batch is batch-size x R and the "
            "learning rate lr x R (consider --warmup-epochs when R is large). Unset recipe "
            "flags come from the preset (default: chosen by dataset: digits, cifar or "
            "imagenet). Rerunning the same command resumes from the run directory's "
            "checkpoint. Multi-worker: run the same command on every worker with TF_CONFIG "
            "set; only the chief writes the run directory, which must be on storage every "
            "worker sees for resuming."
        ),
    )
    d = p.add_argument_group("data")
    d.add_argument("--dataset",
                   help="digits | cifar10 | cifar100 | folder | tfrecord | synthetic | tfds:NAME "
                   "(default: digits; with --evaluate: the run's)")
    d.add_argument("--data-dir", help="folder: <dir>/<class>/<image> (or <dir>/{train,test}/...); "
                   "tfrecord: directory with train-* and validation-* files; tfds: data_dir")
    d.add_argument("--image-size", type=int, help="model input size for folder/tfrecord/tfds/synthetic")
    d.add_argument("--num-classes", type=int, help="classes (tfrecord, synthetic)")
    d.add_argument("--label-offset", type=int,
                   help="added to TFRecord labels (-1 for 1-based ImageNet TFRecords; default: 0)")
    d.add_argument("--on-corrupt", choices=("fail", "skip"),
                   help="an unreadable image met while reading a folder or TFRecords: stop the run "
                   "naming the file (the last committed checkpoint is kept; exit status 2), or "
                   "skip it, logging and counting it (default: fail)")
    d.add_argument("--download", action="store_true",
                   help="allow keras.datasets / TFDS to download a missing dataset")
    d.add_argument("--augment", choices=kdata.AUGMENTATIONS,
                   help="augmentation preset (cifar: pad 4 + random crop + flip; imagenet: "
                   "random resized crop + flip, center crop for eval; shift: pad 1 + random crop)")
    d.add_argument("--val-split", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the training split (stratified; every k-th "
                   "record for files) as a validation split that chooses best.keras; 0: best.keras "
                   "is chosen on the test split")
    r = p.add_argument_group("recipe")
    r.add_argument("--preset", choices=sorted(kt.PRESETS),
                   help="recipe defaults; cifar = the paper's (batch 128, lr 0.1, momentum 0.9, "
                   "wd 1e-4, 64k iterations, lr/10 at 50%% and 75%%)")
    r.add_argument("--model", help="resnet20/32/44/56/110 (CIFAR), resnet18/34/50/101/152 "
                   "(ImageNet), or a keras_resnet constructor name")
    r.add_argument("--init-from", metavar="RUN_OR_KERAS",
                   help="start from a saved model (a run directory's last.keras, or a .keras "
                   "file) and fine-tune it; when --model is deeper, the model is deepened first "
                   "(keras_resnet.deepen: inserted blocks start as the identity)")
    r.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    r.add_argument("--iterations", type=int, help="total steps (instead of --epochs)")
    r.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training split")
    r.add_argument("--batch-size", type=int, help="per replica (global = this x replicas)")
    r.add_argument("--lr", type=float, help="learning rate for one replica's batch (scaled x replicas)")
    r.add_argument("--optimizer", choices=kt.OPTIMIZERS,
                   help="sgd (momentum, L2 weight decay) or adamw (decoupled weight decay); "
                   "default: the preset's")
    r.add_argument("--momentum", type=float, help="SGD momentum (default: the preset's)")
    r.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum for SGD (default: the preset's)")
    r.add_argument("--weight-decay", type=float,
                   help="on conv/dense kernels only (not BN parameters or biases); SGD: L2 "
                   "term in the loss, AdamW: decoupled")
    r.add_argument("--schedule", choices=kt.SCHEDULES,
                   help="learning-rate schedule after warmup (default: the preset's)")
    r.add_argument("--step-boundaries", type=list_of(float), nargs="+", metavar="FRACTION",
                   help="step schedule: fractions of training where lr /= 10, e.g. 0.5,0.75 or 0.5 0.75")
    r.add_argument("--warmup-epochs", type=float, help="linear learning-rate warmup")
    r.add_argument("--label-smoothing", type=float, help="label smoothing factor in [0, 1)")
    r.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation")
    r.add_argument("--deterministic", action="store_true",
                   help="deterministic TensorFlow ops and input order (the data order is always "
                   "seeded; without this flag parallel decoding of files may deliver "
                   "neighbouring images out of order, which is faster)")
    s = p.add_argument_group("hardware")
    s.add_argument("--strategy", choices=kt.STRATEGIES, default="auto",
                   help="auto: multi_worker when TF_CONFIG names several tasks, mirrored when "
                   "more than one GPU is visible, else one_device")
    s.add_argument("--cpu-replicas", type=int,
                   help="split the CPU into N logical devices (MirroredStrategy without GPUs)")
    s.add_argument("--sync-bn", action="store_true",
                   help="synchronized BatchNormalization (global-batch statistics); without it "
                   "the saved BN statistics are the chief's first replica's")
    s.add_argument("--precision", choices=kt.PRECISIONS, default="float32",
                   help="mixed_float16 uses dynamic loss scaling")
    s.add_argument("--jit", action="store_true", help="XLA-compile the forward/backward pass")
    s.add_argument("--steps-per-execution", type=int, default=16,
                   help="training steps per tf.function call")
    o = p.add_argument_group("output")
    o.add_argument("--run-dir", help="default: runs/<dataset>_<model>")
    o.add_argument("--checkpoint-steps", type=int,
                   help="also checkpoint every N steps inside an epoch (default: every epoch)")
    o.add_argument("--overwrite", action="store_true", help="start the run directory afresh")
    o.add_argument("--include-preprocessing", action=argparse.BooleanOptionalAction, default=None,
                   help="save best.keras/last.keras with the dataset's preprocessing inside, so "
                   "they take pixels in 0..255 (default); --no-include-preprocessing saves models "
                   "that take pixels x scale + offset as run.json's model_preprocessing says")
    o.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                   help="do not write TensorBoard scalars to <run-dir>/tensorboard")
    o.add_argument("--no-plot", dest="plot", action="store_false",
                   help="do not draw <run-dir>/curves.png")
    o.add_argument("--quiet", action="store_true", help="no progress output")
    o.add_argument("--verbose", action="store_true",
                   help="also show TensorFlow's own log lines (hidden by default)")
    o.add_argument("--export", metavar="DIR",
                   help="after training, export the run to every format in DIR (SavedModel, "
                   "TFLite, ONNX, each verified) and print the report; same as "
                   "export/export_all.py RUN_DIR --out DIR (--overwrite replaces existing exports)")
    p.add_argument("--evaluate", metavar="RUN_OR_KERAS",
                   help="only evaluate a saved model (a run directory or a .keras file) on the "
                   "test split of its run's dataset (--dataset etc. override run.json)")
    return p


def main(argv=None, prog="keras-resnet-train"):
    check_distribution()
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.step_boundaries is not None:
        args.step_boundaries = tuple(flatten(args.step_boundaries))
    quiet_tensorflow_logs(args.verbose)
    from . import data as kdata
    from . import files
    from . import training as kt

    try:
        if args.evaluate:
            kt.evaluate(args.evaluate, args.dataset, data_dir=args.data_dir,
                        image_size=args.image_size, num_classes=args.num_classes,
                        on_corrupt=args.on_corrupt, download=args.download or None,
                        label_offset=args.label_offset)
            return 0
        fields = {f for f in kt.TrainConfig.__dataclass_fields__}
        # Flags left unset take TrainConfig's defaults (the preset's, where it has one).
        values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
        values["verbose"] = 0 if args.quiet else 1
        result = kt.train(kt.TrainConfig(**values))
    except (ValueError, kdata.DataError, kt.TrainingError, files.FileWriteError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if args.export:
        from .export import cli as export_cli

        extra = (["--overwrite"] if args.overwrite else []) + (["--quiet"] if args.quiet else [])
        extra += ["--verbose"] if args.verbose else []
        return export_cli.main([str(result.run_dir), "--out", args.export, *extra],
                               prog=f"{prog} --export")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m keras_resnet.train"))
