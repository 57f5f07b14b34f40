"""Experiments from the papers, at a scale a laptop can run.

    keras-resnet-experiment degradation                 # digits, about 10 minutes on 2 CPU cores
    keras-resnet-experiment degradation --seeds 3       # seeds 0, 1, 2: mean, spread, min-max
    keras-resnet-experiment degradation --dataset cifar10 --iterations 64000   # the paper, GPU
    keras-resnet-experiment shortcuts                   # Table 3: plain, A, B, C; 3 seeds
    keras-resnet-experiment shortcuts --bottleneck      # ResNet-50 B against C: size and time

``degradation`` reproduces He et al. 2015, Fig. 6 (and the idea of Fig. 1): plain networks
get *worse* as they get deeper (higher training error, so it is not overfitting), residual
networks get better. It trains plain-20, plain-56, ResNet-20 and ResNet-56 with one recipe
and one budget (the paper's CIFAR recipe: SGD, batch 128, lr 0.1, momentum 0.9, weight
decay 1e-4, lr / 10 at 50% and 75% of the iterations; the default budget adds a 5-epoch
linear learning-rate warm-up, ``budget="small"`` has none: :data:`BUDGETS`), then grows the trained ResNet-20 into
a ResNet-56 with :func:`keras_resnet.deepen` (inserted blocks start as the identity) and
fine-tunes it with the same recipe at a tenth of the learning rate for the same budget.

Each model is an ordinary ``train.py`` run directory under ``out_dir`` (``plain20``,
``plain56``, ``resnet20``, ``resnet56``, ``resnet56_grown``; with ``seeds=N``, one per
model and seed: ``plain20_seed0``, ...), so rerunning the same command after a kill resumes
where it stopped. Every depth is built in its CIFAR form (``--depths 20,50`` trains the
6n+2 ResNet-50 of 16/32/64 filters, not ImageNet's). Written next to them, atomically:

=====================  ==================================================================
``degradation.png``    error (%) against iterations: solid test error, dashed training
                       error, as in the paper; panels plain | ResNet | grown
``degradation.csv``    one row per model, seed and epoch: iterations, training and test error
``degradation.md``     the table of final errors (over several seeds: mean ± sample standard
                       deviation, min-max; the figure shows the mean in a min-max band)
=====================  ==================================================================

Training error is measured as the paper measures it: on the augmented training batches
during the epoch (with the model in training mode), so it lags the test error early on.

``shortcuts`` reproduces He et al. 2015, Table 3 at laptop scale: the plain network and the
residual networks with shortcut options A (zero-padding), B (projections where dimensions
change) and C (projections everywhere) at one CIFAR depth, one recipe and one budget, with
several seeds; each model and seed is a run directory (``plain20_seed0``,
``resnet20a_seed0``, ...). It writes ``shortcuts.md`` (training and test error, mean and
spread over the seeds, parameters and multiply-adds of each model), ``shortcuts.csv`` (one
row per run), ``shortcuts.json`` and ``shortcuts.png`` (error against iterations, drawn as
``degradation.png``: panels plain | A, B, C). ``shortcuts --bottleneck`` measures the paper's remark
that projections on every shortcut of a bottleneck network double its cost: ResNet-50 B
against C, parameters, multiply-adds (:mod:`keras_resnet.complexity`, two independent
counts), training-step and inference time (``bottleneck.md``, ``bottleneck.json``).
"""

import argparse
import csv
import io
import json
import math
import os
import sys

from .cli_util import (HelpFormatter, add_version, exit_on_os_error, given_flags, number,
                       setup_process)
from . import data as kdata
from . import files, rundir
from . import training as kt
from .specs import IMAGENET_DEPTHS, MAX_DEPTH
from .training.config import MAX_BATCH_SIZE, MAX_STEPS

# One colour per depth, as in the paper's figures (thin = shallow, bold = deep).
COLORS = {"shallow": "#1f77b4", "deep": "#d62728", "grown": "#2ca02c"}
DIGITS_ITERATIONS = 640  # 1% of the paper's 64k; ~10 minutes for all five models on 2 cores
# The budgets of the degradation experiment on digits. "default": the CIFAR recipe with a
# linear learning-rate warm-up over the first 5 epochs (50 iterations), the laptop-scale
# form of the paper's warm-up for deep networks (lr 0.01 for the first ~400 iterations of
# ResNet-110); with it ResNet-56 trains as well as ResNet-20 while plain-56 stays far worse
# than plain-20 (docs/growth.md has the runs). "small": the same without warm-up, where
# ResNet-56 is still catching up at the end.
BUDGETS = {
    "default": dict(iterations=DIGITS_ITERATIONS, warmup_epochs=5),
    "small": dict(iterations=DIGITS_ITERATIONS, warmup_epochs=0),
}


def cifar_model_name(family, depth):
    """The registry name of the CIFAR-form ``family`` network (``"plain"`` or ``"resnet"``)
    of ``depth`` (6n+2): ``resnet20``, ``plain56``; ``resnet50cifar`` where the depth is
    also an ImageNet depth (50, 152, 200), whose plain name is the ImageNet network."""
    return f"{family}{depth}cifar" if depth in IMAGENET_DEPTHS else f"{family}{depth}"


