"""Hostile surroundings: files planted where a command runs, outputs that overlap inputs,
folders that are not ours, hostile model files and checkpoints (see docs/safety.md).

Every test that writes checks that nothing outside the command's own output changed: a
checksum of the surroundings before and after."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, train_env

from keras_resnet.isolated import python_command

PLANTED = ("statistics", "sitecustomize")


def plant(folder):
    """A statistics.py and a sitecustomize.py that each leave a marker file when imported."""
    for name in PLANTED:
        marker = os.path.join(str(folder), f"RAN-{name}")
        with open(os.path.join(str(folder), f"{name}.py"), "w") as f:
            f.write(f"open({marker!r}, 'w').write('planted {name}.py was imported')\n")
    return [os.path.join(str(folder), f"RAN-{name}") for name in PLANTED]


def ran(markers):
    return [m for m in markers if os.path.exists(m)]


def checksums(folder, skip=()):
    """{relative path: sha256 or link target} of everything under ``folder`` (links not
    followed), leaving out the paths under ``skip``."""
    out = {}
    skip = [os.path.abspath(str(s)) for s in skip]
    for dirpath, dirnames, filenames in os.walk(str(folder)):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            rel = os.path.relpath(path, str(folder))
            if os.path.islink(path):
                out[rel] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def command(name):
    """A console script as the user runs it (from the environment's bin folder)."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(script):
        pytest.skip(f"{name} is not installed in this environment (pip install -e .)")
    return [script]


@pytest.mark.parametrize("mode", ["P", "I"])
def test_a_child_process_does_not_import_files_of_the_working_directory(tmp_path, mode):
    if mode == "P" and sys.version_info < (3, 11):
        pytest.skip("python -P is Python 3.11+")
    markers = plant(tmp_path)
    # The way a clone that is not pip-installed is used: its root on PYTHONPATH, plus the
    # empty entry a careless "$REPO:$PYTHONPATH" leaves (it means the working directory).
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep)
    # find_spec locates the package without importing it (its import loads TensorFlow).
    code = ("import importlib.util, statistics; print(importlib.util.find_spec('keras_resnet').origin); "
            "print(statistics.median([1, 3, 5]))")
    argv, child_env = python_command([], env=env, code=code, mode=mode)
    assert "" not in child_env.get("PYTHONPATH", "x").split(os.pathsep)
    proc = subprocess.run(argv, env=child_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [os.path.join(ROOT, "keras_resnet", "__init__.py"), "3"]
    argv, child_env = python_command(["-h"], env=env, module="json.tool", mode=mode)
    proc = subprocess.run(argv, env=child_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert ran(markers) == []
    # The same child without isolation does import them: the test can fail.
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert ran(markers) == markers


@pytest.mark.slow
def test_no_command_runs_a_statistics_or_sitecustomize_planted_in_the_working_directory(tmp_path):
    """Train (one short epoch), export to every format, convert, make-tfrecords, all run
    from a folder holding a planted statistics.py and sitecustomize.py: neither runs. The
    export's child processes (the SavedModel check in a fresh process, QAT under tf_keras)
    are where the working directory could reach the import path; the other precisions
    convert in the command's own process, whose path never holds the working directory."""
    from test_weights_cli import torchvision_state
    from safetensors.numpy import save_file

    from keras_resnet.data import sample_photo_folder

    work = tmp_path / "work"
    work.mkdir()
    markers = plant(work)
    env = train_env()
    run_dir = tmp_path / "run"

    def go(argv, timeout=900):
        proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
        assert ran(markers) == [], argv
        return proc

    go([sys.executable, os.path.join(ROOT, "train.py"), "--model", "resnet8", "--epochs", "1",
        "--steps-per-epoch", "2", "--run-dir", str(run_dir), "--no-plot"])
    out = tmp_path / "exports"
    go(command("keras-resnet-export") + [str(run_dir), "--out", str(out), "--tflite",
       "fp32,qat", "--onnx", "fp32", "--qat-epochs", "1", "--num-samples", "32",
       "--latency-runs", "2", "--min-agreement", "0", "--max-accuracy-drop", "1"])
    with open(out / "report.json") as f:
        report = json.load(f)
    done = {(a["format"], a["precision"]) for a in report["artifacts"]}
    assert {("savedmodel", "fp32"), ("tflite", "qat"), ("onnx", "fp32")} <= done, done
    weights = tmp_path / "resnet18.safetensors"
    save_file(torchvision_state(np.random.default_rng(0)), str(weights))
    go(command("keras-resnet-convert") + [str(weights), str(tmp_path / "resnet18.keras"),
       "--input-shape", "32,32,3", "--quiet"])
    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=4, size=16)
    go(command("keras-resnet-make-tfrecords") + [str(photos), str(tmp_path / "records"), "--quiet"])
    assert ran(markers) == []


# --- keras-resnet-make-tfrecords writes only its own folder --------------------------------

def _make_tfrecords(argv, capsys):
    from keras_resnet.data import make_tfrecords_main

    capsys.readouterr()
    code = make_tfrecords_main([str(a) for a in argv] + ["--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.fixture
def photo_tree(tmp_path):
    """data/photos/<class>/<i>.jpg beside data/thesis.tex."""
    from keras_resnet.data import sample_photo_folder

    data = tmp_path / "data"
    sample_photo_folder(str(data / "photos"), per_class=3, size=16)
    (data / "thesis.tex").write_text("\\documentclass{article}\n")
    return data


@pytest.mark.parametrize("where, says", [
    ("photos", "is the input folder"),
    (".", "contains the input folder"),
    ("photos/records", "lies inside the input folder"),
    ("link-to-photos", "is the input folder"),        # the same folder through a symlink
    ("link-to-photos/records", "lies inside the input folder"),
])
def test_make_tfrecords_refuses_an_output_that_overlaps_the_input(photo_tree, capsys, where, says):
    os.symlink("photos", photo_tree / "link-to-photos")
    before = checksums(photo_tree.parent)
    code, err = _make_tfrecords([photo_tree / "photos", photo_tree / where, "--overwrite"], capsys)
    assert code == 2
    assert len(err) == 1 and says in err[0] and "keras-resnet-make-tfrecords: error:" in err[0], err
    assert checksums(photo_tree.parent) == before


def test_make_tfrecords_overwrite_replaces_only_a_folder_it_wrote(photo_tree, tmp_path, capsys):
    photos, out = photo_tree / "photos", tmp_path / "records"
    # A folder of the user's: --overwrite leaves it alone.
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = checksums(tmp_path)
    code, err = _make_tfrecords([photos, out, "--overwrite"], capsys)
    assert code == 2 and len(err) == 1 and "was not written by keras-resnet-make-tfrecords" in err[0], err
    assert checksums(tmp_path) == before
    (out / "notes.txt").unlink()
    out.rmdir()
    # Ours: written, then replaced by --overwrite with the same records (same seed).
    assert _make_tfrecords([photos, out], capsys)[0] == 0
    first = checksums(out)
    assert {"classes.txt", ".keras-resnet-tfrecords.json"} < set(first)
    surroundings = checksums(tmp_path, skip=[out])
    assert _make_tfrecords([photos, out, "--overwrite"], capsys)[0] == 0
    assert checksums(out) == first and checksums(tmp_path, skip=[out]) == surroundings
    # A file the user added to our folder makes it no longer only ours.
    (out / "extra.txt").write_text("mine too")
    before = checksums(tmp_path)
    code, err = _make_tfrecords([photos, out, "--overwrite"], capsys)
    assert code == 2 and "was not written by" in err[0]
    assert checksums(tmp_path) == before
    (out / "extra.txt").unlink()
    # A symlink to our folder is not followed: the folder behind it stays as it is.
    link = tmp_path / "link-records"
    os.symlink(out, link)
    before = checksums(tmp_path)
    code, err = _make_tfrecords([photos, link, "--overwrite"], capsys)
    assert code == 2 and "symlink" in err[0], err
    assert checksums(tmp_path) == before


_BLOCKED_WRITER = """
import sys, time
from keras_resnet.data.tfrecords import write_tfrecords
flag = sys.argv[3]
def progress(done, total):
    if done == 2:
        open(flag, "w").close()
        time.sleep(600)
write_tfrecords(sys.argv[1], sys.argv[2], images_per_shard=1, progress=progress)
"""


@pytest.mark.slow
def test_make_tfrecords_rerun_removes_a_killed_runs_partial_folder_but_not_a_live_runs(
        photo_tree, tmp_path, capsys):
    """Two real writer processes stopped mid-write: one killed (SIGKILL), one alive. A rerun
    removes the killed one's .partial-* folder, leaves the live one's, and writes the output."""
    import signal
    import time

    photos, out = photo_tree / "photos", tmp_path / "records"
    procs = []
    for name in ("killed", "live"):
        flag = tmp_path / f"{name}.flag"
        argv, env = python_command([str(photos), str(out), str(flag)], env=train_env(), code=_BLOCKED_WRITER)
        procs.append((subprocess.Popen(argv, env=env, cwd=tmp_path, stderr=subprocess.PIPE), flag))
    try:
        for proc, flag in procs:
            deadline = time.time() + 300
            while not flag.exists():
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.time() < deadline
                time.sleep(0.2)
        killed, live = procs[0][0], procs[1][0]
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        partial = sorted(n for n in os.listdir(tmp_path) if n.startswith(".records.partial-"))
        assert len(partial) == 2
        code, err = _make_tfrecords([photos, out], capsys)
        assert code == 0, err
        left = sorted(n for n in os.listdir(tmp_path) if n.startswith(".records.partial-"))
        assert len(left) == 1, left  # the live writer's, untouched
        assert any(n.startswith("train-00000-of-") for n in os.listdir(tmp_path / left[0]))
        written = os.listdir(out)
        assert "classes.txt" in written and any(n.startswith("validation-") for n in written)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- training touches only a keras_resnet run directory ------------------------------------

def _train_main(argv, capsys):
    """``train.py ARGS`` through the command's own main, in this process: (exit, stderr lines)."""
    from keras_resnet.train import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv], prog="train.py")
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err.strip().splitlines()


TINY = ["--model", "resnet8", "--dataset", "synthetic", "--image-size", "16", "--num-classes", "4",
        "--epochs", "1", "--steps-per-epoch", "2", "--no-plot"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real tiny run (resnet8, 16x16 synthetic images, 1 epoch of 2 steps), trained with --overwrite into a
    folder whose ``checkpoint`` is a symlink to a folder outside it: the link is replaced,
    what it points to is left as it was. Returns (run_dir, outside, outside's checksums)."""
    import contextlib  # (capsys is function-scoped: output captured by hand)
    import io

    base = tmp_path_factory.mktemp("tiny")
    outside = base / "elsewhere"
    outside.mkdir()
    (outside / "my_model.pt").write_bytes(b"weights of mine")
    (outside / "checkpoint").write_text("not a tf checkpoint index\n")
    before = checksums(outside)
    run_dir = base / "run"
    run_dir.mkdir()
    os.symlink(outside, run_dir / "checkpoint")
    from keras_resnet.train import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(TINY + ["--run-dir", str(run_dir), "--overwrite"], prog="train.py")
    assert rc in (0, None), err.getvalue()[-3000:]
    return run_dir, outside, before


def _copy_run(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir, symlinks=True)
    return run_dir


def test_overwrite_never_follows_a_checkpoint_symlink_out_of_the_run_directory(tiny_run):
    run_dir, outside, before = tiny_run
    assert checksums(outside) == before
    assert os.path.isdir(run_dir / "checkpoint") and not os.path.islink(run_dir / "checkpoint")
    with open(run_dir / "run.json") as f:
        assert json.load(f)["status"] == "finished"


def test_training_into_a_folder_that_is_not_a_run_is_refused_and_touches_nothing(tmp_path, capsys):
    folder = tmp_path / "project"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "my_model.pt").write_bytes(b"weights of mine")
    (folder / "metrics.csv").write_text("epoch,score\n1,0.5\n")
    (folder / "run.json").write_text('{"mine": true}\n')
    (folder / ".checkpoint.tmp-x").write_text("looks like a temporary, is not ours")
    before = checksums(tmp_path)
    rc, err = _train_main(TINY + ["--run-dir", folder], capsys)
    assert rc == 2
    assert err[-1].startswith(f"train.py: error: {folder} is not a keras_resnet run directory"), err
    assert "use another --run-dir, or --overwrite" in err[-1]
    assert checksums(tmp_path) == before


def test_a_checkpoint_symlink_is_refused_without_overwrite(tiny_run, tmp_path, capsys):
    run_dir = _copy_run(tiny_run, tmp_path)
    import shutil

    shutil.rmtree(run_dir / "checkpoint")
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_run[0] / "checkpoint", outside)
    os.symlink(outside, run_dir / "checkpoint")
    (outside / "my_model.pt").write_bytes(b"weights of mine")
    before = checksums(tmp_path)
    rc, err = _train_main(TINY + ["--run-dir", run_dir, "--epochs", "2"], capsys)
    assert rc == 2 and "checkpoint is a symbolic link" in err[-1], err
    assert checksums(tmp_path) == before


@pytest.mark.parametrize("lost", ["checkpoint", "checkpoint/checkpoint"])
def test_a_finished_run_without_its_checkpoint_is_not_retrained_over_its_models(
        tiny_run, tmp_path, capsys, lost):
    import shutil

    run_dir = _copy_run(tiny_run, tmp_path)
    target = run_dir / lost
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = checksums(tmp_path)
    for extra in ([], ["--epochs", "2"]):
        rc, err = _train_main(TINY + ["--run-dir", run_dir] + extra, capsys)
        assert rc == 2, err
        assert "holds a trained run (last.keras, best.keras, metrics.csv) but no committed checkpoint" in err[-1]
        assert "pass --overwrite to train it again from epoch 1" in err[-1]
        assert checksums(tmp_path) == before


@pytest.mark.parametrize("change, key", [
    (["--image-size", "24"], "input_shape: [16, 16, 3] -> [24, 24, 3]"),
    (["--num-classes", "5"], "num_classes: 4 -> 5"),
    (["--model", "resnet14"], "model: 'resnet8' -> 'resnet14'"),
])
def test_a_finished_run_rerun_with_a_different_model_is_refused(tiny_run, tmp_path, capsys, change, key):
    run_dir = _copy_run(tiny_run, tmp_path)
    before = checksums(tmp_path)
    rc, err = _train_main(TINY + ["--run-dir", run_dir] + change, capsys)
    assert rc == 2 and "holds a run with different settings" in err[-1] and key in err[-1], err
    assert checksums(tmp_path) == before


# --- model files and checkpoints: nothing opened because a file says so, limits first ----

def _rewrite_config(src, dst, change):
    """A copy of the .keras file ``src`` at ``dst`` with ``change(config_doc)`` applied."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json":
                doc = json.loads(data)
                change(doc)
                data = json.dumps(doc).encode()
            zout.writestr(info, data)


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    import keras_resnet as kr

    path = tmp_path_factory.mktemp("keras") / "resnet8.keras"
    model = kr.resnet_cifar(8, input_shape=(16, 16, 3), classes=3)
    model.save(path)
    return path, [w.copy() for w in model.get_weights()]


def test_a_keras_file_naming_itself_as_weights_loads_without_opening_it(small_keras, tmp_path):
    from keras_resnet.keras_file import load_model

    path, weights = small_keras
    evil = tmp_path / "evil.keras"
    _rewrite_config(path, evil, lambda doc: doc["config"].update(weights=str(evil)))
    with open(evil, "rb") as f:
        assert str(evil).encode() in f.read()  # the file does name itself
    model = load_model(str(evil), compile=False)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))


@pytest.mark.parametrize("change, says", [
    (dict(stackwise_num_blocks=[200000, 1, 1]), "has 200002 blocks; at most 600"),
    (dict(stackwise_num_blocks=[1] * 100000, stackwise_num_filters=[16] * 100000), "at most 8 stages"),
    (dict(stackwise_num_filters=[16, 32, 10 ** 9]), "stackwise_num_filters=[16, 32, 1000000000] is not supported"),
    (dict(classes=10 ** 9), "classes=1000000000 is not supported"),
])
def test_a_keras_file_past_the_model_limits_is_one_line_before_anything_is_built(
        small_keras, tmp_path, capsys, change, says):
    import time

    from keras_resnet.export.cli import main

    bad = tmp_path / "bad.keras"
    _rewrite_config(small_keras[0], bad, lambda doc: doc["config"].update(change))
    before = checksums(tmp_path)
    start = time.perf_counter()
    rc = main([str(bad), "--out", str(tmp_path / "out"), "--formats", "savedmodel"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and says in err[-1] and str(bad) in err[-1], err
    assert time.perf_counter() - start < 20  # refused up front (it used to build for minutes)
    assert checksums(tmp_path) == before


def test_a_zip_bomb_keras_file_is_refused_before_its_config_is_read(tmp_path):
    import time
    import zipfile

    from keras_resnet.keras_file import load_model

    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", '{"keras_version": "3.15.0"}')
        with z.open("config.json", "w", force_zip64=True) as f:
            chunk = b" " * (1 << 20)
            for _ in range(65):  # 65 MiB of blanks, a few hundred KB compressed
                f.write(chunk)
    assert os.path.getsize(bomb) < 1 << 20
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"config.json claims 68,157,440 bytes uncompressed; at most 67,108,864"):
        load_model(str(bomb))
    assert time.perf_counter() - start < 5


def test_depths_past_resnet_1202_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import time

    import keras_resnet as kr
    from keras_resnet.experiments import main as experiment_main

    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"depth=600002 is not supported; at most 1202"):
        kr.resnet_cifar(600002)
    with pytest.raises(ValueError, match=r"has 200002 blocks; at most 600"):
        kr.ResNet([200000, 1, 1], [16, 32, 64], stem="cifar", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"input_shape=\(100000, 100000, 3\) is not supported"):
        kr.ResNet([1, 1], [16, 32], stem="cifar", input_shape=(100000, 100000, 3))
    monkeypatch.chdir(tmp_path)
    rc, err = _train_main(["--model", "resnet600002", "--epochs", "1"], capsys)
    assert rc == 2 and "depth=600002 is not supported; at most 1202" in err[-1], err
    try:
        rc = experiment_main(["degradation", "--depths", "8,600002", "--out", str(tmp_path / "exp")])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "6n+2, 8 to 1202" in err[-1], err
    assert time.perf_counter() - start < 30
    assert os.listdir(tmp_path) == []


def _safetensors_with(path, state):
    from safetensors.numpy import save_file

    save_file(state, str(path))


def _convert(argv, capsys):
    from keras_resnet.weights import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    captured = capsys.readouterr()
    _convert.out = captured.out
    return rc, captured.err.strip().splitlines()


def test_checkpoints_that_ask_for_a_million_blocks_or_terabytes_are_one_line(tmp_path, capsys):
    import time

    import h5py
    from test_weights_cli import torchvision_state

    state = torchvision_state(np.random.default_rng(0))
    state["layer1.999999.conv1.weight"] = state.pop("layer1.1.conv1.weight")
    deep = tmp_path / "deep.safetensors"
    _safetensors_with(deep, state)
    huge = tmp_path / "huge.h5"  # a legacy Keras .h5 whose one dataset claims 4 TiB
    with h5py.File(huge, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv"]
        g = f.create_group("conv1_conv")
        g.attrs["weight_names"] = [b"conv1_conv/kernel:0"]
        g.create_dataset("conv1_conv/kernel:0", shape=(1 << 20, 1 << 20), dtype="f4",
                         chunks=(256, 256), compression="gzip")
    assert os.path.getsize(huge) < 1 << 20
    before = checksums(tmp_path)
    for source, says in ((deep, "key 'layer1.999999.conv1.weight' names block 999999 of a stage; at most 600"),
                         (huge, "of shape (1048576, 1048576) claims 4.1e+03 GiB; at most 4 GiB")):
        start = time.perf_counter()
        rc, err = _convert([source, tmp_path / "out.keras"], capsys)
        assert rc == 2 and len([l for l in err if "error" in l]) == 1 and says in err[-1], err
        assert time.perf_counter() - start < 30
    assert checksums(tmp_path) == before


# --- hostile image folders and TFRecords: one line at listing time ------------------------

@pytest.fixture
def hostile_folder(tmp_path):
    """Two classes of real JPEGs, plus entries named like images that are not image files."""
    from keras_resnet.data import sample_photo_folder

    root = tmp_path / "photos"
    sample_photo_folder(str(root), per_class=4, size=16)
    cls = root / "china"
    os.mkfifo(cls / "fifo.jpg")  # opening it for reading blocks forever
    os.symlink("/dev/zero", cls / "zero.jpg")  # endless bytes
    os.symlink(str(tmp_path / "gone.jpg"), cls / "dangling.jpg")
    os.symlink("loop2.jpg", cls / "loop1.jpg")
    os.symlink("loop1.jpg", cls / "loop2.jpg")
    (cls / "folder.png").mkdir()
    return root


BAD_ENTRIES = {"fifo.jpg": "a FIFO", "zero.jpg": "a character device", "dangling.jpg": "a dangling symlink",
               "loop1.jpg": "a symlink loop", "loop2.jpg": "a symlink loop", "folder.png": "a directory"}


def test_special_files_in_an_image_folder_are_named_or_skipped_at_listing_time(hostile_folder):
    import shutil

    from keras_resnet.data import DataError, get_dataset

    cls = hostile_folder / "china"
    # Each kind alone, with on_corrupt="fail": one line naming the entry and what it is.
    for group in (["fifo.jpg"], ["zero.jpg"], ["dangling.jpg"], ["loop1.jpg", "loop2.jpg"], ["folder.png"]):
        name, what = group[0], BAD_ENTRIES[group[0]]
        aside = hostile_folder.parent / "aside"
        aside.mkdir(exist_ok=True)
        for other in BAD_ENTRIES:
            if other not in group and os.path.lexists(cls / other):
                shutil.move(str(cls / other), str(aside / other))
        with pytest.raises(DataError) as e:
            get_dataset("folder", data_dir=str(hostile_folder), image_size=16)
        message = str(e.value)
        assert "\n" not in message and message.startswith(f"{cls / name} is {what}"), message
        assert "--on-corrupt skip" in message
        for other in os.listdir(aside):
            shutil.move(str(aside / other), str(cls / other))
    # With on_corrupt="skip" they are left out, listed as skipped, and the images train.
    ds = get_dataset("folder", data_dir=str(hostile_folder), image_size=16, on_corrupt="skip")
    assert sorted(os.path.basename(p) for p in ds.unreadable) == sorted(BAD_ENTRIES)
    assert ds.sizes["train"] + ds.sizes["test"] == 8
    from keras_resnet.data import make_dataset

    x, y = next(iter(make_dataset(ds, "train", batch_size=8, training=False)))
    assert x.shape[0] == ds.sizes["train"]


def _write_records(path, examples):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for feats in examples:
            feature = {}
            for key, value in feats.items():
                if isinstance(value, bytes):
                    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                else:
                    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


@pytest.fixture(scope="module")
def jpeg_bytes():
    import tensorflow as tf

    return tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()


@pytest.mark.parametrize("records, says", [
    ([{"image/raw": b"x", "image/class/label": 0}], "record 0 has no feature 'image/encoded' (it has image/class/label, image/raw)"),
    ([{"image/encoded": b"J", "image/class/label": b"cat"}], "record 0's 'image/class/label' is not one int64 value"),
    ([{"image/encoded": b"J", "image/class/label": 2 ** 31 + 1}], "record 0 has label 2147483649, outside 0..1 (2 classes)"),
    ([{"image/encoded": b"J", "image/class/label": -1}], "record 0 has label -1, outside 0..1"),
])
def test_tfrecords_with_wrong_keys_types_or_labels_are_one_line_naming_the_file(
        tmp_path, jpeg_bytes, records, says):
    from keras_resnet.data import DataError, get_dataset

    records = [{k: (jpeg_bytes if v == b"J" else v) for k, v in r.items()} for r in records]
    _write_records(tmp_path / "train-00000-of-00001", records)
    _write_records(tmp_path / "validation-00000-of-00001", [{"image/encoded": jpeg_bytes, "image/class/label": 0}])
    with pytest.raises(DataError) as e:
        get_dataset("tfrecord", data_dir=str(tmp_path), num_classes=2, image_size=8)
    assert str(e.value) == f"{tmp_path / 'train-00000-of-00001'}: {says}" + str(e.value).split(says, 1)[1]
    assert "\n" not in str(e.value)


def test_a_tfrecord_label_out_of_range_later_in_a_file_stops_training_in_one_line(tmp_path, jpeg_bytes, capsys):
    ok = {"image/encoded": jpeg_bytes, "image/class/label": 1}
    _write_records(tmp_path / "train-00000-of-00001", [ok] * 5 + [dict(ok, **{"image/class/label": 7})] + [ok] * 2)
    _write_records(tmp_path / "validation-00000-of-00001", [ok] * 4)
    run_dir = tmp_path / "run"
    rc, err = _train_main(["--model", "resnet8", "--dataset", "tfrecord", "--data-dir", tmp_path,
                           "--num-classes", "2", "--image-size", "8", "--batch-size", "8",
                           "--epochs", "1", "--steps-per-epoch", "1", "--run-dir", run_dir, "--no-plot"], capsys)
    assert rc == 2, err
    assert f"{tmp_path / 'train-00000-of-00001'} record 5: label 7 is outside 0..1 (2 classes)" in err[-1], err


# --- keras-resnet-convert checks what it writes ----------------------------------------------

def _poisoned(state, key, how):
    a = state[key].copy()
    if how == "nan":
        a.flat[3] = np.nan
    elif how == "inf":
        a.flat[0] = np.inf
    elif how == "negative":
        a.flat[1] = -0.5
    elif how == "overflow":  # finite, but its products overflow float32
        a = a * np.float32(1e38) / np.abs(a).max()
    state[key] = a
    return state


@pytest.mark.parametrize("key, how, says", [
    ("layer1.0.conv1.weight", "nan", "key 'layer1.0.conv1.weight' holds 1 non-finite value(s) (NaN)"),
    ("bn1.weight", "inf", "key 'bn1.weight' holds 1 non-finite value(s) (Inf)"),
    ("layer2.0.bn1.running_var", "negative", "key 'layer2.0.bn1.running_var' (a BatchNormalization running variance) holds negative values (min -0.5)"),
    ("fc.bias", "complex", "key 'fc.bias' has dtype complex64; expected real numbers"),
    ("conv1.weight", "overflow", "the converted model's outputs are not finite"),
])
def test_convert_refuses_weights_that_cannot_compute_and_writes_nothing(tmp_path, capsys, key, how, says):
    from test_weights_cli import torchvision_state

    state = torchvision_state(np.random.default_rng(0))
    if how == "complex":
        torch = pytest.importorskip("torch")
        state = {k: torch.from_numpy(v) for k, v in state.items()}
        state[key] = state[key].to(torch.complex64) * (1 + 1j)
        source = tmp_path / "resnet18.pt"
        torch.save(state, source)
    else:
        source = tmp_path / "resnet18.safetensors"
        _safetensors_with(source, _poisoned(state, key, how))
    before = checksums(tmp_path)
    rc, err = _convert([source, tmp_path / "out.keras", "--input-shape", "32,32,3"], capsys)
    assert rc == 2 and says in err[-1], err
    assert "reading" in _convert.out and "matches" not in _convert.out
    assert checksums(tmp_path) == before


@pytest.mark.parametrize("how", ["sparse", "meta"])
def test_convert_names_a_tensor_that_is_not_a_dense_array(tmp_path, capsys, how):
    torch = pytest.importorskip("torch")
    from test_weights_cli import torchvision_state

    state = {k: torch.from_numpy(v) for k, v in torchvision_state(np.random.default_rng(0)).items()}
    key = "layer1.0.conv2.weight"
    state[key] = state[key].to_sparse() if how == "sparse" else torch.empty(state[key].shape, device="meta")
    source = tmp_path / "resnet18.pt"
    torch.save(state, source)
    before = checksums(tmp_path)
    rc, err = _convert([source, tmp_path / "out.keras", "--input-shape", "32,32,3"], capsys)
    assert rc == 2 and len(err) == 1, err
    assert f"key '{key}'" in err[0] and ("cannot be read as an array" in err[0] or "not a loadable" in err[0]), err
    assert checksums(tmp_path) == before


def test_convert_never_follows_an_hdf5_external_link(tmp_path, capsys):
    import h5py

    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.zeros((3, 3), "float32")
    source = tmp_path / "linked.h5"
    with h5py.File(source, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv"]
        g = f.create_group("conv1_conv")
        g.attrs["weight_names"] = [b"kernel:0"]
        g["kernel:0"] = h5py.ExternalLink(str(other), "/secret")
    before = checksums(tmp_path)
    rc, err = _convert([source, tmp_path / "out.keras"], capsys)
    assert rc == 2 and "dataset 'conv1_conv/kernel:0' is a link (ExternalLink)" in err[-1], err
    assert checksums(tmp_path) == before


def test_a_class_folder_named_with_a_line_break_is_one_line_not_two_classes(tmp_path, capsys):
    from keras_resnet.data import sample_photo_folder

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=3, size=16)
    os.rename(photos / "china", photos / "chi\nna")
    before = checksums(tmp_path)
    code, err = _make_tfrecords([photos, tmp_path / "records"], capsys)
    assert code == 2 and len(err) == 1 and "has a line break in its name" in err[0], err
    assert checksums(tmp_path) == before


# --- sane numbers: documented ranges, warmup within training, memory estimates --------------

def _memory_total():
    """MemTotal of /proc/meminfo, in bytes: the machine's memory, read independently of
    keras_resnet (None where /proc is unavailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@pytest.mark.parametrize("flags, says", [
    (["--warmup-epochs", "1e308"], "argument --warmup-epochs: 1e308 is not accepted; expected a number in [0, 100000]"),
    (["--dataset", "synthetic", "--num-classes", "1000000000"],
     "argument --num-classes: 1000000000 is not accepted; expected an integer in [2, 100000]"),
    (["--batch-size", "1000000000", "--steps-per-epoch", "1"],
     "argument --batch-size: 1000000000 is not accepted; expected an integer in [1, 65536]"),
    (["--dataset", "synthetic", "--image-size", "4097"], "argument --image-size: 4097 is not accepted; expected an integer in [8, 4096]"),
    (["--epochs", "100001"], "argument --epochs: 100001 is not accepted; expected an integer in [1, 100000]"),
])
def test_numbers_past_their_documented_range_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, flags, says):
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine\n")
    before = checksums(tmp_path)
    start = time.perf_counter()
    rc, err = _train_main(["--model", "resnet8", "--run-dir", tmp_path / "run"] + flags, capsys)
    assert rc == 2 and err[-1] == f"train.py: error: {says}", err
    assert time.perf_counter() - start < 10  # at parse time: no billion class names, no TensorFlow work
    assert checksums(tmp_path) == before


def test_the_library_checks_the_same_numbers_before_it_builds_anything(tmp_path):
    import time

    from keras_resnet import training as kt

    for overrides, says in [
        # a billion class names were built before any other check
        (dict(dataset="synthetic", num_classes=10 ** 9),
         "num_classes=1000000000 is not supported for the synthetic dataset; expected an integer in [2, 100,000]"),
        (dict(warmup_epochs=1e308), "warmup_epochs=1e+308 is not supported; expected a value in [0, 100,000]"),
        (dict(batch_size=10 ** 9, steps_per_epoch=1), "batch_size=1000000000 is not supported; expected a value in [1, 65,536]"),
    ]:
        start = time.perf_counter()
        with pytest.raises(ValueError) as e:
            kt.train(kt.TrainConfig(model="resnet8", run_dir=str(tmp_path / "run"), verbose=0, **overrides))
        assert str(e.value) == says
        assert time.perf_counter() - start < 20
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flags, says", [
    # the digits preset trains 30 epochs
    (["--warmup-epochs", "31"], "warmup_epochs=31 (--warmup-epochs) is longer than training (30 epochs)"),
    # 4 iterations of 2 steps an epoch: 2 epochs
    (["--iterations", "4", "--steps-per-epoch", "2", "--warmup-epochs", "2.5"],
     "warmup_epochs=2.5 (--warmup-epochs) is longer than training (2 epochs)"),
])
def test_a_warmup_longer_than_training_is_one_line(tmp_path, capsys, flags, says):
    before = checksums(tmp_path)
    rc, err = _train_main(["--model", "resnet8", "--run-dir", tmp_path / "run"] + flags, capsys)
    assert rc == 2 and err[-1].startswith(f"train.py: error: {says}"), err
    assert checksums(tmp_path) == before


