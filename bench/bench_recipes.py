"""The paper's recipe against a modern one on the embedded digits, at the same wall-clock
budget, over several seeds: a markdown table of the test accuracy (mean, spread).

    python bench/bench_recipes.py --budget 40 --seeds 0 1 2 --out recipes_table.md

Each recipe is the shipped one (keras_resnet/recipes/) with only what ties it to its own
dataset or length changed, the same way for both, decided before any run:

- model resnet20 and the digits' augmentation (``shift``: pad 1 + random crop; no flips,
  no random-resized crop: digits are 8x8 and not mirror-symmetric);
- the number of epochs: as many as fit ``--budget`` seconds of training, measured per
  recipe from a 2-epoch timing run (a lower train resolution buys more epochs);
- warmup: the same fraction of training as in the recipe (rsb-a3: 5 of 100 epochs).

Everything else (optimizer, lr and batch per replica, schedule, loss, mixup/cutmix,
RandAugment, train/test resolution ratio, ...) is the recipe's. Nothing is tuned. The
figure is the test accuracy of last.keras (chosen on nothing: no split chooses it).
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PAIRS = ("he2015-cifar", "rsb-a3")


def _config(recipe, epochs, seed, run_dir):
    from keras_resnet.training import TrainConfig, recipes

    settings = recipes.load_recipe(recipe)["settings"]
    length = settings.get("epochs")
    warmup = settings.get("warmup_epochs", 0) or 0
    warmup = warmup * epochs / length if length else 0.0  # the same fraction of training
    return TrainConfig(dataset="digits", recipe=recipe, model="resnet20", augment="shift",
                       epochs=int(epochs), iterations=None, warmup_epochs=float(warmup),
                       seed=seed, run_dir=run_dir, overwrite=True, verbose=0,
                       tensorboard=False, plot=False)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=list(PAIRS))
    p.add_argument("--budget", type=float, default=40.0, help="seconds of training per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)

    from keras_resnet.cli_util import setup_process

    setup_process(False)
    from keras_resnet.training import train

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_recipes_") as tmp:
        for recipe in args.recipes:
            t = train(_config(recipe, 2, 0, os.path.join(tmp, f"{recipe}_timing")))
            per_epoch = t.history[-1]["seconds"]  # the second epoch: traced already
            epochs = max(1, math.floor(args.budget / per_epoch))
            accs, walls = [], []
            for seed in args.seeds:
                start = time.time()
                r = train(_config(recipe, epochs, seed, os.path.join(tmp, f"{recipe}_{seed}")))
                walls.append(sum(h["seconds"] for h in r.history))
                accs.append(r.test_accuracy)
                print(f"{recipe} seed {seed}: {epochs} epochs, {walls[-1]:.1f} s training "
                      f"({time.time() - start:.1f} s in all), test accuracy {r.test_accuracy:.4f}",
                      flush=True)
            rows.append((recipe, epochs, per_epoch, accs, walls))
    lines = [f"| recipe (scaled) | epochs in {args.budget:g} s | s/epoch | training s (mean) | "
             f"test accuracy, mean ± sd over {len(args.seeds)} seeds | per seed |",
             "|---|---|---|---|---|---|"]
    for recipe, epochs, per_epoch, accs, walls in rows:
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(f"| {recipe} | {epochs} | {per_epoch:.2f} | {statistics.mean(walls):.1f} | "
                     f"{100 * statistics.mean(accs):.2f}% ± {100 * sd:.2f} | "
                     + ", ".join(f"{100 * a:.2f}" for a in accs) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
