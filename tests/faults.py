#!/usr/bin/env python3
"""Fault injection for keras_resnet's training command: kills at every file operation,
full disks, read-only and unwritable directories, corrupt inputs.

Kills are injected at the system-call level with ``strace`` (TensorFlow writes some files
from C++, out of reach of Python hooks):

1. a recording run lists, in order, every file operation the command performs under its
   run directory (creating a temporary, writing it, flushing it, renaming it into place,
   creating a directory, removing a file);
2. for each operation in turn, a run of the same command is killed with SIGKILL just as
   the operation starts (strace's ``inject=SYSCALL:signal=KILL:when=N``; the kill run's own
   log confirms that the operation killed is the intended one), so every state between
   two operations is reached once;
3. the same command is run again, without faults, and the run directory is checked:
   the run finished, each epoch is in ``metrics.csv`` exactly once, ``run.json`` agrees
   with ``metrics.csv``, ``last.keras`` and ``best.keras`` score on the test split what
   ``run.json`` says they score, ``last.keras`` holds the same weights as an uninterrupted
   run's, and no temporary is left.

The test suite (tests/test_faults.py) runs a few chosen points; ``python3 tests/faults.py
--full`` sweeps every point and every filesystem fault and prints the counts and the time.
"""

import argparse
import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")
PYTHON = sys.executable  # the environment the user installed into (strace follows its link)

# Small and quick: digits, the smallest CIFAR-style ResNet, two short epochs, deterministic
# ops so that a killed-and-resumed run can be compared with an uninterrupted one.
TRAIN_ARGS = ("--model", "resnet8", "--epochs", "2", "--steps-per-epoch", "3",
              "--batch-size", "32", "--deterministic")
EPOCHS = 2

TRACED = ("openat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "unlink",
          "unlinkat", "rmdir")
TMP_RE = re.compile(r"\.tmp-[A-Za-z0-9_]+")
TF_TMP_RE = re.compile(r"\.(tempstate\d+|tmp[0-9a-f]{32})")  # TensorFlow's own temporaries
EVENTS_RE = re.compile(r"tfevents\.[^\"]*")


def have_strace():
    return shutil.which("strace") is not None


def env(workdir, **extra):
    """The environment of every run: the repository importable, CPU only, no byte-code or
    font-cache writes of Python's own (they would be file operations too)."""
    e = dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE="1",
             MPLCONFIGDIR=os.path.join(workdir, ".mplconfig"), TF_CPP_MIN_LOG_LEVEL="2",
             CUDA_VISIBLE_DEVICES="")
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


def train_command(run_dir, *extra):
    return [PYTHON, TRAIN, *TRAIN_ARGS, "--run-dir", str(run_dir), *extra]


def run(cmd, workdir, timeout=900, prefix=(), **env_extra):
    return subprocess.run([*prefix, *cmd], cwd=workdir, env=env(workdir, **env_extra),
                          capture_output=True, text=True, timeout=timeout)


def warm_up(workdir):
    """Build matplotlib's font cache once, so that later runs do the same file operations."""
    os.makedirs(workdir, exist_ok=True)
    subprocess.run([PYTHON, "-c", "import matplotlib; matplotlib.use('Agg'); "
                    "import matplotlib.pyplot as plt; plt.figure().savefig('/dev/null', format='png')"],
                   cwd=workdir, env=env(workdir), check=True, capture_output=True)


# ----------------------------------------------------------------------------------------
# strace logs


_ENTRY = re.compile(r"^(\d+)\s+(\w+)\((.*?)(?:\)\s+=\s+(.*)|\s*<unfinished \.\.\.>)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>.*\)\s+=\s+(.*)$")