def test_memory_estimates_past_the_machines_memory_are_one_line(tmp_path, capsys):
    """Synthetic 4096x4096x3 images (1,280 held in memory as float32) and a batch of 4,096
    such images: what each needs at the least is computed here from the sizes alone."""
    from keras_resnet.data import sample_photo_folder

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=3, size=16)
    cases = [
        (["--dataset", "synthetic", "--image-size", "4096"], 1280 * 4096 * 4096 * 3 * 4,
         "the synthetic dataset (1,280 float32 images of 4096x4096x3 held in memory) needs at least"),
        (["--dataset", "folder", "--data-dir", photos, "--image-size", "4096", "--batch-size", "4096",
          "--steps-per-epoch", "1"], 4 * 4096 * (4096 * 4096 * 3 + 2),
         "a training batch of 4,096 images of 4096x4096x3 and 2 classes"),
    ]
    total = _memory_total()
    before = checksums(tmp_path)
    for flags, need, says in cases:
        if total is None or need <= total:
            continue  # a machine this large would try it (and that is not a test of a refusal)
        rc, err = _train_main(["--model", "resnet8", "--run-dir", tmp_path / "run"] + flags, capsys)
        assert rc == 2 and says in err[-1], err
        assert f"needs at least {need / (1 << 30):.3g} GiB, more than this machine's" in err[-1], err
        assert checksums(tmp_path) == before
    if total is None or total >= cases[0][1]:
        pytest.skip("the machine's memory is unknown or larger than the estimates")


