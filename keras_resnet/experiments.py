"""Experiments from the papers, at a scale a laptop can run.

    keras-resnet-experiment degradation                 # digits, about 10 minutes on 2 CPU cores
    keras-resnet-experiment degradation --dataset cifar10 --iterations 64000   # the paper, GPU

``degradation`` reproduces He et al. 2015, Fig. 6 (and the idea of Fig. 1): plain networks
get *worse* as they get deeper (higher training error, so it is not overfitting), residual
networks get better. It trains plain-20, plain-56, ResNet-20 and ResNet-56 with one recipe
and one budget (the paper's CIFAR recipe: SGD, batch 128, lr 0.1, momentum 0.9, weight
decay 1e-4, lr / 10 at 50% and 75% of the iterations), then grows the trained ResNet-20 into
a ResNet-56 with :func:`keras_resnet.deepen` (inserted blocks start as the identity) and
fine-tunes it with the same recipe at a tenth of the learning rate for the same budget.

Each model is an ordinary ``train.py`` run directory under ``out_dir`` (``plain20``,
``plain56``, ``resnet20``, ``resnet56``, ``resnet56_grown``), so rerunning the same command
after a kill resumes where it stopped. Written next to them, atomically:

=====================  ==================================================================
``degradation.png``    error (%) against iterations: solid test error, dashed training
                       error, as in the paper; panels plain | ResNet | grown
``degradation.csv``    one row per model and epoch: iterations, training and test error
``degradation.md``     the table of final errors
=====================  ==================================================================

Training error is measured as the paper measures it: on the augmented training batches
during the epoch (with the model in training mode), so it lags the test error early on.
"""

import argparse
import csv
import io
import os
import sys

from .cli_util import HelpFormatter, add_version, number, setup_process
from . import data as kdata
from . import files, rundir
from . import training as kt
from .specs import MAX_DEPTH

# One colour per depth, as in the paper's figures (thin = shallow, bold = deep).
COLORS = {"shallow": "#1f77b4", "deep": "#d62728", "grown": "#2ca02c"}
DIGITS_ITERATIONS = 640  # 1% of the paper's 64k; ~10 minutes for all five models on 2 cores


def _runs(depths):
    s, d = depths
    return [
        # (key, model name for train.py, label, colour, grown from)
        (f"plain{s}", f"plain{s}", f"plain-{s}", COLORS["shallow"], None),
        (f"plain{d}", f"plain{d}", f"plain-{d}", COLORS["deep"], None),
        (f"resnet{s}", f"resnet{s}", f"ResNet-{s}", COLORS["shallow"], None),
        (f"resnet{d}", f"resnet{d}", f"ResNet-{d}", COLORS["deep"], None),
        (f"resnet{d}_grown", f"resnet{d}", f"ResNet-{d} grown from ResNet-{s}", COLORS["grown"],
         f"resnet{s}"),
    ]


def _check_depths(depths):
    try:
        s, d = (int(x) for x in depths)
    except (TypeError, ValueError):
        raise ValueError(f"depths={depths!r} is not supported; expected two CIFAR depths "
                         "(6n+2), shallow then deep, e.g. (20, 56)") from None
    if any(x < 8 or (x - 2) % 6 or x > MAX_DEPTH for x in (s, d)) or s >= d:
        raise ValueError(f"depths={tuple(depths)!r} is not supported; expected two CIFAR depths "
                         f"(6n+2, 8 to {MAX_DEPTH}), shallow then deep, e.g. (20, 56)")
    return s, d


