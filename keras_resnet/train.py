"""Train a keras_resnet model with tf.distribute (thin CLI over keras_resnet.training).

Installed as ``keras-resnet-train`` and ``python -m keras_resnet.train``; the repository's
``train.py`` calls the same :func:`main`.

    python3 train.py                       # CIFAR ResNet-20 on the bundled digits, CPU, ~1 min
    python3 train.py --export exports      # ... then export every format and print the report
    python3 train.py --dataset cifar10 --recipe he2015-cifar   # the paper's CIFAR recipe
    python3 train.py --dataset folder --data-dir photos/ --recipe rsb-a3 --set model.drop_path_rate=0.05
    python3 train.py --config runs/digits_resnet20/run.json --run-dir runs/again   # rerun a run
    python3 train.py --dataset folder --data-dir photos/ --model resnet50 --strategy mirrored
    python3 train.py --model resnet56 --init-from runs/digits_resnet20   # grow and fine-tune
    python3 train.py --dataset folder --data-dir photos/ --model resnet18 --image-size 64 \
        --init-from resnet18.keras --freeze-epochs 2 --backbone-lr-mult 0.1   # new head
    python3 train.py --evaluate runs/digits_resnet20        # a run directory or a .keras file
"""

import argparse
import contextlib
import os
import signal
import sys
import threading

from .cli_util import (HelpFormatter, add_version, check_distribution, exit_on_os_error, flag_error, flatten,
                       given_flags, list_of, number, setup_process)

# Which datasets each dataset flag means something for (others would silently ignore it).
DATASET_FLAGS = {
    "data_dir": ("folder", "tfrecord", "tfds"),
    "image_size": ("folder", "tfrecord", "tfds", "synthetic"),
    "num_classes": ("tfrecord", "synthetic"),
    "label_offset": ("tfrecord",),
    "on_corrupt": ("folder", "tfrecord"),
}
# The flags --evaluate reads; any other is refused with it rather than ignored.
EVALUATE_FLAGS = {"evaluate", "dataset", "data_dir", "image_size", "num_classes", "label_offset",
                  "on_corrupt", "download", "quiet", "verbose"}


def _ranged(name, kind=int):
    """An argparse ``type`` for the numeric setting ``name`` in its documented range
    (:data:`keras_resnet.training.config.RANGES`), checked as the flags are parsed."""
    from .training import config

    low, high = config.RANGES[name]
    return number(kind, low, high, low_open=name in config.LOW_OPEN)