def test_iterations_given_beat_the_presets_epochs(tmp_path, capsys):
    """The digits preset counts 30 epochs; --iterations 3 of 2 steps an epoch trains 2 epochs
    (the last one whole). Both explicitly (Python API) is one line, as on the command line."""
    from keras_resnet import data as kdata
    from keras_resnet import training as kt

    digits = kdata.get_dataset("digits")
    cfg = kt.TrainConfig(iterations=3).resolved(digits)
    assert (cfg.epochs, cfg.iterations) == (None, 3)
    cfg = kt.TrainConfig(preset="cifar", epochs=2).resolved(digits)  # the cifar preset counts iterations
    assert (cfg.epochs, cfg.iterations) == (2, None)
    with pytest.raises(ValueError, match=r"^epochs=2 and iterations=3 both set the length of training; give one of them$"):
        kt.TrainConfig(epochs=2, iterations=3).resolved(digits)
    run_dir = tmp_path / "run"
    rc, err = _train_main(["--model", "resnet8", "--iterations", "3", "--steps-per-epoch", "2",
                           "--batch-size", "8", "--run-dir", run_dir, "--no-plot", "--no-tensorboard",
                           "--quiet"], capsys)
    assert rc == 0, err
    with open(run_dir / "run.json") as f:
        run = json.load(f)
    assert run["epochs_finished"] == 2 and run["config"]["epochs"] == 2 and run["config"]["iterations"] == 3
    with open(run_dir / "metrics.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 2


# --- image folders: hidden folders said, one class refused -----------------------------------

def test_hidden_class_folders_are_said_and_a_single_class_is_refused(tmp_path, capsys):
    import shutil

    from keras_resnet.data import DataError, get_dataset, make_tfrecords_main, sample_photo_folder

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=3, size=16)
    shutil.copytree(photos / "flower", photos / ".flower_backup")
    said = []
    ds = get_dataset("folder", data_dir=str(photos), image_size=16, progress=said.append)
    assert ds.class_names == ["china", "flower"]
    assert [m for m in said if "left out 1 hidden folder" in m and ".flower_backup" in m
            and "is not a class" in m], said
    capsys.readouterr()
    assert make_tfrecords_main([str(photos), str(tmp_path / "records"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"left out 1 hidden folder {photos / '.flower_backup'}" in out, out
    # Only one class left visible: refused, naming the hidden folders, by every command.
    shutil.rmtree(tmp_path / "records")
    os.rename(photos / "flower", photos / ".flower")
    with pytest.raises(DataError) as e:
        get_dataset("folder", data_dir=str(photos), image_size=16)
    assert str(e.value).startswith(f"{photos} has 1 class folder (china); a classifier needs at least 2 classes")
    assert str(photos / ".flower") in str(e.value) and "\n" not in str(e.value)
    before = checksums(tmp_path)
    code, err = _make_tfrecords([photos, tmp_path / "records"], capsys)
    assert code == 2 and len(err) == 1 and "has 1 class folder (china)" in err[0], err
    rc, err = _train_main(["--model", "resnet8", "--dataset", "folder", "--data-dir", photos, "--image-size",
                           "16", "--epochs", "1", "--run-dir", tmp_path / "run"], capsys)
    assert rc == 2 and "has 1 class folder (china)" in err[-1], err
    assert checksums(tmp_path) == before


# --- an image deleted while training runs ----------------------------------------------------

def test_an_image_deleted_after_listing_is_one_line_naming_it_or_skipped(tmp_path):
    import tensorflow as tf

    from keras_resnet.data import DataError, get_dataset, make_dataset, sample_photo_folder, \
        unreadable_image_error

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=4, size=16)
    for on_corrupt in ("fail", "skip"):
        ds = get_dataset("folder", data_dir=str(photos), image_size=16, on_corrupt=on_corrupt)
        gone = ds.files("train")[2][0]
        os.rename(gone, tmp_path / "aside.jpg")  # after the listing, as a user deleting it mid-run
        try:
            seen = 0
            try:
                for x, _ in make_dataset(ds, "train", batch_size=2, seed=0):
                    seen += int(x.shape[0])
            except tf.errors.OpError as e:
                assert on_corrupt == "fail"
                err = unreadable_image_error(e, ds, "train", seed=0)
                assert isinstance(err, DataError)
                assert str(err).startswith(f"{gone} no longer exists; it was listed"), str(err)
                assert "\n" not in str(err) and "--on-corrupt skip" in str(err)
            else:
                assert on_corrupt == "skip"
                # the epoch's batches are filled from the next pass over the files
                assert ds.unreadable == [gone] and seen == 2 * (ds.sizes["train"] // 2)
        finally:
            os.rename(tmp_path / "aside.jpg", gone)


def test_training_stops_in_one_line_when_its_images_are_deleted_mid_run(tmp_path):
    """Every training image deleted after epoch 1 of 20 (the input pipeline's read-ahead
    cannot hold the 19 epochs left, and they cost nothing: the run stops at the first file
    it misses): one line naming one of them, not a TensorFlow traceback."""
    from keras_resnet import training as kt
    from keras_resnet.data import DataError, get_dataset, sample_photo_folder

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=8, size=16)
    train_files = [p for p, _ in get_dataset("folder", data_dir=str(photos)).files("train")]

    def delete_all(epoch, model):
        if epoch == 1:
            for p in train_files:
                if os.path.exists(p):
                    os.remove(p)

    cfg = kt.TrainConfig(dataset="folder", data_dir=str(photos), image_size=16, model="resnet8",
                         epochs=20, batch_size=4, run_dir=str(tmp_path / "run"), plot=False,
                         tensorboard=False, verbose=0)
    with pytest.raises(DataError) as e:
        kt.train(cfg, on_epoch_end=delete_all)
    message = str(e.value)
    assert "\n" not in message and any(message.startswith(f"{p} no longer exists") for p in train_files), message
    assert "rerunning resumes from" in message


# --- exports: the model decides what it outputs; one export per folder at a time ------------

def _export_main(argv, capsys):
    from keras_resnet.export.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


def test_an_export_follows_the_models_own_softmax_not_run_json(tiny_run, tmp_path, capsys):
    import keras

    from keras_resnet.data import apply_preprocessing
    from keras_resnet.export import ExportError, ExportSource, load_source

    run_dir = _copy_run(tiny_run, tmp_path)
    with open(run_dir / "run.json") as f:
        run = json.load(f)
    assert run["outputs"] == "probabilities"
    with open(run_dir / "run.json", "w") as f:
        json.dump(dict(run, outputs="logits"), f)
    before = checksums(tmp_path)
    rc, err = _export_main([run_dir, "--out", tmp_path / "out", "--formats", "onnx", "--quiet"], capsys)
    assert rc == 2 and len(err) == 1, err
    assert "outputs='logits' (from run.json) contradicts the model" in err[0], err
    assert "applies softmax, so it outputs probabilities" in err[0], err
    assert checksums(tmp_path) == before
    # Without the entry, the model decides: the exported logits' softmax is the model's own output.
    del run["outputs"]
    with open(run_dir / "run.json", "w") as f:
        json.dump(run, f)
    source = load_source(str(run_dir))
    assert source.outputs == "probabilities"
    x = source.sample_input(4)
    probabilities = np.asarray(keras.saving.load_model(run_dir / "best.keras")(
        np.asarray(apply_preprocessing(x, source.preprocessing), "float32")))
    logits = source.keras_logits(x).astype("float64")
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    np.testing.assert_allclose(softmax, probabilities, atol=1e-5)
    # A classifier without activation says logits: "probabilities" given for it is refused.
    linear = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ExportError, match=r"outputs='probabilities' contradicts the model .* has no "
                                          r"activation, so it outputs logits"):
        ExportSource(linear, outputs="probabilities")


_HOLDER = """
import sys
from keras_resnet.files import lock_directory
with lock_directory(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_export_into_a_folder_in_use_is_refused_and_touches_nothing(tiny_run, tmp_path, capsys):
    """A real second process holds the output folder's lock, as a running export does, with
    an export's marker and a temporary in the folder: the export is refused at once and
    leaves them alone. Once the holder is gone, the marker is an interrupted export's."""
    out = tmp_path / "out"
    (out / "onnx").mkdir(parents=True)
    (out / ".report_onnx.incomplete").write_text('{"note": "an export to this directory started", "pinned": {}}')
    (out / "onnx" / ".model_fp32.onnx.tmp-live").write_bytes(b"half an onnx file")
    argv, env = python_command([str(out)], env=train_env(), code=_HOLDER)
    holder = subprocess.Popen(argv, env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        before = checksums(tmp_path)
        rc, err = _export_main([tiny_run[0], "--out", out, "--formats", "onnx", "--onnx", "fp32",
                                "--latency-runs", "1", "--quiet"], capsys)
        assert rc == 2 and len(err) == 1, err
        assert err[0] == (f"error: {out} is in use by another export (it holds the folder's lock); "
                          "wait for it to finish, or choose another --out"), err
        assert checksums(tmp_path) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    rc, err = _export_main([tiny_run[0], "--out", out, "--formats", "onnx", "--onnx", "fp32",
                            "--latency-runs", "1", "--quiet"], capsys)
    assert rc == 0, err
    assert not (out / ".report_onnx.incomplete").exists() and (out / "report_onnx.json").exists()


# --- keras-resnet-convert: integer keys, quantized tensors, forged sizes ---------------------

@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
@pytest.mark.parametrize("how, says", [
    ("int key first", "key 0 (int) is not a parameter name"),
    ("int key last", "key 7 (int) is not a parameter name"),
    ("quantized", "key 'layer1.0.conv1.weight'"),
])
def test_convert_names_integer_keys_and_quantized_tensors(tmp_path, capsys, how, says):
    torch = pytest.importorskip("torch")
    from test_weights_cli import torchvision_state

    state = {k: torch.from_numpy(v) for k, v in torchvision_state(np.random.default_rng(0)).items()}
    if how == "int key first":
        state = {0: torch.zeros(3), **state}
    elif how == "int key last":
        state[7] = torch.zeros(3)
    else:
        key = "layer1.0.conv1.weight"
        state[key] = torch.quantize_per_tensor(state[key], 0.01, 0, torch.qint8)
    source = tmp_path / "resnet18.pt"
    torch.save(state, source)
    before = checksums(tmp_path)
    rc, err = _convert([source, tmp_path / "out.keras", "--input-shape", "32,32,3"], capsys)
    assert rc == 2 and len(err) == 1 and says in err[0], err
    assert checksums(tmp_path) == before


def _forged_pt(path, numel, legacy=False):
    """A torch.save file (its zip format, or with ``legacy`` the pickle format of torch < 1.6)
    whose one tensor's storage claims ``numel`` float32 elements while the file holds 64
    bytes of them."""
    import collections
    import io
    import pickle
    import struct
    import zipfile

    import torch

    storage = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is storage else None

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (storage, 0, (numel,), (1,), False, collections.OrderedDict()))

    if legacy:  # magic number, protocol, system info, the tensors, their storage keys, the data
        Pickler.persistent_id = lambda self, obj: (
            ("storage", torch.FloatStorage, "0", "cpu", numel, None) if obj is storage else None)
        with open(path, "wb") as f:
            for obj in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True,
                                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                pickle.dump(obj, f, protocol=2)
            Pickler(f, protocol=2).dump({"conv1.weight": Tensor()})
            pickle.dump(["0"], f, protocol=2)
            f.write(struct.pack("<q", 16) + bytes(64))
        return
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"conv1.weight": Tensor()})
    with zipfile.ZipFile(path, "w") as z:  # stored, not compressed, as torch.save writes
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", bytes(64))
        z.writestr("archive/version", "3\n")