def parse_log(path):
    """The system calls of a ``strace -f -o`` log in the order they started: dicts with
    ``tid``, ``call``, ``nth`` (its count among this thread's calls of that system call,
    which is what ``when=`` counts), ``args`` and ``result`` (None when it never returned)."""
    calls, counts, pending = [], {}, {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            m = _ENTRY.match(line)
            if m:
                tid, call, args, result = m.groups()
                key = (tid, call)
                counts[key] = counts.get(key, 0) + 1
                entry = dict(tid=tid, call=call, nth=counts[key], args=args,
                             result=None if result == "?" else result)
                calls.append(entry)
                if result is None:
                    pending[key] = entry
                continue
            m = _RESUMED.match(line)
            if m and (m.group(1), m.group(2)) in pending:
                result = m.group(3)
                pending.pop((m.group(1), m.group(2)))["result"] = None if result == "?" else result
    return calls


def describe(entry, run_dir):
    """A call as text that is the same in every run: the run directory as RUN, random
    temporary names as ``.tmp-*``."""
    text = f"{entry['call']}({entry['args']})".replace(str(run_dir), "RUN")
    return TF_TMP_RE.sub(".tmp*", EVENTS_RE.sub("tfevents.*", TMP_RE.sub(".tmp-*", text)))


def _changes_something(c):
    """Whether a successful call under the run directory changes what a later run sees:
    creating a directory, creating a file (a temporary, TensorBoard's event file),
    renaming, removing. Re-opening a file to write or flush it adds no new state: the
    temporary already exists from its creation until its rename."""
    if c["call"] == "openat":
        return "O_CREAT" in c["args"] and "O_TRUNC" not in c["args"] or (
            "O_CREAT" in c["args"] and TMP_RE.search(c["args"]) is None)
    return True


def file_operations(calls, run_dir):
    """The calls that create, rename or remove something under ``run_dir`` and succeeded
    (failed probes such as ``mkdir`` of an existing directory change nothing), in order."""
    prefix = str(run_dir)
    ops = []
    for c in calls:
        paths = re.findall(r'"([^"]*)"', c["args"])
        if not any(p == prefix or p.startswith(prefix + "/") for p in paths):
            continue
        if c["result"] is None or c["result"].startswith("-1") or not _changes_something(c):
            continue
        ops.append(dict(c, what=describe(c, run_dir)))
    return ops


def record(workdir, name="record"):
    """Run the command once, uninterrupted, under strace; returns (run_dir, operations)."""
    run_dir = os.path.join(workdir, name)
    log = os.path.join(workdir, f"{name}.strace")
    r = run(train_command(run_dir), workdir,
            prefix=("strace", "-f", "-qq", "--seccomp-bpf", "-o", log, "-e",
                    "trace=" + ",".join(TRACED)))
    if r.returncode != 0:
        raise RuntimeError(f"the recording run failed:\n{r.stderr[-3000:]}")
    return run_dir, steady_kill_points(parse_log(log), run_dir)


def steady_kill_points(calls, run_dir):
    """:func:`file_operations`, each with where to kill it (``kill``): a thread's count of
    ``openat`` calls can differ by one between runs (threads' timing), so an ``openat`` is
    killed, where possible, at the call just before it instead: a ``mkdir`` of the existing
    parent (keras_resnet's atomic write makes sure of it), which changes nothing, and whose
    count is the same in every run."""
    ops = file_operations(calls, run_dir)
    position = {id(c): i for i, c in enumerate(calls)}
    by_key = {(c["tid"], c["call"], c["nth"]): c for c in calls}
    changing = {(o["tid"], o["call"], o["nth"]) for o in ops}
    for op in ops:
        op["kill"] = dict(call=op["call"], nth=op["nth"], what=op["what"])
        if op["call"] != "openat":
            continue
        i = position[id(by_key[(op["tid"], op["call"], op["nth"])])]
        for c in reversed(calls[:i]):
            if c["tid"] != op["tid"]:
                continue
            if (c["tid"], c["call"], c["nth"]) in changing:
                break
            if c["call"] == "mkdir" and (c["result"] or "").startswith("-1 EEXIST") and \
                    str(run_dir) in c["args"]:
                op["kill"] = dict(call="mkdir", nth=c["nth"], what=describe(c, run_dir))
                break
    return ops


def kill_at(op, run_dir, workdir, ops=None, cmd=None, tries=6):
    """Run the command and SIGKILL it as ``op`` (from :func:`record`) starts. Returns
    (what the kill landed on, as :func:`describe` writes it, or None when the run ended
    without being killed; the CompletedProcess).

    ``when=N`` counts a thread's calls of one system call, and a run may make a call or two
    more or fewer than the recording (Python's tempfile probes, lazy imports): when the kill
    lands elsewhere, the count is realigned on the last operation of ``ops`` that the killed
    run did perform, and the run repeated."""
    log = os.path.join(workdir, os.path.basename(run_dir) + ".kill.strace")
    target = op.get("kill", op)
    if target["call"] != op["call"]:  # a steady stand-in: no realignment needed
        ops = None
    when, killed, r = target["nth"], None, None
    same = [o for o in (ops or []) if o["call"] == op["call"]]
    for _ in range(tries):
        shutil.rmtree(run_dir, ignore_errors=True)
        r = run(cmd or train_command(run_dir), workdir,
                prefix=("strace", "-f", "-qq", "-o", log, "-e", f"trace={target['call']}",
                        "-e", f"inject={target['call']}:signal=KILL:when={when}"))
        if r.returncode not in (-9, 137):
            return None, r
        calls = parse_log(log)
        hit = [c for c in calls if c["nth"] == when and c["result"] is None]
        killed = describe(hit[0], run_dir) if hit else None
        if killed == target["what"]:
            return op["what"], r  # the operation itself, or the steady call just before it
        if not same or not hit:
            return killed, r
        done = [c for c in file_operations(calls, run_dir) if c["tid"] == hit[0]["tid"]]
        k = len(done)
        if k == 0 and '"RUN' not in killed:
            # Killed before the run directory's first such call, on an extra call elsewhere
            # (a lazy import a thread made earlier than in the recording): one call later.
            when += 1
            continue
        if k == 0 or k > len(same) or any(a["what"] != b["what"] for a, b in zip(done, same)):
            return killed, r
        when = done[-1]["nth"] + (op["nth"] - same[k - 1]["nth"])
    return killed, r


# ----------------------------------------------------------------------------------------
# What must hold after a rerun


def temporaries(directory):
    """Temporaries (keras_resnet's ``.<name>.tmp-*``, TensorFlow's ``*.tempstate<N>`` and
    ``*.tmp<hex>``) anywhere under ``directory``."""
    found = []
    for root, dirs, names in os.walk(directory):
        found += [os.path.join(root, n) for n in dirs + names
                  if (n.startswith(".") and ".tmp-" in n) or TF_TMP_RE.search(n)]
    return found


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def check_run(run_dir, reference=None, epochs=EPOCHS, models=None):
    """What a finished run directory must satisfy; returns the list of violations (empty
    when all hold). ``reference``: an uninterrupted run's directory whose ``last.keras``
    weights this one's must equal. ``models``: a cache of loaded reference weights."""
    import numpy as np

    from keras_resnet import training
    import keras_resnet.models  # noqa: F401  (registers ResNet for loading)
    from keras_resnet._compat import keras

    problems = []
    left = temporaries(run_dir)
    if left:
        problems.append(f"temporaries left: {[os.path.relpath(p, run_dir) for p in left]}")
    try:
        rows = _metrics(run_dir)
        with open(os.path.join(run_dir, "run.json")) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        return problems + [f"unreadable metrics.csv or run.json: {e}"]
    got = [int(r["epoch"]) for r in rows]
    if got != list(range(1, epochs + 1)):
        problems.append(f"metrics.csv epochs {got}, expected 1..{epochs} once each")
    if info.get("status") != "finished" or info.get("epochs_finished") != epochs:
        problems.append(f"run.json status {info.get('status')!r}, epochs_finished "
                        f"{info.get('epochs_finished')}")
    if not rows:
        return problems
    accs = [float(r["test_accuracy"]) for r in rows]
    best_epoch = accs.index(max(accs)) + 1
    if info["best"]["epoch"] != best_epoch or info["best"]["test_accuracy"] != accs[best_epoch - 1]:
        problems.append(f"run.json best {info['best']} disagrees with metrics.csv (epoch "
                        f"{best_epoch}, {accs[best_epoch - 1]})")
    for name, claimed in (("last.keras", info.get("test_accuracy")),
                          ("best.keras", info["best"]["test_accuracy"])):
        path = os.path.join(run_dir, name)
        try:
            result = training.evaluate(path, verbose=0)
        except Exception as e:  # noqa: BLE001 - any failure to load is a violation
            problems.append(f"{name} does not evaluate: {type(e).__name__}: {e}")
            continue
        # The same weights on the same images: the same predictions; one image's margin
        # covers a near-tie decided differently by another thread count.
        if claimed is None or abs(result["accuracy"] - claimed) > 1.0 / result["num_examples"] + 1e-12:
            problems.append(f"{name} scores {result['accuracy']:.4f} on the test split; "
                            f"run.json says {claimed}")
    if reference is not None:
        ref_path = os.path.join(reference, "last.keras")
        models = {} if models is None else models
        if ref_path not in models:
            models[ref_path] = keras.saving.load_model(ref_path).get_weights()
        try:
            mine = keras.saving.load_model(os.path.join(run_dir, "last.keras")).get_weights()
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(mine, models[ref_path]))
        except Exception as e:  # noqa: BLE001
            diff, problems = None, problems + [f"last.keras does not load: {e}"]
        # Deterministic ops, seeded data order, epoch-boundary checkpoints: a resumed run
        # repeats the uninterrupted one's arithmetic exactly.
        if diff is not None and diff > 0:
            problems.append(f"last.keras differs from an uninterrupted run's by up to {diff:.3g}")
    return problems


