"""Time from SIGTERM to exit of a training run (the save on notice), and the resume line.

    python bench/bench_preemption.py                       # the default job (digits)
    python bench/bench_preemption.py --after 20 -- --dataset synthetic --image-size 224 \\
        --num-classes 10 --model resnet50 --batch-size 16 --steps-per-epoch 100

Starts ``train.py ARGS`` in a fresh run directory, waits until it prints ``Epoch 1/`` and
then ``--after`` seconds more (steps are running), sends SIGTERM and times the exit; then
reruns the same command, prints its resume line and stops it the same way once it trains
again. Prints, for both, the seconds from SIGTERM to the saved line (the rest of the step
and the save) and to the exit, the saved line and the resume line.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stop(cmd, after, env):
    """Runs ``cmd`` until ``after`` s past its first ``Epoch`` line, sends SIGTERM; returns
    (seconds to the saved line, seconds to exit, exit status, the resume line or None, the
    saved line)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    saved = {}

    def watch():  # the saved line's arrival, timed
        for line in p.stderr:
            if ": saved epoch " in line:
                saved.update(line=line.strip(), at=time.monotonic())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    resume = None
    for line in p.stdout:
        if line.startswith("resuming "):
            resume = line.strip()
        if line.startswith("Epoch "):
            break
    threading.Thread(target=p.stdout.read, daemon=True).start()  # keep the pipe drained
    time.sleep(after)
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.wait()
    took = time.monotonic() - sent
    watcher.join()
    return (saved.get("at", float("nan")) - sent, took, p.returncode, resume,
            saved.get("line", "(no saved line)"))


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
    for name, (to_line, to_exit, status, resume, line) in (("first run", first),
                                                           ("rerun", second)):
        if resume:
            print(f"  {name}: {resume}")
        print(f"  {name}: SIGTERM -> saved line {to_line:.1f} s -> exit {to_exit:.1f} s "
              f"(exit status {status}); {line}")


if __name__ == "__main__":
    main()