def test_convert_refuses_files_whose_tensors_claim_terabytes_or_more_than_they_hold(tmp_path, capsys):
    import struct
    import time

    torch = pytest.importorskip("torch")
    # The forgeries are files torch.load reads when their claim is true (16 elements, 64 bytes).
    for legacy in (False, True):
        _forged_pt(tmp_path / "honest.pt", 16, legacy)
        assert torch.load(tmp_path / "honest.pt", weights_only=True)["conv1.weight"].shape == (16,)
        (tmp_path / "honest.pt").unlink()
    # The legacy format's loader allocates what a storage claims before it reads it.
    for prefix, legacy in (("", False), ("legacy-", True)):
        _forged_pt(tmp_path / f"{prefix}tebibytes.pt", 1 << 40, legacy)
        _forged_pt(tmp_path / f"{prefix}gigabyte.pt", 1 << 28, legacy)
    header = json.dumps({"conv1.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20],
                                          "data_offsets": [0, 16]}}).encode()
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    before = checksums(tmp_path)
    for name, says in [
        ("tebibytes.pt", "storage '0' (FloatStorage, 1,099,511,627,776 elements) claims 4.1e+03 GiB; at most 4 GiB"),
        ("gigabyte.pt", "its tensors claim 1,073,741,824 bytes but the file holds"),
        ("legacy-tebibytes.pt", "storage '0' (FloatStorage, 1,099,511,627,776 elements) claims 4.1e+03 GiB; at most 4 GiB"),
        ("legacy-gigabyte.pt", "its tensors claim 1,073,741,824 bytes but the file holds"),
        ("huge.safetensors", "key 'conv1.weight' of shape [1048576, 1048576] claims 4.1e+03 GiB; at most 4 GiB"),
    ]:
        start = time.perf_counter()
        rc, err = _convert([tmp_path / name, tmp_path / "out.keras"], capsys)
        assert rc == 2 and len(err) == 1 and says in err[0] and name in err[0], err
        assert time.perf_counter() - start < 20
    assert checksums(tmp_path) == before