def _runs(depths):
    s, d = depths
    return [
        # (key, model name for train.py, label, colour, grown from)
        (f"plain{s}", cifar_model_name("plain", s), f"plain-{s}", COLORS["shallow"], None),
        (f"plain{d}", cifar_model_name("plain", d), f"plain-{d}", COLORS["deep"], None),
        (f"resnet{s}", cifar_model_name("resnet", s), f"ResNet-{s}", COLORS["shallow"], None),
        (f"resnet{d}", cifar_model_name("resnet", d), f"ResNet-{d}", COLORS["deep"], None),
        (f"resnet{d}_grown", cifar_model_name("resnet", d), f"ResNet-{d} grown from ResNet-{s}",
         COLORS["grown"], f"resnet{s}"),
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
                augment=None, seed=0, download=False, overwrite=False, verbose=1,
                budget="default", warmup_epochs=None, seeds=None):
    """Runs (or resumes) the degradation experiment; returns a dict with ``rows`` (the CSV
    rows), ``final`` (per model: train/test error at the end, over the seeds), and the
    written paths.

    ``budget``: ``"default"`` or ``"small"`` (:data:`BUDGETS`): the iterations on digits and
    the warm-up. ``iterations``: the budget of every model (default: the budget's on digits,
    the paper's 64,000 elsewhere). ``warmup_epochs``: linear learning-rate warm-up of the
    four models trained from scratch (default: the budget's; the grown model has none).
    ``grow_lr``: learning rate for fine-tuning the grown model (default ``lr / 10``: it
    starts from a trained network). ``augment``: default ``"shift"`` on digits, the paper's
    ``"cifar"`` (pad 4, random crop, flip) elsewhere.

    ``seeds``: None (default) trains each model once with ``seed``, in ``out_dir/<model>``
    (``plain20``, ..., ``resnet56_grown``); an integer N trains each model with seeds
    ``0 .. N-1``, in ``out_dir/<model>_seed<k>`` (the grown model of seed k continues the
    ResNet of seed k); ``final`` then holds the mean, sample standard deviation, min and
    max over the seeds, and the figure the mean with the min-max band. Every depth is built
    in its CIFAR form (:func:`cifar_model_name`).
    """
    s, d = _check_depths(depths)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise ValueError(f"seeds={seeds!r} is not supported; expected an integer from 1 to "
                             f"{MAX_SEEDS} (seeds 0 .. N-1), or None for one run with seed")
        if seed != 0:
            raise ValueError(f"seed={seed!r} with seeds={seeds!r} is not supported; seeds runs "
                             "seeds 0 .. N-1, seed picks the one seed of a single run: give one")
    iterations, warmup_epochs = _budget(budget, dataset, iterations, warmup_epochs, data_dir,
                                        image_size, download, batch_size)
    for name, value in (("iterations", iterations), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not supported; expected a positive integer")
    for name, value in (("lr", lr), ("grow_lr", grow_lr)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise ValueError(f"{name}={value!r} is not supported; expected a positive number")
    grow_lr = lr / 10 if grow_lr is None else grow_lr
    augment = augment or ("shift" if dataset == "digits" else "cifar")
    runs = _runs((s, d))
    seed_list = [seed] if seeds is None else list(range(seeds))

    def run_dir(key, k):
        return os.path.join(out_dir, key if seeds is None else f"{key}_seed{k}")

    plan = [(k, run) for k in seed_list for run in runs]  # seed by seed: a kill keeps whole seeds
    if not overwrite:  # before anything trains: an --out of another budget is refused whole
        for k, (key, _, _, _, parent) in plan:
            _check_warmup(run_dir(key, k), 0 if parent else warmup_epochs, budget)
    os.makedirs(out_dir, exist_ok=True)
    results = {}
    for i, (k, (key, model, label, _, parent)) in enumerate(plan, start=1):
        if verbose:
            print(f"[{i}/{len(plan)}] {label}" + ("" if seeds is None else f", seed {k}")
                  + f": {iterations} iterations"
                  + (f", from {run_dir(parent, k)}" if parent else ""), flush=True)
        result, info = _train_run(
            run_dir(key, k), model, dataset=dataset, data_dir=data_dir,
            image_size=image_size, download=download, iterations=iterations,
            batch_size=batch_size, lr=grow_lr if parent else lr, augment=augment, seed=k,
            init_from=run_dir(parent, k) if parent else None,
            warmup_epochs=0 if parent else warmup_epochs, overwrite=overwrite, verbose=verbose)
        results[key, k] = (result.history, info["steps_per_epoch"])

    rows = []
    for k, (key, _, label, _, parent) in plan:
        history, steps = results[key, k]
        offset = results[parent, k][1] * len(results[parent, k][0]) if parent else 0
        for r in history:
            rows.append(dict(model=key, label=label, seed=k, epoch=r["epoch"],
                             iteration=r["epoch"] * steps, total_iteration=offset + r["epoch"] * steps,
                             train_error=1.0 - r["accuracy"], test_error=1.0 - r["test_accuracy"],
                             lr=r["lr"]))
    final = {}
    for key, _, label, _, _ in runs:
        lasts = [[r for r in rows if r["model"] == key and r["seed"] == k][-1] for k in seed_list]
        final[key] = dict(label=label, iterations=lasts[0]["iteration"], seeds=seed_list)
        for what in ("train_error", "test_error"):
            values = [r[what] for r in lasts]
            mean, std = _spread(values)
            final[key][what] = mean
            final[key][what + "_spread"] = dict(std=std, min=min(values), max=max(values),
                                               per_seed=values)
    csv_path = os.path.join(out_dir, "degradation.csv")
    png_path = os.path.join(out_dir, "degradation.png")
    md_path = os.path.join(out_dir, "degradation.md")
    _write_csv(csv_path, rows)
    warm = f", {warmup_epochs:g}-epoch warm-up" if warmup_epochs else ""
    over = "" if len(seed_list) == 1 else (f"; mean of seeds 0-{len(seed_list) - 1}, "
                                           "band: min to max")
    plot_degradation(rows, runs, png_path,
                     title=f"{dataset}, {iterations} iterations per model{warm}{over}")
    table = format_table(final, dataset, iterations, batch_size, warmup_epochs)
    files.write_text(md_path, table + "\n")
    if verbose:
        print(table, flush=True)
        print(f"wrote {png_path}, {csv_path}, {md_path}", flush=True)
    return dict(rows=rows, final=final, png=png_path, csv=csv_path, table=md_path)


def _check_warmup(run_dir, warmup_epochs, budget):
    """A run directory trained with another warm-up (an ``--out`` of the other
    ``--budget``, e.g. one made when ``small`` was the default) is refused in one line
    naming the setting, the budget it matches and the remedies."""
    path = os.path.join(run_dir, rundir.RUN_JSON)
    if not os.path.isfile(path):
        return  # nothing recorded yet: training's own resume check covers the rest
    old = (rundir.read_run_json(path).get("config") or {}).get("warmup_epochs")
    if not isinstance(old, (int, float)) or isinstance(old, bool) or old == warmup_epochs:
        return
    matches = [b for b, v in BUDGETS.items() if b != budget and v["warmup_epochs"] == old]
    remedy = (f"rerun with --budget {matches[0]} to resume it" + (
        " (the earlier default)" if matches[0] == "small" else "")
        if matches else f"rerun with --warmup-epochs {old:g} to resume it")
    raise ValueError(
        f"{run_dir} was trained with a {old:g}-epoch warm-up (warmup_epochs={old:g}) and "
        f"this command uses {warmup_epochs:g} (--budget {budget}); {remedy}, use another "
        "--out, or pass --overwrite to train it again")


def _budget(budget, dataset, iterations, warmup_epochs, data_dir=None, image_size=None,
            download=False, batch_size=128):
    """``(iterations, warmup_epochs)`` of ``budget`` (:data:`BUDGETS`), where not given. The
    budget's warm-up is cut to the run's length when the run is shorter (a few
    ``iterations``, a small ``batch_size``); a warm-up given explicitly is kept as given."""
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is not supported; accepted: {', '.join(BUDGETS)}")
    if iterations is None:
        iterations = BUDGETS[budget]["iterations"] if dataset == "digits" else 64000
    for name, value in (("iterations", iterations), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not supported; expected a positive integer")
    if warmup_epochs is None:
        warmup_epochs = BUDGETS[budget]["warmup_epochs"]
        if warmup_epochs:
            sizes = kdata.get_dataset(dataset, data_dir=data_dir, image_size=image_size,
                                      download=download).sizes
            if sizes.get("train"):
                steps = max(1, sizes["train"] // batch_size)  # one replica: the fewest epochs
                warmup_epochs = min(warmup_epochs, math.ceil(iterations / steps))
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, (int, float)) \
            or not 0 <= warmup_epochs < float("inf"):
        raise ValueError(f"warmup_epochs={warmup_epochs!r} is not supported; expected a "
                         "non-negative number")
    return iterations, warmup_epochs


def _train_run(run_dir, model, *, dataset, data_dir, image_size, download, iterations,
               batch_size, lr, augment, seed, init_from=None, warmup_epochs=None,
               overwrite=False, verbose=1):
    """One model of an experiment: an ordinary training run directory (``train.py``'s),
    trained with the paper's CIFAR recipe for ``iterations``, or resumed where it stopped.
    Returns ``(TrainResult, run.json)``."""
    cfg = kt.TrainConfig(
        dataset=dataset, data_dir=data_dir, image_size=image_size, download=download,
        preset="cifar", model=model, iterations=iterations, batch_size=batch_size, lr=lr,
        warmup_epochs=warmup_epochs, augment=augment, seed=seed, init_from=init_from,
        run_dir=run_dir, overwrite=overwrite, tensorboard=False, plot=False, verbose=verbose)
    result = kt.train(cfg)
    return result, rundir.read_run_json(os.path.join(result.run_dir, rundir.RUN_JSON))



def _write_summary(summary, table, md_path, json_path, verbose, also=()):
    """An experiment's summary as JSON and its table as Markdown (each written atomically);
    the table and the files' names printed when ``verbose``."""
    files.write_text(json_path, json.dumps(summary, indent=2) + "\n")
    files.write_text(md_path, table + "\n")
    if verbose:
        print(table, flush=True)
        print(f"wrote {', '.join((md_path, *also, json_path))}", flush=True)

CSV_FIELDS = ("model", "label", "seed", "epoch", "iteration", "total_iteration", "train_error",
              "test_error", "lr")


def _write_csv(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(path, buf.getvalue())


def format_table(final, dataset, iterations, batch_size, warmup_epochs=0):
    """The markdown table of :func:`degradation`'s final errors: one column each for one
    seed; mean ± sample standard deviation and min–max over several seeds."""
    warm = (f", linear learning-rate warm-up over the first {warmup_epochs:g} epochs of the "
            "models trained from scratch" if warmup_epochs else "")
    n = len(next(iter(final.values())).get("seeds", [0]))
    over = "" if n == 1 else f", mean ± sample standard deviation (min–max) over {n} seeds"
    lines = [f"Final errors on {dataset} ({iterations} iterations of batch {batch_size} per "
             f"model{warm}{over}; training error on the augmented batches of the last epoch):",
             "", "| model | training error (%) | test error (%) |", "|---|---:|---:|"]
    for v in final.values():
        cells = []
        for what in ("train_error", "test_error"):
            spread = v.get(what + "_spread") or {}
            if spread.get("std") is None:
                cells.append(f"{100 * v[what]:.2f}")
            else:
                cells.append(f"{100 * v[what]:.2f} ± {100 * spread['std']:.2f} "
                             f"({100 * spread['min']:.2f}–{100 * spread['max']:.2f})")
        lines.append(f"| {v['label']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot_degradation(rows, runs, path, title=""):
    """The paper's Fig. 6 layout: error (%) against iterations, solid test error, dashed
    training error; panels: plain networks | residual networks | grown ResNet. With several
    seeds in ``rows``, each curve is their mean, in a band from their min to their max."""
    def members(*picked):
        return [(key, label, color) for key, _, label, color, _ in picked]

    panels = (("plain networks", members(*runs[:2])),
              ("residual networks", members(*runs[2:4])),
              ("ResNet grown with deepen() (continues the shallow run)",
               members(runs[2], runs[4])))
    plot_error_curves(rows, panels, path, iteration="total_iteration",
                      title=f"degradation (He et al. 2015, Fig. 6): {title}" if title else "")


def plot_error_curves(rows, panels, path, title="", iteration="iteration"):
    """Error (%) against iterations, side by side panels sharing the y axis: solid test
    error, dashed training error, as in the paper's figures. ``rows``: one per model, seed
    and epoch, with ``model``, ``train_error``, ``test_error`` (fractions) and the
    ``iteration`` field; ``panels``: ``[(title, [(model, label, colour), ...]), ...]``.
    With several seeds of a model in ``rows``, its curve is their mean, in a band from their
    min to their max. Written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {}  # key -> [(iteration, [train errors], [test errors])], over the seeds
    for _, members in panels:
        for key, _, _ in members:
            points = {}
            for r in rows:
                if r["model"] == key:
                    p = points.setdefault(r[iteration], ([], []))
                    p[0].append(100 * r["train_error"])
                    p[1].append(100 * r["test_error"])
            by_key[key] = sorted((x, tr, te) for x, (tr, te) in points.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(13 * len(panels) / 3, 4), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, (name, members) in zip(axes, panels):
        for key, label, color in members:
            pts = by_key[key]
            x = [p[0] for p in pts]
            for i, style, lw, what in ((2, "-", 2, "test"), (1, "--", 1.5, "train")):
                ax.plot(x, [sum(p[i]) / len(p[i]) for p in pts], style, color=color, lw=lw,
                        label=f"{label} {what}")
                if any(len(p[i]) > 1 for p in pts):  # several seeds: their min-max band
                    ax.fill_between(x, [min(p[i]) for p in pts], [max(p[i]) for p in pts],
                                    color=color, alpha=0.12, lw=0)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    top = max([100 * max(r["train_error"], r["test_error"]) for r in rows] + [1.0])
    axes[0].set_ylim(0, min(100.0, top * 1.05))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)

# ----------------------------------------------------------------------------------------
# shortcuts: He et al. 2015, Table 3 (plain against options A, B and C) and the cost of
# projection shortcuts in bottleneck networks (section 4.1)

SHORTCUT_OPTIONS = ("plain", "A", "B", "C")
SHORTCUT_COLORS = {"plain": "#d62728", "A": "#1f77b4", "B": "#ff7f0e", "C": "#2ca02c"}
SHORTCUT_WORDS = {"plain": "none (plain network)", "A": "A: zero-padding, parameter free",
                  "B": "B: projection where dimensions change", "C": "C: projection everywhere"}
DEFAULT_SEEDS = 3
MAX_SEEDS = 100
SHORTCUT_CSV_FIELDS = ("option", "model", "seed", "iterations", "train_error", "test_error",
                       "parameters", "multiply_adds", "run_dir")


def _check_cifar_depth(depth):
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 \
            or depth > MAX_DEPTH:
        raise ValueError(f"depth={depth!r} is not supported; expected a CIFAR depth (6n+2, 8 to "
                         f"{MAX_DEPTH}), e.g. 20")
    return depth


def shortcut_model_name(option, depth):
    """The registry name of the CIFAR ``depth`` network with shortcut ``option``
    (``"plain"``, ``"A"``, ``"B"`` or ``"C"``): ``plain20cifar``, ``resnet20cifar-shortcut-b``."""
    if option == "plain":
        return f"plain{depth}cifar"
    return f"resnet{depth}cifar-shortcut-{option.lower()}"


def _label(option, depth):
    return f"plain-{depth}" if option == "plain" else f"ResNet-{depth} {option}"


def _spread(values):
    """``(mean, sample standard deviation or None for one value)``."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def shortcuts(out_dir="runs/shortcuts", dataset="digits", data_dir=None, image_size=None,
              depth=20, seeds=DEFAULT_SEEDS, iterations=None, batch_size=128, lr=0.1,
              warmup_epochs=None, augment=None, download=False, overwrite=False, verbose=1):
    """Runs (or resumes) He et al. 2015 Table 3 at laptop scale: the plain network and the
    residual networks with shortcut options A, B and C, at one CIFAR ``depth``, each trained
    with the paper's CIFAR recipe for ``iterations`` with seeds ``0 .. seeds - 1``: the
    recipe and budget of ``degradation`` (``iterations`` and ``warmup_epochs`` default to
    its default budget's).

    Each model and seed is a training run directory under ``out_dir``
    (``plain20_seed0``, ``resnet20a_seed0``, ...). Writes ``shortcuts.md`` (the table),
    ``shortcuts.csv`` (one row per run), ``shortcuts.json`` (the table's numbers and
    settings) and ``shortcuts.png`` (training and test error against iterations, the mean
    over the seeds in a min-max band). Returns the summary written to ``shortcuts.json``, with the paths."""
    from . import complexity
    from .keras_file import load_model

    depth = _check_cifar_depth(depth)
    iterations, warmup_epochs = _budget("default", dataset, iterations, warmup_epochs,
                                        data_dir, image_size, download, batch_size)
    for name, value in (("seeds", seeds), ("iterations", iterations), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not supported; expected a positive integer")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr={lr!r} is not supported; expected a positive number")
    augment = augment or ("shift" if dataset == "digits" else "cifar")
    os.makedirs(out_dir, exist_ok=True)
    plan = [(seed, option) for seed in range(seeds) for option in SHORTCUT_OPTIONS]
    rows, curves, costs, input_shape = [], [], {}, None
    for i, (seed, option) in enumerate(plan, start=1):
        model = shortcut_model_name(option, depth)
        key = f"plain{depth}" if option == "plain" else f"resnet{depth}{option.lower()}"
        run_dir = os.path.join(out_dir, f"{key}_seed{seed}")
        if verbose:
            print(f"[{i}/{len(plan)}] {_label(option, depth)}, seed {seed}: {iterations} "
                  "iterations", flush=True)
        result, info = _train_run(
            run_dir, model, dataset=dataset, data_dir=data_dir, image_size=image_size,
            download=download, iterations=iterations, batch_size=batch_size, lr=lr,
            warmup_epochs=warmup_epochs, augment=augment, seed=seed, overwrite=overwrite,
            verbose=verbose)
        if option not in costs:  # counted on the trained model, as saved
            trained = load_model(os.path.join(run_dir, "last.keras"))
            costs[option] = (int(trained.count_params()), complexity.multiply_adds(trained))
            input_shape = list(trained.input_shape[1:])
        steps = info["steps_per_epoch"]
        curves.extend(dict(model=option, iteration=r["epoch"] * steps,
                           train_error=1.0 - r["accuracy"], test_error=1.0 - r["test_accuracy"])
                      for r in result.history)
        last = result.history[-1]
        rows.append(dict(option=option, model=model, seed=seed,
                         iterations=last["epoch"] * info["steps_per_epoch"],
                         train_error=1.0 - last["accuracy"], test_error=1.0 - last["test_accuracy"],
                         parameters=costs[option][0], multiply_adds=costs[option][1],
                         run_dir=run_dir))

    summary = dict(experiment="shortcuts", dataset=dataset, depth=depth, seeds=list(range(seeds)),
                   iterations=iterations, batch_size=batch_size, lr=lr,
                   warmup_epochs=warmup_epochs, augment=augment,
                   input_shape=input_shape, options={})
    for option in SHORTCUT_OPTIONS:
        mine = [r for r in rows if r["option"] == option]
        entry = dict(label=_label(option, depth), shortcut=SHORTCUT_WORDS[option],
                     model=mine[0]["model"], parameters=costs[option][0],
                     multiply_adds=costs[option][1])
        for what in ("train_error", "test_error"):
            values = [r[what] for r in mine]
            mean, std = _spread(values)
            entry[what] = dict(mean=mean, std=std, min=min(values), max=max(values),
                               per_seed=values)
        summary["options"][option] = entry
    csv_path = os.path.join(out_dir, "shortcuts.csv")
    md_path = os.path.join(out_dir, "shortcuts.md")
    json_path = os.path.join(out_dir, "shortcuts.json")
    png_path = os.path.join(out_dir, "shortcuts.png")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SHORTCUT_CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(csv_path, buf.getvalue())
    members = [(o, _label(o, depth), SHORTCUT_COLORS[o]) for o in SHORTCUT_OPTIONS]
    warm = f", {warmup_epochs:g}-epoch warm-up" if warmup_epochs else ""
    over = (f"; mean of seeds 0-{seeds - 1}, band: min to max" if seeds > 1 else "; seed 0")
    plot_error_curves(curves, (("plain network", members[:1]),
                               ("residual networks: shortcut options A, B, C", members[1:])),
                      png_path, title=f"shortcut options (He et al. 2015, Table 3)\n{dataset}, "
                      f"{iterations} iterations per model{warm}{over}")
    _write_summary(summary, format_shortcuts_table(summary), md_path, json_path, verbose,
                   also=(csv_path, png_path))
    return dict(summary, rows=rows, table=md_path, csv=csv_path, json=json_path, png=png_path)


def _pm(stat):
    mean = f"{100 * stat['mean']:.2f}"
    return mean if stat["std"] is None else f"{mean} ± {100 * stat['std']:.2f}"


def _millions(n):
    return f"{n / 1e6:.3f} M" if n < 1e9 else f"{n / 1e9:.3f} G"


def format_shortcuts_table(summary):
    """The markdown table of :func:`shortcuts` (He et al. 2015, Table 3's shape)."""
    n = len(summary["seeds"])
    spread = (f"mean ± standard deviation over {n} seeds" if n > 1 else "one seed")
    shape = "×".join(str(d) for d in summary["input_shape"])
    warm = (f", {summary['warmup_epochs']:g}-epoch warm-up" if summary["warmup_epochs"] else "")
    lines = [f"Shortcut options on {summary['dataset']} ({summary['iterations']} iterations of "
             f"batch {summary['batch_size']} per model{warm}, {spread}; training error on the "
             "augmented batches of the last epoch; multiply-adds of conv and dense layers for "
             f"one {shape} image):", "",
             "| model | shortcut | training error (%) | test error (%) | parameters | "
             "multiply-adds |", "|---|---|---:|---:|---:|---:|"]
    for entry in summary["options"].values():
        lines.append(f"| {entry['label']} | {entry['shortcut']} | {_pm(entry['train_error'])} | "
                     f"{_pm(entry['test_error'])} | {entry['parameters']:,} | "
                     f"{_millions(entry['multiply_adds'])} |")
    return "\n".join(lines)


PAPER_BOTTLENECK_CLAIM = (
    "He et al. 2015, section 4.1: replacing the identity shortcut of a bottleneck block with a "
    "projection doubles its time complexity and model size")


def bottleneck_costs(out_dir="runs/shortcuts", image_size=224, batch_size=8, steps=5,
                     verbose=1):
    """ResNet-50 with option-B shortcuts (identity, projections where dimensions change)
    against option C (projections everywhere), at ``image_size``, in the paper's layout
    (stride on the first 1x1 of a bottleneck): parameters, multiply-adds by two methods
    (:mod:`keras_resnet.complexity`), one stage-interior block's share, and measured
    training-step and inference time for a batch of ``batch_size`` (median of ``steps``
    alternated steps). Writes ``bottleneck.md`` and ``bottleneck.json`` to ``out_dir``."""
    from . import complexity
    from .registry import resolve_model

    for name, value, low in (("image_size", image_size, 32), ("batch_size", batch_size, 1),
                             ("steps", steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is not supported; expected an integer >= {low}")
    os.makedirs(out_dir, exist_ok=True)
    built, figures = {}, {}
    for option in ("B", "C"):
        name = f"resnet50-shortcut-{option.lower()}"
        model = resolve_model(name)(input_shape=(image_size, image_size, 3), classes=1000,
                                    stride_on="1x1")
        built[f"ResNet-50 {option}"] = model
        analytic = complexity.multiply_adds(model)
        profiled, _ = complexity.profiler_multiply_adds(model)
        block = complexity.block_costs(model)["stage3_block2"]  # 1024-d in and out
        figures[option] = dict(model=name, parameters=int(model.count_params()),
                               multiply_adds=analytic, profiler_multiply_adds=profiled,
                               block="stage3_block2", block_parameters=block[0],
                               block_multiply_adds=block[1])
        if verbose:
            print(f"ResNet-50 {option}: {figures[option]['parameters']:,} parameters, "
                  f"{analytic / 1e9:.3f} G multiply-adds (TensorFlow profiler: "
                  f"{profiled / 1e9:.3f} G)", flush=True)
    if verbose:
        print(f"timing {steps} training steps and inference batches of {batch_size} each, "
              "alternated", flush=True)
    times = complexity.time_steps(built, batch_size=batch_size, steps=steps)
    for option in ("B", "C"):
        figures[option].update(times[f"ResNet-50 {option}"])
    ratios = {k: figures["C"][k] / figures["B"][k] for k in (
        "parameters", "multiply_adds", "block_parameters", "block_multiply_adds",
        "train_step_s", "inference_s")}
    summary = dict(experiment="shortcuts --bottleneck", image_size=image_size,
                   batch_size=batch_size, steps=steps, layout="stride on the first 1x1 (paper)",
                   options=figures, c_over_b=ratios, paper=PAPER_BOTTLENECK_CLAIM)
    md_path = os.path.join(out_dir, "bottleneck.md")
    json_path = os.path.join(out_dir, "bottleneck.json")
    _write_summary(summary, format_bottleneck_table(summary), md_path, json_path, verbose)
    return dict(summary, table=md_path, json=json_path)


def format_bottleneck_table(summary):
    b, c, r = summary["options"]["B"], summary["options"]["C"], summary["c_over_b"]
    size, batch = summary["image_size"], summary["batch_size"]
    rows = [
        ("parameters", f"{b['parameters']:,}", f"{c['parameters']:,}", r["parameters"]),
        (f"multiply-adds, {size}×{size} (layer shapes)", _millions(b["multiply_adds"]),
         _millions(c["multiply_adds"]), r["multiply_adds"]),
        (f"multiply-adds, {size}×{size} (TensorFlow profiler)",
         _millions(b["profiler_multiply_adds"]), _millions(c["profiler_multiply_adds"]),
         c["profiler_multiply_adds"] / b["profiler_multiply_adds"]),
        (f"one block inside stage 3 ({b['block']}): parameters", f"{b['block_parameters']:,}",
         f"{c['block_parameters']:,}", r["block_parameters"]),
        (f"one block inside stage 3 ({b['block']}): multiply-adds",
         _millions(b["block_multiply_adds"]), _millions(c["block_multiply_adds"]),
         r["block_multiply_adds"]),
        (f"training step, batch {batch} (s, median of {b['train_steps']})",
         f"{b['train_step_s']:.3f}", f"{c['train_step_s']:.3f}", r["train_step_s"]),
        (f"inference, batch {batch} (s, median of {b['inference_steps']})",
         f"{b['inference_s']:.3f}", f"{c['inference_s']:.3f}", r["inference_s"]),
    ]
    lines = [f"ResNet-50, option B (identity shortcuts, projections where dimensions change) "
             f"against option C (projections everywhere), {summary['layout']}; "
             f"{summary['paper']}:", "",
             "| | ResNet-50 B | ResNet-50 C | C / B |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {x} | {y} | {z:.2f} |" for a, x, y, z in rows]
    return "\n".join(lines)


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
    g.add_argument("--budget", choices=list(BUDGETS), default="default",
                   help="on digits: default = 640 iterations with a 5-epoch learning-rate "
                        "warm-up; small = 640 iterations without warm-up (the earlier default)")
    g.add_argument("--iterations", type=number(int, 1, MAX_STEPS),
                   help=f"per model (default: {DIGITS_ITERATIONS} on digits, 64000 elsewhere)")
    g.add_argument("--warmup-epochs", type=number(float, 0),
                   help="linear learning-rate warm-up of the models trained from scratch "
                        "(default: the budget's, 5 or 0; at most the whole run)")
    g.add_argument("--batch-size", type=number(int, 1, MAX_BATCH_SIZE), default=128, help="batch size of every model")
    g.add_argument("--lr", type=number(float, 0, low_open=True), default=0.1, help="learning rate of the four models trained from scratch")
    g.add_argument("--grow-lr", type=number(float, 0, low_open=True), help="fine-tuning rate of the grown model (default: lr/10)")
    g.add_argument("--depths", default="20,56",
                   help="shallow,deep CIFAR depths (6n+2), each built in its CIFAR form "
                        "(16/32/64 filters; 50 too, not ImageNet's ResNet-50)")
    g.add_argument("--augment", choices=kdata.AUGMENTATIONS,
                   help="default: shift on digits, cifar elsewhere")
    g.add_argument("--seed", type=number(int, 0), default=0,
                   help="seed of weights and data order of the one run of each model")
    g.add_argument("--seeds", type=number(int, 1, MAX_SEEDS),
                   help="train each model with seeds 0 .. N-1 instead (run directories "
                        "<model>_seed<k>); the table gives mean ± standard deviation and "
                        "min-max, the figure the mean and the min-max band")
    g.add_argument("--out", default="runs/degradation", help="output directory")
    g.add_argument("--overwrite", action="store_true", help="start every run afresh")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines")

    h = sub.add_parser(
        "shortcuts", formatter_class=HelpFormatter,
        help="He et al. 2015 Table 3: plain against shortcut options A, B and C; with "
             "--bottleneck, the cost of projection shortcuts in ResNet-50",
        description=(
            "Trains the plain network and the residual networks with shortcut options A "
            "(zero-padding), B (projection where dimensions change) and C (projection "
            "everywhere) at one CIFAR depth with the paper's CIFAR recipe, one budget and "
            "several seeds; writes shortcuts.md (training and test error, mean ± standard "
            "deviation over the seeds, parameters, multiply-adds), shortcuts.csv, "
            "shortcuts.json and shortcuts.png (solid: test error, dashed: training error) to "
            "--out. Each model and seed is a run directory; rerunning the "
            "same command resumes.\n"
            "--bottleneck instead builds ResNet-50 with option B and option C, counts their "
            "parameters and multiply-adds (from the layer shapes and from TensorFlow's "
            "profiler), times training steps and inference, and writes bottleneck.md and "
            "bottleneck.json."),
        epilog=("The paper's setting (on a GPU): keras-resnet-experiment shortcuts --dataset "
                "cifar10 --iterations 64000 --depth 32 --out runs/shortcuts_cifar10"))
    h.add_argument("--depth", type=number(int, 8, MAX_DEPTH), default=20,
                   help="CIFAR depth (6n+2) of every model")
    h.add_argument("--seeds", type=number(int, 1, 100), default=DEFAULT_SEEDS,
                   help="seeds 0 .. N-1 for every model")
    h.add_argument("--dataset", default="digits",
                   help="digits (bundled, default) | cifar10 | cifar100 | folder | ...")
    h.add_argument("--data-dir", help="for folder/tfrecord datasets")
    h.add_argument("--image-size", type=number(int, 8, 4096),
                   help="model input size for folder datasets; with --bottleneck, the "
                        "ResNet-50 input size (default 224)")
    h.add_argument("--download", action="store_true", help="allow keras.datasets to download")
    h.add_argument("--iterations", type=number(int, 1, MAX_STEPS),
                   help=f"per model (default: {DIGITS_ITERATIONS} on digits, 64000 elsewhere)")
    h.add_argument("--warmup-epochs", type=number(float, 0),
                   help="linear learning-rate warm-up of every model (default: 5, or the "
                        "whole run when it is shorter)")
    h.add_argument("--batch-size", type=number(int, 1, MAX_BATCH_SIZE),
                   help="batch size of every model (default 128); with --bottleneck, of the "
                        "timed steps (default 8)")
    h.add_argument("--lr", type=number(float, 0, low_open=True), default=0.1,
                   help="learning rate of every model")
    h.add_argument("--augment", choices=kdata.AUGMENTATIONS,
                   help="default: shift on digits, cifar elsewhere")
    h.add_argument("--bottleneck", action="store_true",
                   help="ResNet-50 B against C: parameters, multiply-adds, time (no training)")
    h.add_argument("--steps", type=number(int, 1, 1000), default=5,
                   help="with --bottleneck: timed steps of each model")
    h.add_argument("--out", default="runs/shortcuts", help="output directory")
    h.add_argument("--overwrite", action="store_true", help="start every run afresh")
    h.add_argument("--quiet", action="store_true", help="no progress output")
    h.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines")
    return p


def main(argv=None):
    status = _main(argv)
    if argv is None:
        # The command itself (not a call from Python): every file is written and closed.
        # Skip the interpreter's teardown of TensorFlow's thread pools, where a finished
        # shortcuts run was once seen to deadlock (its input-pipeline pool, at exit).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0 if status is None else status if isinstance(status, int) else 1)
    return status


def _main(argv):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.experiment == "shortcuts":
        return _main_shortcuts(parser, args, argv)
    sub = parser._subparsers._group_actions[0].choices["degradation"]
    if args.seeds is not None and "seed" in given_flags(sub, sys.argv[1:] if argv is None else argv):
        sub.error("--seed and --seeds: --seed is the seed of a single run, --seeds N runs "
                  "seeds 0 .. N-1; give one of them")
    setup_process(args.verbose)
    try:
        depths = tuple(int(x) for x in args.depths.split(","))
    except ValueError:
        parser.error(f"--depths {args.depths!r}: expected two integers, e.g. 20,56")
    return _run(lambda: degradation(
        out_dir=args.out, dataset=args.dataset, data_dir=args.data_dir,
        image_size=args.image_size, iterations=args.iterations, batch_size=args.batch_size,
        lr=args.lr, grow_lr=args.grow_lr, depths=depths, augment=args.augment, seed=args.seed,
        download=args.download, overwrite=args.overwrite, verbose=0 if args.quiet else 1,
        budget=args.budget, warmup_epochs=args.warmup_epochs, seeds=args.seeds))


def _run(work):
    """Runs an experiment; returns the command's exit status."""
    prog = "keras-resnet-experiment"
    try:
        # A full disk, a read-only or unwritable --out: one line naming the path, exit 2.
        with exit_on_os_error(prog):
            work()
    except kt.TrainingStopped as e:  # saved on SIGTERM / Ctrl-C; the same command resumes
        print(f"{prog}: {e}", file=sys.stderr, flush=True)
        return e.exit_status
    except (ValueError, kdata.DataError, kt.TrainingError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code
    return 0


# Flags of the training form that --bottleneck (which trains nothing) does not take.
_TRAINING_ONLY = ("depth", "seeds", "dataset", "data_dir", "download", "iterations", "lr",
                  "warmup_epochs", "augment", "overwrite")


def _main_shortcuts(parser, args, argv):
    sub = parser._subparsers._group_actions[0].choices["shortcuts"]
    given = given_flags(sub, sys.argv[1:] if argv is None else argv)
    wrong = sorted(given & set(_TRAINING_ONLY)) if args.bottleneck else (
        ["steps"] if "steps" in given else [])
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        sub.error(f"{flag} applies to the training form; --bottleneck trains nothing (it "
                  "takes --image-size, --batch-size, --steps, --out)" if args.bottleneck
                  else "--steps applies to --bottleneck (the timed steps of each model)")
    if args.depth < 8 or (args.depth - 2) % 6:
        sub.error(f"--depth {args.depth}: expected a CIFAR depth 6n+2 (8, 14, 20, 32, 44, "
                  "56, 110, ...)")
    setup_process(args.verbose)
    verbose = 0 if args.quiet else 1
    if args.bottleneck:
        return _run(lambda: bottleneck_costs(
            out_dir=args.out, image_size=args.image_size or 224,
            batch_size=args.batch_size or 8, steps=args.steps, verbose=verbose))
    return _run(lambda: shortcuts(
        out_dir=args.out, dataset=args.dataset, data_dir=args.data_dir,
        image_size=args.image_size, depth=args.depth, seeds=args.seeds,
        iterations=args.iterations, batch_size=args.batch_size or 128, lr=args.lr,
        warmup_epochs=args.warmup_epochs, augment=args.augment, download=args.download,
        overwrite=args.overwrite, verbose=verbose))


if __name__ == "__main__":
    sys.exit(main())