def degradation(out_dir="runs/degradation", dataset="digits", data_dir=None, image_size=None,
                iterations=None, batch_size=128, lr=0.1, grow_lr=None, depths=(20, 56),
                augment=None, seed=0, download=False, overwrite=False, verbose=1):
    """Runs (or resumes) the degradation experiment; returns a dict with ``rows`` (the CSV
    rows), ``final`` (per model: train/test error at the end), and the written paths.

    ``iterations``: the budget of every model (default: 640 on digits, the paper's 64,000
    elsewhere). ``grow_lr``: learning rate for fine-tuning the grown model (default
    ``lr / 10``: it starts from a trained network). ``augment``: default ``"shift"`` on
    digits, the paper's ``"cifar"`` (pad 4, random crop, flip) elsewhere.
    """
    s, d = _check_depths(depths)
    if iterations is None:
        iterations = DIGITS_ITERATIONS if dataset == "digits" else 64000
    for name, value in (("iterations", iterations), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not supported; expected a positive integer")
    for name, value in (("lr", lr), ("grow_lr", grow_lr)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise ValueError(f"{name}={value!r} is not supported; expected a positive number")
    grow_lr = lr / 10 if grow_lr is None else grow_lr
    augment = augment or ("shift" if dataset == "digits" else "cifar")
    os.makedirs(out_dir, exist_ok=True)
    runs = _runs((s, d))
    results = {}
    for i, (key, model, label, _, parent) in enumerate(runs, start=1):
        if verbose:
            print(f"[{i}/{len(runs)}] {label}: {iterations} iterations"
                  + (f", from {os.path.join(out_dir, parent)}" if parent else ""), flush=True)
        cfg = kt.TrainConfig(
            dataset=dataset, data_dir=data_dir, image_size=image_size, download=download,
            preset="cifar", model=model, iterations=iterations, batch_size=batch_size,
            lr=grow_lr if parent else lr, augment=augment, seed=seed,
            init_from=os.path.join(out_dir, parent) if parent else None,
            run_dir=os.path.join(out_dir, key), overwrite=overwrite, tensorboard=False,
            plot=False, verbose=verbose)
        result = kt.train(cfg)
        steps = rundir.read_run_json(os.path.join(result.run_dir, rundir.RUN_JSON))["steps_per_epoch"]
        results[key] = (result.history, steps)

    rows = []
    for key, _, label, _, parent in runs:
        history, steps = results[key]
        offset = results[parent][1] * len(results[parent][0]) if parent else 0
        for r in history:
            rows.append(dict(model=key, label=label, epoch=r["epoch"],
                             iteration=r["epoch"] * steps, total_iteration=offset + r["epoch"] * steps,
                             train_error=1.0 - r["accuracy"], test_error=1.0 - r["test_accuracy"],
                             lr=r["lr"]))
    final = {}
    for key, _, label, _, _ in runs:
        last = [r for r in rows if r["model"] == key][-1]
        final[key] = dict(label=label, train_error=last["train_error"],
                          test_error=last["test_error"], iterations=last["iteration"])
    csv_path = os.path.join(out_dir, "degradation.csv")
    png_path = os.path.join(out_dir, "degradation.png")
    md_path = os.path.join(out_dir, "degradation.md")
    _write_csv(csv_path, rows)
    plot_degradation(rows, runs, png_path, title=f"{dataset}, {iterations} iterations per model")
    table = format_table(final, dataset, iterations, batch_size)
    files.write_text(md_path, table + "\n")
    if verbose:
        print(table, flush=True)
        print(f"wrote {png_path}, {csv_path}, {md_path}", flush=True)
    return dict(rows=rows, final=final, png=png_path, csv=csv_path, table=md_path)


CSV_FIELDS = ("model", "label", "epoch", "iteration", "total_iteration", "train_error",
              "test_error", "lr")


def _write_csv(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, buf.getvalue())


def format_table(final, dataset, iterations, batch_size):
    lines = [f"Final errors on {dataset} ({iterations} iterations of batch {batch_size} per "
             "model; training error on the augmented batches of the last epoch):", "",
             "| model | training error (%) | test error (%) |", "|---|---:|---:|"]
    for v in final.values():
        lines.append(f"| {v['label']} | {100 * v['train_error']:.2f} | {100 * v['test_error']:.2f} |")
    return "\n".join(lines)


def plot_degradation(rows, runs, path, title=""):
    """The paper's Fig. 6 layout: error (%) against iterations, solid test error, dashed
    training error; panels: plain networks | residual networks | grown ResNet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {key: [r for r in rows if r["model"] == key] for key, *_ in runs}
    plain, res, grown = runs[:2], runs[2:4], [runs[2], runs[4]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    panels = ((axes[0], plain, "plain networks"), (axes[1], res, "residual networks"),
              (axes[2], grown, "ResNet grown with deepen() (continues the shallow run)"))
    for ax, members, name in panels:
        for key, _, label, color, _ in members:
            pts = by_key[key]
            x = [r["total_iteration"] for r in pts]
            ax.plot(x, [100 * r["test_error"] for r in pts], "-", color=color, lw=2,
                    label=f"{label} test")
            ax.plot(x, [100 * r["train_error"] for r in pts], "--", color=color, lw=1.5,
                    label=f"{label} train")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    top = max([100 * max(r["train_error"], r["test_error"]) for r in rows] + [1.0])
    axes[0].set_ylim(0, min(100.0, top * 1.05))
    if title:
        fig.suptitle(f"degradation (He et al. 2015, Fig. 6): {title}", fontsize=11)
    fig.tight_layout()
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)


def _parser():
    p = argparse.ArgumentParser(
        allow_abbrev=False,  # a prefix of a flag is a typo, not that flag
        prog="keras-resnet-experiment",
        description="Experiments from the ResNet papers, at laptop scale by default.")
    add_version(p)
    sub = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    g = sub.add_parser(
        "degradation", formatter_class=HelpFormatter,
        help="He et al. 2015 Fig. 6: plain vs residual networks of two depths, plus a grown ResNet",
        description=(
            "Trains plain-20, plain-56, ResNet-20 and ResNet-56 with the paper's CIFAR recipe and "
            "one budget, then grows the trained ResNet-20 to 56 layers (keras_resnet.deepen) and "
            "fine-tunes it; writes degradation.png (solid: test error, dashed: training error), "
            "degradation.csv and degradation.md to --out. Rerunning the same command resumes."),
        epilog=("The paper's setting (on a GPU): keras-resnet-experiment degradation --dataset "
                "cifar10 --iterations 64000 --out runs/degradation_cifar10 (add --depths 20,110 "
                "for the deepest pair)."))
    g.add_argument("--dataset", default="digits",
                   help="digits (bundled, default) | cifar10 | cifar100 | folder | ...")
    g.add_argument("--data-dir", help="for folder/tfrecord datasets")
    g.add_argument("--image-size", type=number(int, 8, 4096), help="model input size for folder datasets")
    g.add_argument("--download", action="store_true", help="allow keras.datasets to download")
    g.add_argument("--iterations", type=number(int, 1),
                   help=f"per model (default: {DIGITS_ITERATIONS} on digits, 64000 elsewhere)")
    g.add_argument("--batch-size", type=number(int, 1), default=128, help="batch size of every model")
    g.add_argument("--lr", type=number(float, 0, low_open=True), default=0.1, help="learning rate of the four models trained from scratch")
    g.add_argument("--grow-lr", type=number(float, 0, low_open=True), help="fine-tuning rate of the grown model (default: lr/10)")
    g.add_argument("--depths", default="20,56", help="shallow,deep CIFAR depths (6n+2)")
    g.add_argument("--augment", choices=kdata.AUGMENTATIONS,
                   help="default: shift on digits, cifar elsewhere")
    g.add_argument("--seed", type=number(int, 0), default=0, help="seed of weights and data order")
    g.add_argument("--out", default="runs/degradation", help="output directory")
    g.add_argument("--overwrite", action="store_true", help="start every run afresh")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines")
    return p


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    setup_process(args.verbose)
    try:
        depths = tuple(int(x) for x in args.depths.split(","))
    except ValueError:
        parser.error(f"--depths {args.depths!r}: expected two integers, e.g. 20,56")
    try:
        degradation(out_dir=args.out, dataset=args.dataset, data_dir=args.data_dir,
                    image_size=args.image_size, iterations=args.iterations,
                    batch_size=args.batch_size, lr=args.lr, grow_lr=args.grow_lr, depths=depths,
                    augment=args.augment, seed=args.seed, download=args.download,
                    overwrite=args.overwrite, verbose=0 if args.quiet else 1)
    except (ValueError, kdata.DataError, kt.TrainingError) as e:
        print(f"keras-resnet-experiment: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
