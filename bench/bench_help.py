"""``keras-resnet-train --help`` wall time: this checkout against another one (for example
the commit before the commands became lazy), alternated in one run, as a ratio.

    python bench/bench_help.py --other /path/to/other/checkout [--runs 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The console script's own steps: import the entry point's module, call main() with --help.
PROBE = ("import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['keras-resnet-train', '--help']; "
         "import keras_resnet; assert keras_resnet.__file__.startswith(sys.path[0]), "
         "keras_resnet.__file__; from keras_resnet.train import main; main()")


def once(root):
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-I", "-c", PROBE, root], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0 or not r.stdout.startswith("usage:"):
        raise SystemExit(f"{root}: exit {r.returncode}: {r.stderr[-500:]}")
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other", required=True, help="another keras_resnet checkout")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    times = {"this": [], "other": []}
    for _ in range(args.runs):  # alternated, so load changes hit both alike
        times["other"].append(once(os.path.abspath(args.other)))
        times["this"].append(once(HERE))
    this, other = statistics.median(times["this"]), statistics.median(times["other"])
    print("| checkout | median --help seconds | runs |")
    print("|---|---:|---:|")
    print(f"| other ({args.other}) | {other:.2f} | {', '.join(f'{t:.2f}' for t in times['other'])} |")
    print(f"| this | {this:.2f} | {', '.join(f'{t:.2f}' for t in times['this'])} |")
    print(f"\nother / this: {other / this:.1f}x")


if __name__ == "__main__":
    main()