def uncommitted_models(run_dir):
    """Models (``best.keras``, ``last.keras``) present although no epoch is committed (no
    checkpoint holds a finished epoch, and no ``run.json`` records one): they come from an
    epoch the run does not hold."""
    try:
        with open(os.path.join(run_dir, "run.json")) as f:
            committed = json.load(f).get("epochs_finished", 0)
    except (OSError, ValueError):
        committed = 0
    if not committed:  # the checkpoint is the commit point; run.json is written after it
        from keras_resnet.training import read_checkpoint

        try:
            committed = (read_checkpoint(run_dir) or {}).get("epoch", 0)
        except Exception:  # noqa: BLE001 - no readable checkpoint: nothing committed
            committed = 0
    return [] if committed else [n for n in ("best.keras", "last.keras")
                                 if os.path.exists(os.path.join(run_dir, n))]


def kill_point(op, index, workdir, reference, ops=None, models=None):
    """Kill the command at ``op``, rerun it, check the run; returns a result dict."""
    run_dir = os.path.join(workdir, f"kill{index:03d}")
    shutil.rmtree(run_dir, ignore_errors=True)
    killed, r = kill_at(op, run_dir, workdir, ops)
    result = dict(index=index, op=op["what"], killed=killed, problems=[])
    if killed != op["what"]:
        result["problems"].append(f"the kill landed on {killed!r}, not on {op['what']!r} "
                                  f"(exit {r.returncode}: {r.stderr.strip()[-300:]})")
        return result
    rerun = run(train_command(run_dir), workdir)
    if rerun.returncode != 0:
        result["problems"].append(f"the rerun exited {rerun.returncode}: "
                                  f"{rerun.stderr.strip()[-500:]}")
        return result
    result["problems"] += check_run(run_dir, reference, models=models)
    if not result["problems"]:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def first_commit(ops, epoch):
    """The operation that commits ``epoch``: the rename onto the checkpoint (a run killed
    there has finished ``epoch - 1`` epochs)."""
    commits = [op for op in ops if op["call"].startswith("rename") and "checkpoint" in op["what"]]
    return commits[epoch - 1]


