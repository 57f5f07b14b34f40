"""Write tests/durations.json from a KERAS_RESNET_TEST_CPU_LOG file (see conftest.py):

    KERAS_RESNET_TEST_CPU_LOG=/tmp/cpu.jsonl python -m pytest -n auto tests
    python tests/durations.py /tmp/cpu.jsonl

Each test's weight is the CPU seconds of its process and of the children it waited for,
which a busy machine changes less than the wall time. Only the order of the suite depends
on it; a missing or stale file changes nothing else."""

import json
import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tests/durations.py CPU_LOG.jsonl", file=sys.stderr)
        return 2
    seconds = {}
    with open(argv[0]) as f:
        for line in f:
            row = json.loads(line)
            seconds[row["test"]] = round(row["cpu"] + row["children"], 1)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durations.json")
    with open(out + ".tmp", "w") as f:
        json.dump(dict(sorted(seconds.items())), f, indent=0)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print(f"{out}: {len(seconds)} tests, {sum(seconds.values()):.0f} CPU seconds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