def _parser(prog="train.py"):
    from . import data as kdata
    from . import training as kt

    p = argparse.ArgumentParser(
        allow_abbrev=False,  # a prefix of a flag is a typo, not that flag
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
    d.add_argument("--image-size", type=_ranged("image_size"), help="model input size for folder/tfrecord/tfds/synthetic")
    d.add_argument("--num-classes", type=_ranged("num_classes"), help="classes (tfrecord, synthetic)")
    d.add_argument("--label-offset", type=_ranged("label_offset"),
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
    d.add_argument("--val-split", type=number(float, 0, 1, high_open=True), default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the training split (stratified; every k-th "
                   "record for files) as a validation split that chooses best.keras; 0 (default): "
                   "no split chooses, best.keras is the last epoch's model (the test split never "
                   "chooses)")
    r = p.add_argument_group("recipe")
    from .training import recipes as krecipes

    r.add_argument("--recipe", metavar="NAME",
                   help="a shipped recipe whose settings fill every one not given: "
                   + ", ".join(krecipes.list_recipes()) + " (docs/recipes.md; default: "
                   "digits, he2015-cifar or he2015-imagenet by dataset)")
    r.add_argument("--config", metavar="FILE",
                   help="settings from a YAML or JSON file (a mapping of settings, or "
                   "'recipe: NAME' with 'settings:'), or a run's run.json to rerun it; flags "
                   "given beside it win, --set wins over both")
    r.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override one setting, e.g. --set mixup_alpha=0.2 or --set "
                   "model.drop_path_rate=0.05 (model.<option> of the model's constructor: "
                   "drop_path_rate, zero_init, attention, output_stride, stem, ...); repeatable")
    r.add_argument("--preset", choices=sorted(kt.PRESETS),
                   help="today's names of recipes: digits, cifar (= he2015-cifar: batch 128, "
                   "lr 0.1, momentum 0.9, wd 1e-4, 64k iterations, lr/10 at 50%% and 75%%), "
                   "imagenet (= he2015-imagenet)")
    r.add_argument("--model", help="resnet20/32/44/56/110 (CIFAR), resnet18/34/50/101/152 "
                   "(ImageNet), plain<depth>, preactresnet<depth>, or a keras_resnet constructor "
                   "name such as ResNet50D or ResNeXt50_32x4d (keras_resnet.list_models() lists "
                   "them)")
    r.add_argument("--init-from", metavar="RUN_OR_KERAS",
                   help="start from a saved model (a run directory's last.keras, or a .keras "
                   "file such as keras-resnet-convert writes). Same head (classes): the model "
                   "is trained on, deepened first when --model is deeper (keras_resnet.deepen: "
                   "inserted blocks start as the identity). Another head or none (e.g. ImageNet "
                   "weights): fine-tuning, the backbone is kept and a new head built for the "
                   "dataset's classes")
    r.add_argument("--freeze-epochs", type=_ranged("freeze_epochs"), metavar="N",
                   help="with --init-from: train only the new head for the first N epochs "
                   "(backbone frozen, its BatchNormalization in inference mode), then the "
                   "whole network (default: 0)")
    r.add_argument("--backbone-lr-mult", type=_ranged("backbone_lr_mult", float), metavar="M",
                   help="with --init-from and --optimizer sgd: the backbone's learning rate is "
                   "the head's x M, e.g. 0.1 (default: 1)")
    r.add_argument("--epochs", type=_ranged("epochs"), help="training epochs (default: the preset's)")
    r.add_argument("--iterations", type=_ranged("iterations"),
                   help="total steps (instead of --epochs; either one beats the preset's length)")
    r.add_argument("--steps-per-epoch", type=_ranged("steps_per_epoch"), help="default: one pass over the training split")
    r.add_argument("--batch-size", type=_ranged("batch_size"), help="per replica (global = this x replicas)")
    r.add_argument("--lr", type=_ranged("lr", float), help="learning rate for one replica's batch (scaled x replicas)")
    r.add_argument("--optimizer", choices=kt.OPTIMIZERS,
                   help="sgd (momentum, L2 weight decay), adamw or lamb (decoupled weight "
                   "decay), lars (layer-wise trust ratio, very large batches); default: the recipe's")
    r.add_argument("--momentum", type=number(float, 0, 1, high_open=True), help="SGD momentum (default: the preset's)")
    r.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum for SGD (default: the preset's)")
    r.add_argument("--weight-decay", type=_ranged("weight_decay", float),
                   help="on conv/dense kernels only (not BN parameters or biases); SGD: L2 "
                   "term in the loss, AdamW: decoupled")
    r.add_argument("--schedule", choices=kt.SCHEDULES,
                   help="learning-rate schedule after warmup (default: the preset's)")
    r.add_argument("--step-boundaries", type=list_of(number(float, 0, 1, low_open=True, high_open=True)),
                   nargs="+",
                   metavar="FRACTION",
                   help="step schedule: fractions of training where lr /= 10, e.g. 0.5,0.75 or 0.5 0.75")
    r.add_argument("--warmup-epochs", type=_ranged("warmup_epochs", float), help="linear learning-rate warmup")
    r.add_argument("--label-smoothing", type=number(float, 0, 1, high_open=True), help="label smoothing factor in [0, 1)")
    g = p.add_argument_group("recipe ingredients (each off unless the recipe or a flag sets it)")
    g.add_argument("--rand-augment", metavar="SPEC",
                   help="RandAugment in timm's notation, e.g. rand-m9-mstd0.5-inc1 (tf.data, CPU)")
    g.add_argument("--trivial-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="TrivialAugmentWide (tf.data, CPU)")
    g.add_argument("--random-erasing", type=number(float, 0, 1), metavar="P",
                   help="random erasing with probability P (tf.data, CPU)")
    g.add_argument("--mixup", dest="mixup_alpha", type=number(float, 0, 100), metavar="ALPHA",
                   help="mixup with Beta(ALPHA, ALPHA) (in the training step)")
    g.add_argument("--cutmix", dest="cutmix_alpha", type=number(float, 0, 100), metavar="ALPHA",
                   help="cutmix with Beta(ALPHA, ALPHA); with --mixup too, one of them per "
                   "batch (--set mix_switch_prob=0.5: cutmix's share)")
    g.add_argument("--loss", choices=("ce", "bce"),
                   help="ce: softmax cross-entropy; bce: binary cross-entropy (RSB; --set "
                   "bce_target_threshold=0.2)")
    g.add_argument("--ema-decay", type=number(float, 0, 1, high_open=True), metavar="D",
                   help="keep an exponential moving average of the weights (per step), "
                   "evaluated every epoch and saved as ema.keras")
    g.add_argument("--train-image-size", type=_ranged("train_image_size"), metavar="N",
                   help="train at N x N (random crops), test at --image-size")
    g.add_argument("--repeated-augment", type=_ranged("repeated_augment"), metavar="N",
                   help="repeated augmentation: each image N times per epoch, differently "
                   "augmented, on different replicas (an epoch keeps its length)")
    g.add_argument("--clip-grad-norm", type=number(float, 0, 1e6), metavar="NORM",
                   help="clip the global batch's gradient to this global norm (0: off)")
    r.add_argument("--seed", type=_ranged("seed"), default=0, help="seed of weights, data order and augmentation")
    r.add_argument("--deterministic", action="store_true",
                   help="deterministic TensorFlow ops and input order (the data order is always "
                   "seeded; without this flag parallel decoding of files may deliver "
                   "neighbouring images out of order, which is faster)")
    s = p.add_argument_group("hardware")
    s.add_argument("--strategy", choices=kt.STRATEGIES, default="auto",
                   help="auto: multi_worker when TF_CONFIG names several tasks, mirrored when "
                   "more than one GPU is visible, else one_device")
    s.add_argument("--cpu-replicas", type=_ranged("cpu_replicas"),
                   help="split the CPU into N logical devices (MirroredStrategy without GPUs)")
    s.add_argument("--sync-bn", action="store_true",
                   help="synchronized BatchNormalization (global-batch statistics); without it "
                   "the saved BN statistics are the chief's first replica's")
    s.add_argument("--precision", choices=kt.PRECISIONS, default="float32",
                   help="mixed_float16 uses dynamic loss scaling")
    s.add_argument("--jit", action="store_true", help="XLA-compile the forward/backward pass")
    s.add_argument("--steps-per-execution", type=_ranged("steps_per_execution"), default=16,
                   help="training steps per tf.function call")
    o = p.add_argument_group("output")
    o.add_argument("--run-dir", help="default: runs/<dataset>_<model>")
    o.add_argument("--checkpoint-steps", type=_ranged("checkpoint_steps"),
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
    add_version(p)
    p.add_argument("--evaluate", metavar="RUN_OR_KERAS",
                   help="only evaluate a saved model (a run directory or a .keras file) on the "
                   "test split of its run's dataset (--dataset etc. override run.json)")
    return p


def _check_flags(args, given):
    """Flags that parse but cannot mean anything together: one line naming the flag and
    what is accepted, or None."""
    if args.evaluate:
        extra = sorted(given - EVALUATE_FLAGS)
        if extra:
            return (f"{_flag(extra[0])} does not apply to --evaluate, which only evaluates a "
                    f"saved model; accepted with it: "
                    + " ".join(_flag(d) for d in sorted(EVALUATE_FLAGS - {'evaluate'})))
    if args.dataset is not None or not args.evaluate:
        name = args.dataset or "digits"
        kind = "tfds" if name.startswith("tfds:") else name
        for dest, kinds in DATASET_FLAGS.items():
            if dest in given and kind not in kinds:
                return (f"{_flag(dest)} does not apply to --dataset {name}; it is used by "
                        f"--dataset {' / '.join(kinds)}")
    needs_dir = {"folder": "the image folder, DIR/<class>/<image>",
                 "tfrecord": "the folder of train-* and validation-* files"}
    if not args.evaluate and args.dataset in needs_dir and not args.data_dir:
        return f"--dataset {args.dataset} needs --data-dir DIR ({needs_dir[args.dataset]})"
    if args.epochs is not None and args.iterations is not None:
        return "--epochs and --iterations both set the length of training; give one of them"
    if args.warmup_epochs and args.epochs is not None and args.warmup_epochs > args.epochs:
        return (f"--warmup-epochs {args.warmup_epochs:g} is longer than --epochs {args.epochs}; "
                "expected at most the number of epochs")
    if args.step_boundaries is not None:
        b = list(args.step_boundaries)
        if b != sorted(set(b)):
            return (f"--step-boundaries {','.join(f'{x:g}' for x in b)}: expected increasing "
                    "fractions of training, each once")
        if args.schedule is not None and args.schedule != "step":
            return f"--step-boundaries applies to --schedule step, not --schedule {args.schedule}"
    if args.optimizer in ("adamw", "lamb"):
        for dest in ("momentum", "nesterov"):
            if dest in given:
                return f"{_flag(dest)} applies to --optimizer sgd or lars, not {args.optimizer}"
    if args.config is not None and args.evaluate:
        return "--config does not apply to --evaluate"
    if args.recipe is not None and args.preset is not None:
        return "--recipe and --preset both name the recipe; give one of them (--preset is the old name)"
    return None


def _flag(dest):
    return "--" + dest.replace("_", "-")


def _check_keras_file(path, prefer):
    """An --evaluate or --init-from path that exists but holds no model (a directory without
    best.keras or last.keras, a file that is not a .keras archive): one line saying so
    (rather than Keras's "file not found"), from :func:`keras_resnet.rundir.model_file`,
    which picks the file the command will load: ``prefer`` (--evaluate: best.keras;
    --init-from: last.keras), else the other."""
    from . import rundir

    if not os.path.exists(path):
        return None  # said by the command itself (--init-from is not read when resuming)
    try:
        rundir.model_file(path, prefer)
    except rundir.RunDirError as e:
        return str(e)
    return None


def main(argv=None, prog="keras-resnet-train"):
    check_distribution()
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.step_boundaries is not None:
        args.step_boundaries = tuple(flatten(args.step_boundaries))
    given = given_flags(parser, sys.argv[1:] if argv is None else argv)
    problem = _check_flags(args, given)
    for source, prefer in ((args.evaluate, "best.keras"), (args.init_from, "last.keras")):
        if source and problem is None:
            problem = _check_keras_file(source, prefer)
    values = None
    if problem is None and not args.evaluate:
        try:  # the config file and --set keys are checked before TensorFlow loads
            values = _settings(args, given)
        except ValueError as e:
            problem = " ".join(str(e).split())
    if problem:
        return flag_error(prog, problem)
    setup_process(args.verbose)
    # Ctrl-C before the training loop (or a second one during its save on notice) ends the
    # process at once, without a traceback: nothing is half-written, every write is atomic.
    with _default_sigint():
        status = _run(args, prog, values)
    if status in STOPPED and argv is None:
        # The command itself (not a call from Python): saved on notice, everything written
        # and committed; skip TensorFlow's teardown of its thread pools and input pipelines
        # (seconds, measured) so that the exit comes well within a grace period.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


STOPPED = (143, 130)  # exit statuses after a save on notice (training.EXIT_STATUS)


@contextlib.contextmanager
def _default_sigint():
    previous = None
    if threading.current_thread() is threading.main_thread():  # (Python's rule for handlers)
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):  # ignored (a background job): kept so
            previous = None
        else:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _settings(args, given):
    """TrainConfig's arguments: argparse's defaults of flags not given, then the --config
    file, then the flags given, then --set (each wins over the one before). Unset
    settings take the recipe's, then TrainConfig's defaults."""
    from .training import TrainConfig, recipes

    fields = set(TrainConfig.__dataclass_fields__)
    flags = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    values = {k: v for k, v in flags.items() if k not in given}
    if args.config is not None:
        values.update(recipes.read_config_file(args.config, fields))
    values.update({k: v for k, v in flags.items() if k in given})
    overrides = recipes.parse_set(args.overrides, fields)
    if "model_kwargs" in overrides and values.get("model_kwargs"):
        overrides["model_kwargs"] = {**values["model_kwargs"], **overrides["model_kwargs"]}
    values.update(overrides)
    later = set(given) | set(overrides)  # the length given last wins over the config's
    if "iterations" in later and "epochs" not in later:
        values.pop("epochs", None)
    if "epochs" in later and "iterations" not in later:
        values.pop("iterations", None)
    if isinstance(values.get("step_boundaries"), list):
        values["step_boundaries"] = tuple(values["step_boundaries"])
    values["verbose"] = 0 if args.quiet else 1
    return values


def _run(args, prog, values=None):
    from . import data as kdata
    from . import training as kt

    with exit_on_os_error(prog):
        try:
            if args.evaluate:
                kt.evaluate(args.evaluate, args.dataset, data_dir=args.data_dir,
                            image_size=args.image_size, num_classes=args.num_classes,
                            on_corrupt=args.on_corrupt, download=args.download or None,
                            label_offset=args.label_offset)
                return 0
            result = kt.train(kt.TrainConfig(**values))
        except kt.TrainingStopped as e:  # saved on SIGTERM / Ctrl-C: 143 / 130
            print(f"{prog}: {e}", file=sys.stderr, flush=True)
            return e.exit_status
        except (ValueError, kdata.DataError, kt.TrainingError) as e:
            return flag_error(prog, e)
    if args.export and kt.is_chief(result.strategy):  # one export, by the chief
        return _export(result.run_dir, args, prog)
    return 0


def _export(run_dir, args, prog):
    """``--export DIR``: every format of the finished run, through the export library;
    exit status 0, 1 (an export missed its parity threshold) or 2 (bad input)."""
    from .export import ExportError, ParityError, export_all
    from .export.report import markdown, print_outcome

    with exit_on_os_error(prog):
        try:
            report = export_all(str(run_dir), args.export, overwrite=args.overwrite,
                                progress=None if args.quiet else (lambda m: print(m, flush=True)))
        except ParityError as e:
            if args.quiet and e.report:  # the table shows what failed and by how much
                print(markdown(e.report))
            print(f"{prog}: error: parity check failed: {e}", file=sys.stderr)
            return 1
        except (ExportError, ValueError) as e:
            return flag_error(prog, " ".join(str(e).split()))
    print_outcome(report, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m keras_resnet.train"))