# ----------------------------------------------------------------------------------------
# Filesystem faults


def one_line_error(r, *needles):
    """Violations of "one line naming the path, exit status 2, no traceback"."""
    problems = []
    err = r.stderr.strip().splitlines()
    last = err[-1] if err else ""
    if r.returncode != 2:
        problems.append(f"exit status {r.returncode}, expected 2")
    if "Traceback" in r.stderr:
        problems.append("a traceback")
    for needle in needles:
        if needle not in last:
            problems.append(f"last line {last!r} does not name {needle!r}")
    return problems


@contextlib.contextmanager
def tmpfs(size):
    """A tmpfs of ``size`` mounted on a fresh directory (root only)."""
    where = tempfile.mkdtemp(prefix="keras_resnet_tmpfs_")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where], check=True,
                   capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], capture_output=True)
        os.rmdir(where)


def can_mount():
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    try:
        with tmpfs("64k"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False


def remount(where, options):
    subprocess.run(["mount", "-o", f"remount,{options}", where], check=True, capture_output=True)


# Root ignores permission bits; without these capabilities it obeys them like any user.
NO_DAC = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
          "--bounding-set=-dac_override,-dac_read_search")


def disk_full(size, workdir, reference, models=None):
    """Train on a tmpfs of ``size`` bytes: the run must stop with one line naming the file
    and exit 2, leave no temporary, and, once space is freed, the same command must finish
    a run that satisfies :func:`check_run`."""
    with tmpfs(size) as where:
        run_dir = os.path.join(where, "run")
        r = run(train_command(run_dir), workdir)
        problems = []
        if r.returncode == 0:
            return dict(fault=f"disk full at {size}", problems=[], note="the run fit")
        problems += one_line_error(r, "no space left on the device")
        problems += [f"temporary left: {p}" for p in temporaries(where)]
        uncommitted = uncommitted_models(run_dir)
        remount(where, "size=200m")
        again = run(train_command(run_dir), workdir)
        if again.returncode != 0:
            problems.append(f"after freeing space the rerun exited {again.returncode}: "
                            f"{again.stderr.strip()[-400:]}")
        else:
            problems += check_run(run_dir, reference, models=models)
    return dict(fault=f"disk full at {size}", problems=problems, uncommitted=uncommitted)


def read_only(workdir, reference, stop=None, ops=None, models=None, resume=True):
    """A run directory on a filesystem that is read-only from the start (``stop`` None), or
    that turns read-only after a run killed at the operation ``stop`` (from :func:`record`).
    With ``resume``, the same command must then finish the run once the filesystem is
    writable again."""
    with tmpfs("200m") as where:
        run_dir = os.path.join(where, "run")
        problems = []
        if stop is not None:
            killed, _ = kill_at(stop, run_dir, workdir, ops)
            if killed != stop["what"]:
                problems.append(f"the kill before the fault landed on {killed!r}")
        before = set(temporaries(where))  # a kill's temporaries: a read-only run cannot remove them
        remount(where, "ro")
        r = run(train_command(run_dir), workdir)
        problems += one_line_error(r, where, "read-only")
        remount(where, "rw")
        problems += [f"temporary left: {p}" for p in temporaries(where) if p not in before]
        again = run(train_command(run_dir), workdir) if resume else None
        if again is not None and again.returncode != 0:
            problems.append(f"once writable, the rerun exited {again.returncode}: "
                            f"{again.stderr.strip()[-400:]}")
        elif again is not None:
            problems += check_run(run_dir, reference, models=models)
    when = "from the start" if stop is None else "after a kill at " + stop["what"][:60]
    return dict(fault=f"read-only filesystem {when}", problems=problems)


def no_permission(workdir, reference, models=None):
    """A run directory inside a directory the user may not write to."""
    parent = os.path.join(workdir, "locked")
    os.makedirs(parent, exist_ok=True)
    os.chmod(parent, 0o555)
    run_dir = os.path.join(parent, "run")
    try:
        r = run(train_command(run_dir), workdir, prefix=NO_DAC)
        problems = one_line_error(r, run_dir, "permission denied")
    finally:
        os.chmod(parent, 0o755)
    return dict(fault="no write permission", problems=problems)


