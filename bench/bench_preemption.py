"""Time from SIGTERM to exit of a training run (the save on notice), and the resume line.

    python bench/bench_preemption.py                       # the default job (digits)
    python bench/bench_preemption.py --after 20 -- --dataset synthetic --image-size 224 \\
        --num-classes 10 --model resnet50 --batch-size 16 --steps-per-epoch 100

Starts ``train.py ARGS`` in a fresh run directory, waits until it prints ``Epoch 1/`` and
then ``--after`` seconds more (steps are running), sends SIGTERM and times the exit; then
reruns the same command, prints its resume line and stops it the same way once it trains
again. Prints both times, the saved line and the resume line.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stop(cmd, after, env):
    """Runs ``cmd`` until ``after`` s past its first ``Epoch`` line, sends SIGTERM; returns
    (seconds to exit, exit status, the resume line or None, the last stderr line)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resume = None
    for line in p.stdout:
        if line.startswith("resuming "):
            resume = line.strip()
        if line.startswith("Epoch "):
            break
    time.sleep(after)
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate()
    took = time.monotonic() - sent
    lines = err.strip().splitlines()
    return took, p.returncode, resume, lines[-1] if lines else ""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--after", type=float, default=5.0,
                   help="seconds of training between the first Epoch line and SIGTERM")
    p.add_argument("args", nargs="*", help="train.py arguments (after --)")
    a = p.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(ROOT, "train.py"), *a.args, "--run-dir",
               os.path.join(tmp, "run"), "--no-plot"]
        first = _stop(cmd, a.after, env)
        second = _stop(cmd, a.after, env)
    print(f"train.py {' '.join(a.args) or '(default job)'}")
    print(f"  SIGTERM -> exit: {first[0]:.1f} s (exit status {first[1]}); {first[3]}")
    print(f"  rerun: {second[2]}")
    print(f"  SIGTERM -> exit after resuming: {second[0]:.1f} s (exit status {second[1]})")


if __name__ == "__main__":
    main()