def run_dir_is_a_file(workdir):
    path = os.path.join(workdir, "a_file")
    with open(path, "w") as f:
        f.write("not a directory\n")
    r = run(train_command(path), workdir)
    return dict(fault="run directory is a file", problems=one_line_error(r, path))


# ----------------------------------------------------------------------------------------
# Export


EXPORT_ARGS = ("--tflite", "fp32", "--onnx", "fp32", "--openvino", "fp32", "--latency-runs", "1",
               "--quiet")


def export_command(source, out):
    return [PYTHON, os.path.join(ROOT, "export", "export_all.py"), str(source), "--out", str(out),
            *EXPORT_ARGS]


def check_export(out, source):
    """What an export directory must hold after a rerun: no temporary, a report, and every
    artifact it lists loads in its own runtime (TensorFlow, LiteRT, ONNX Runtime, OpenVINO) and gives
    the Keras model's probabilities (float32 conversions: within 1e-4) on test images."""
    import numpy as np

    import keras_resnet.models  # noqa: F401  (registers ResNet for loading)
    from keras_resnet._compat import keras

    problems = [f"temporary left: {os.path.relpath(p, out)}" for p in temporaries(out)]
    try:
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        return problems + [f"no readable report.json: {e}"]
    model = keras.saving.load_model(os.path.join(source, "best.keras"))
    from sklearn.datasets import load_digits

    x = load_digits().images[:8, :, :, None].astype("float32") * (255.0 / 16.0)
    want = np.asarray(model(x))
    listed = set()
    for a in report["artifacts"]:
        if a["format"] == "keras":
            continue
        path = a["path"]
        listed.add(os.path.relpath(path, out).split(os.sep)[0])
        try:
            if a["format"] == "savedmodel":
                import tensorflow as tf

                fn = tf.saved_model.load(path).signatures["serving_default"]
                outs = {k: np.asarray(v) for k, v in fn(tf.constant(x)).items()}
            elif a["format"] == "tflite":
                from ai_edge_litert.interpreter import Interpreter

                it = Interpreter(model_path=path)
                it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
                it.allocate_tensors()
                it.set_tensor(it.get_input_details()[0]["index"], x)
                it.invoke()
                outs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
            elif a["format"] == "openvino":  # a folder holding <name>.xml and .bin
                import openvino as ov

                (xml,) = [os.path.join(path, f) for f in os.listdir(path) if f.endswith(".xml")]
                compiled = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                result = compiled(x)
                outs = {o.get_any_name(): np.asarray(result[o]) for o in compiled.outputs}
            else:
                import onnxruntime as ort

                sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                outs = dict(zip([o.name for o in sess.get_outputs()],
                                sess.run(None, {sess.get_inputs()[0].name: x})))
            # the probabilities: named so, else the output whose rows sum to 1
            named = [v for k, v in outs.items() if "prob" in k.lower()]
            got = named[0] if named else min(outs.values(), key=lambda v: float(
                np.max(np.abs(np.sum(v, axis=-1) - 1))))
            diff = float(np.max(np.abs(got - want)))
            if diff > 1e-4:
                problems.append(f"{a['format']} {path} differs from best.keras by {diff:.3g}")
        except Exception as e:  # noqa: BLE001 - an artifact that does not load or run
            problems.append(f"{a['format']} {path} does not run: {type(e).__name__}: {e}")
    extra = sorted(set(os.listdir(out)) - listed - {"report.json", "report.md"})
    versions = {}  # SavedModel: every version folder the export left is one the report lists
    for a in report["artifacts"]:
        if a["format"] == "savedmodel":
            versions.setdefault(os.path.dirname(a["path"]), set()).add(os.path.basename(a["path"]))
    for model_dir, named in versions.items():
        extra += [os.path.relpath(os.path.join(model_dir, v), out)
                  for v in sorted(set(os.listdir(model_dir)) - named)]
    if extra:
        problems.append(f"unlisted files in the export directory: {extra}")
    return problems


def export_sweep(workdir, source, every=1, log=print, select=None):
    """Record an export of ``source`` (a finished run), kill it at every ``every``-th file
    operation (or, with ``select``, at the last operation whose description ``select``
    accepts), rerun it, check the export directory."""
    out = os.path.join(workdir, "export_record")
    log_path = os.path.join(workdir, "export_record.strace")
    shutil.rmtree(out, ignore_errors=True)
    r = run(export_command(source, out), workdir,
            prefix=("strace", "-f", "-qq", "--seccomp-bpf", "-o", log_path, "-e",
                    "trace=" + ",".join(TRACED)))
    if r.returncode != 0:
        raise RuntimeError(f"the recording export failed:\n{r.stderr[-3000:]}")
    ops = steady_kill_points(parse_log(log_path), out)
    chosen = list(enumerate(ops))[::every]
    if select is not None:
        chosen = [(i, op) for i, op in enumerate(ops) if select(op["what"])][-1:]
    log(f"export: {len(ops)} file operations under the export directory; killing at {len(chosen)}")
    results = []
    for index, op in chosen:
        target = os.path.join(workdir, f"export{index:03d}")
        killed, k = kill_at(op, target, workdir, ops, cmd=export_command(source, target))
        res = dict(index=index, op=op["what"], killed=killed, problems=[])
        if killed != op["what"]:
            res["problems"].append(f"the kill landed on {killed!r} (exit {k.returncode})")
        else:
            again = run(export_command(source, target), workdir)
            if again.returncode != 0:
                res["problems"].append(f"the rerun exited {again.returncode}: "
                                       f"{again.stderr.strip()[-300:]}")
            else:
                res["problems"] += check_export(target, source)
        results.append(res)
        log(f"[e{index:2d}] {'ok  ' if not res['problems'] else 'FAIL'} {op['what'][:110]}"
            + "".join(f"\n        {p}" for p in res["problems"]))
    return results


# ----------------------------------------------------------------------------------------
# Corrupt inputs


def truncate(path):
    """Cut a file to half its length (a copy interrupted half-way, a full disk)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _run_all(cases, workdir, jobs=4):
    """Run ``(name, cmd, check)`` cases, ``jobs`` at a time; returns ``[(name, problems)]``."""
    from concurrent.futures import ThreadPoolExecutor

    def one(case):
        name, cmd, check = case
        r = subprocess.run(cmd, cwd=workdir, env=env(workdir), capture_output=True, text=True,
                           timeout=900)
        return name, check(r)

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, cases))


def _error_or_intact(path, run_dir, reference, models):
    """A corrupt file must either be named in a one-line error (exit 2), or not matter:
    the command succeeds and the run directory still satisfies :func:`check_run`."""
    def check(r):
        if r.returncode == 0:
            return check_run(run_dir, reference, models=models) if run_dir else []
        return one_line_error(r, path)
    return check


def corrupt_inputs(workdir, reference, models=None, full=True):
    """Truncate each file a finished run directory holds and rerun the training command (and
    ``--evaluate``) on it; feed a truncated ``.keras`` to ``--init-from`` and ``--evaluate``,
    a truncated TFRecord shard and a truncated JPEG to training. Returns ``[(name,
    problems)]``."""
    cases = []
    names = sorted(os.path.relpath(os.path.join(root, n), reference)
                   for root, _, ns in os.walk(reference) for n in ns)
    if not full:
        names = ["run.json"]
    for i, name in enumerate(names):
        for mode in ("train", "evaluate"):
            run_dir = os.path.join(workdir, f"corrupt{i:02d}{mode[0]}")
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(reference, run_dir)
            bad = os.path.join(run_dir, name)
            truncate(bad)
            cmd = (train_command(run_dir) if mode == "train" else
                   [PYTHON, TRAIN, "--evaluate", run_dir])
            cases.append((f"truncated {name}, {'rerun' if mode == 'train' else '--evaluate'}", cmd,
                          _error_or_intact(bad, run_dir if mode == "train" else None, reference,
                                           models)))
    bad_model = os.path.join(workdir, "truncated.keras")
    shutil.copy(os.path.join(reference, "last.keras"), bad_model)
    truncate(bad_model)
    cases.append(("truncated .keras for --evaluate", [PYTHON, TRAIN, "--evaluate", bad_model],
                  lambda r: one_line_error(r, bad_model, "not a valid .keras file")))
    cases.append(("truncated .keras for --init-from",
                  train_command(os.path.join(workdir, "init_from"), "--init-from", bad_model),
                  lambda r: one_line_error(r, bad_model, "not a valid .keras file")))
    if full:
        cases += _corrupt_data_cases(workdir)
    return _run_all(cases, workdir)


def _corrupt_data_cases(workdir):
    """A truncated JPEG in an image folder and a truncated TFRecord shard."""
    sys.path.insert(0, ROOT)
    from keras_resnet import data as kdata

    folder = os.path.join(workdir, "photos")
    shutil.rmtree(folder, ignore_errors=True)
    kdata.sample_photo_folder(folder, per_class=12, size=16)
    records = os.path.join(workdir, "records")
    shutil.rmtree(records, ignore_errors=True)
    kdata.make_tfrecords_main([folder, records, "--images-per-shard", "8", "--quiet"])
    shard = sorted(os.path.join(records, n) for n in os.listdir(records) if n.startswith("train-"))[0]
    truncate(shard)
    jpeg = sorted(os.path.join(root, n) for root, _, ns in os.walk(folder) for n in ns
                  if n.lower().endswith((".jpg", ".jpeg", ".png")))[0]
    truncate(jpeg)
    small = ("--model", "resnet8", "--epochs", "1", "--batch-size", "4", "--image-size", "16",
             "--no-plot")
    return [
        ("truncated image in a folder dataset",
         [PYTHON, TRAIN, "--dataset", "folder", "--data-dir", folder, *small, "--run-dir",
          os.path.join(workdir, "folder_run")], lambda r: one_line_error(r, jpeg)),
        ("truncated TFRecord shard",
         [PYTHON, TRAIN, "--dataset", "tfrecord", "--data-dir", records, *small, "--run-dir",
          os.path.join(workdir, "tfrecord_run")], lambda r: one_line_error(r, shard)),
    ]


def impossible_inputs(workdir, reference):
    """Inputs that cannot work, each of which must be refused with one line (exit 2) or
    handled as documented. Returns ``[(name, problems)]``."""
    sys.path.insert(0, ROOT)
    from keras_resnet import data as kdata

    cases = []
    # more steps than the data holds: repeat the data (Keras's steps_per_epoch) or refuse
    over = os.path.join(workdir, "steps_over")
    shutil.rmtree(over, ignore_errors=True)
    cases.append(("--steps-per-epoch larger than the data",
                  [PYTHON, TRAIN, "--model", "resnet8", "--epochs", "2", "--batch-size", "32",
                   "--steps-per-epoch", "60", "--run-dir", over, "--no-plot"],
                  lambda r: [] if r.returncode == 0 else one_line_error(r, "--steps-per-epoch")))
    # a class folder without images: refused naming it, or left out with a warning naming it
    photos = os.path.join(workdir, "photos_empty_class")
    shutil.rmtree(photos, ignore_errors=True)
    kdata.sample_photo_folder(photos, per_class=8, size=16)
    empty = os.path.join(photos, "zz_empty")
    os.makedirs(empty)
    cases.append(("an empty class folder",
                  [PYTHON, TRAIN, "--dataset", "folder", "--data-dir", photos, "--model", "resnet8",
                   "--image-size", "16", "--epochs", "1", "--batch-size", "4", "--no-plot",
                   "--run-dir", os.path.join(workdir, "empty_class_run")],
                  lambda r: (one_line_error(r, "zz_empty") if r.returncode != 0 else
                             [] if "zz_empty" in r.stdout + r.stderr else
                             ["exit 0 without a word about the empty class folder zz_empty"])))
    # a .keras file alone (no run.json) exported without --dataset: exported, or refused
    bare = os.path.join(workdir, "bare")
    shutil.rmtree(bare, ignore_errors=True)
    os.makedirs(bare)
    shutil.copy(os.path.join(reference, "best.keras"), os.path.join(bare, "model.keras"))
    cases.append(("a .keras file exported without run.json or --dataset",
                  export_command(os.path.join(bare, "model.keras"), os.path.join(bare, "out")),
                  lambda r: [] if r.returncode == 0 else one_line_error(r, "--dataset")))
    # an export directory that cannot be written
    blocker = os.path.join(workdir, "export_blocker")
    with open(blocker, "w") as f:
        f.write("a file\n")
    cases.append(("export into a path below a file",
                  export_command(reference, os.path.join(blocker, "out")),
                  lambda r: one_line_error(r, blocker)))
    # keras-resnet-convert given a .keras file that is not one
    bad_model = os.path.join(workdir, "not_a_model.keras")
    with open(bad_model, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    cases.append(("keras-resnet-convert on a truncated .keras",
                  [PYTHON, "-c", "import sys; from keras_resnet.weights import main; "
                   "sys.exit(main(sys.argv[1:]))", bad_model, os.path.join(workdir, "conv.keras")],
                  lambda r: one_line_error(r, bad_model) + (
                      ["says 'not found' for a file that exists"]
                      if "not found" in r.stderr.lower() else [])))
    results = _run_all(cases, workdir)
    # an absurd --epochs must start training (or be refused) at once, not hang building
    # the input pipeline: give it what a normal start takes
    absurd = subprocess.Popen([PYTHON, TRAIN, "--model", "resnet8", "--epochs", str(10 ** 12),
                               "--run-dir", os.path.join(workdir, "absurd"), "--no-plot"],
                              cwd=workdir, env=env(workdir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    import threading

    timer = threading.Timer(300, absurd.kill)
    timer.start()
    started = False
    for line in absurd.stdout:  # stopped as soon as the first epoch starts
        if line.startswith("Epoch 1/"):
            started = True
            absurd.kill()
            break
    timer.cancel()
    _, err = absurd.communicate()
    if started:
        problems = []
    elif absurd.returncode == 2 and "Traceback" not in err:
        problems = []  # refused in one line
    else:
        problems = [f"--epochs 10**12: no epoch started within 300 s and no one-line refusal "
                    f"(exit {absurd.returncode}: {err.strip()[-200:]})"]
    results.append(("--epochs 10**12", problems))
    return results


# ----------------------------------------------------------------------------------------
# The sweep


def sweep(workdir, every=1, jobs=2, log=print):
    """Record, then kill at every ``every``-th operation; returns the results."""
    from concurrent.futures import ThreadPoolExecutor

    warm_up(workdir)
    reference, ops = record(workdir)
    chosen = list(enumerate(ops))[::every]
    log(f"{len(ops)} file operations under the run directory; killing at {len(chosen)}")
    results, models = [], {}

    def kill_and_rerun(item):
        index, op = item
        run_dir = os.path.join(workdir, f"kill{index:03d}")
        shutil.rmtree(run_dir, ignore_errors=True)
        killed, r = kill_at(op, run_dir, workdir, ops)
        if killed != op["what"]:
            return index, op, killed, r, None
        return index, op, killed, r, run(train_command(run_dir), workdir)

    with ThreadPoolExecutor(jobs) as pool:
        for index, op, killed, r, rerun in pool.map(kill_and_rerun, chosen):
            run_dir = os.path.join(workdir, f"kill{index:03d}")
            res = dict(index=index, op=op["what"], killed=killed, problems=[])
            if rerun is None:
                res["problems"].append(f"the kill landed on {killed!r} (exit {r.returncode})")
            elif rerun.returncode != 0:
                res["problems"].append(f"the rerun exited {rerun.returncode}: "
                                       f"{rerun.stderr.strip()[-300:]}")
            else:
                res["problems"] += check_run(run_dir, reference, models=models)
            results.append(res)
            log(f"[{index:3d}] {'ok  ' if not res['problems'] else 'FAIL'} {op['what'][:110]}"
                + "".join(f"\n        {p}" for p in res["problems"]))
    return reference, ops, results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="every kill point and every fault")
    p.add_argument("--every", type=int, default=4, help="without --full: every N-th kill point")
    p.add_argument("--jobs", type=int, default=2, help="kill points run in parallel")
    p.add_argument("--workdir", help="default: a temporary directory")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="leave out the export sweep")
    p.add_argument("--export-only", metavar="RUN_DIR",
                   help="only the export sweep, exporting this finished run")
    args = p.parse_args(argv)
    if not have_strace():
        raise SystemExit("faults.py needs strace")
    workdir = args.workdir or tempfile.mkdtemp(prefix="keras_resnet_faults_")
    if args.export_only:
        t0 = time.time()
        warm_up(workdir)
        exports = export_sweep(workdir, args.export_only, 1 if args.full else args.every)
        survived = sum(not r["problems"] for r in exports)
        print(f"\nexport kill points: {len(exports)} tried, {survived} survived "
              f"({(time.time() - t0) / 60:.1f} min)")
        return 0 if survived == len(exports) else 1
    t0 = time.time()
    reference, ops, kills = sweep(workdir, 1 if args.full else args.every, args.jobs)
    t_kills = time.time() - t0
    faults = []
    t1 = time.time()
    if can_mount():
        for size in (["256k", "700k", "1200k", "2m", "3m"] if args.full else ["700k"]):
            faults.append(disk_full(size, workdir, reference))
        faults.append(read_only(workdir, reference))
        faults.append(read_only(workdir, reference, stop=first_commit(ops, 2), ops=ops))
    else:
        print("skipped disk-full and read-only faults: mounting a tmpfs needs root")
    if os.geteuid() == 0 and shutil.which("setpriv"):
        faults.append(no_permission(workdir, reference))
    faults.append(run_dir_is_a_file(workdir))
    for f in faults:
        if f.get("uncommitted"):
            f["problems"].append(f"left {f['uncommitted']} of an epoch no checkpoint committed")
        print(f"{'ok  ' if not f['problems'] else 'FAIL'} {f['fault']}"
              + "".join(f"\n        {p}" for p in f["problems"]))
    t_faults = time.time() - t1
    t2 = time.time()
    bad = corrupt_inputs(workdir, reference, full=args.full)
    if args.full:
        bad += impossible_inputs(workdir, reference)
    for name, problems in bad:
        print(f"{'ok  ' if not problems else 'FAIL'} {name}" + "".join(f"\n        {p}" for p in problems))
    t_bad = time.time() - t2
    t3, exports = time.time(), []
    if args.export:
        exports = export_sweep(workdir, reference, 1 if args.full else args.every)
    t_export = time.time() - t3
    survived = sum(not r["problems"] for r in kills)
    print(f"\nkill points: {len(kills)} tried, {survived} survived ({t_kills / 60:.1f} min)")
    print(f"filesystem faults: {len(faults)} tried, {sum(not f['problems'] for f in faults)} "
          f"handled ({t_faults / 60:.1f} min)")
    print(f"bad inputs: {len(bad)} tried, {sum(not p for _, p in bad)} handled "
          f"({t_bad / 60:.1f} min)")
    if args.export:
        print(f"export kill points: {len(exports)} tried, "
              f"{sum(not r['problems'] for r in exports)} survived ({t_export / 60:.1f} min)")
    print(f"total {(time.time() - t0) / 60:.1f} min, {args.jobs} jobs, workdir {workdir}")
    ok = (survived == len(kills) and all(not f["problems"] for f in faults)
          and all(not p for _, p in bad) and all(not r["problems"] for r in exports))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main())
