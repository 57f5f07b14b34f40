"""Fault injection at the size of the test suite (``tests/faults.py --full`` sweeps every
point): a training run killed at chosen file operations and rerun, a full disk, a read-only
or unwritable run directory, and truncated inputs. After each, the run directory must be
resumable and what it holds must agree with itself and with an uninterrupted run."""

import json
import os
import shutil

import pytest

import faults
from shared_fixture import shared_once

# The tests that run commands under strace (the recording and everything that uses it) are
# slow; the others are quick unit-level checks of the same promises.
needs_strace = pytest.mark.skipif(not faults.have_strace(),
                                  reason="needs strace (apt-get install strace) to inject kills")


def with_recording(test):
    return pytest.mark.slow(needs_strace(test))


def _record(directory):
    faults.warm_up(str(directory))
    reference, ops = faults.record(str(directory))
    with open(os.path.join(directory, "ops.json"), "w") as f:
        json.dump(dict(reference=reference, ops=ops), f)


@pytest.fixture(scope="session")
def recording(tmp_path_factory):
    """One uninterrupted run under strace: its run directory (the reference) and its file
    operations. Built once per session across the pytest-xdist workers."""
    shared = shared_once(tmp_path_factory, "faults_recording", _record)
    with open(shared / "ops.json") as f:
        data = json.load(f)
    return str(shared), data["reference"], data["ops"]


def _last(ops, call, *targets):
    """The last operation of ``call`` (rename, openat, ...) on a path naming the first of
    ``targets`` that any operation names (the checkpoint's files are named by its format)."""
    for target in targets:
        found = [op for op in ops if op["call"].startswith(call) and target in op["what"]]
        if found:
            return found[-1]
    raise AssertionError(f"no {call} of {targets} among the recorded operations")


POINTS = {
    # a checkpoint's temporary half-written in the last epoch: resumed from the epoch before
    "checkpoint temporary, last epoch": ("openat", ".checkpoint", "ckpt", "checkpoint"),
    # the final run.json about to replace the "running" one
    "rename onto run.json, at the finish": ("rename", "run.json\")"),
    # the last epoch committed, last.keras not yet replaced
    "rename onto last.keras, last epoch": ("rename", "last.keras\")"),
}


@pytest.mark.parametrize("point", [
    # A kill at a checkpoint's own commit is tests/test_train_resume.py's; the full sweep
    # (tests/faults.py --full) kills at every operation, the checkpoint's temporaries too.
    "rename onto last.keras, last epoch",
])
@with_recording
def test_a_kill_at_a_file_operation_leaves_a_run_that_resumes_to_the_same_model(recording, point):
    workdir, reference, ops = recording
    op = _last(ops, *POINTS[point])
    result = faults.kill_point(op, ops.index(op), workdir, reference, ops=ops)
    assert result["killed"] == op["what"]
    assert result["problems"] == []


@with_recording
def test_the_recording_sees_every_kind_of_file_operation(recording):
    """What the sweep kills at: directory creation, temporaries of every output, renames."""
    _, _, ops = recording
    text = "\n".join(op["what"] for op in ops)
    assert 'mkdir("RUN"' in text
    for name in ("best.keras", "last.keras", "metrics.csv", "run.json", "curves.png"):
        assert f'"RUN/.{name}.tmp-*' in text and f'"RUN/{name}")' in text, name
    assert "checkpoint" in text


needs_mount = pytest.mark.skipif(not faults.can_mount(), reason="mounting a tmpfs needs root")


@with_recording
@needs_mount
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(recording):
    workdir, reference, _ = recording
    result = faults.disk_full("700k", workdir, reference)
    assert result.get("note") is None, "the run fitted in 700k; the disk never filled"
    assert result["problems"] == []


@with_recording
@needs_mount
def test_a_full_disk_leaves_no_model_of_an_uncommitted_epoch(recording):
    workdir, _, _ = recording
    with faults.tmpfs("700k") as where:
        run_dir = os.path.join(where, "run")
        r = faults.run(faults.train_command(run_dir), workdir)
        assert r.returncode == 2
        assert faults.uncommitted_models(run_dir) == []


@with_recording
def test_unwritable_run_directories_are_one_line(recording, tmp_path):
    """A run directory that is a file, inside a directory without write permission, or on a
    read-only filesystem: one line naming it, exit status 2."""
    workdir, reference, _ = recording
    results = [faults.run_dir_is_a_file(str(tmp_path))]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        results.append(faults.no_permission(str(tmp_path), reference))
    if faults.can_mount():
        results.append(faults.read_only(workdir, reference, resume=False))
    assert [r for r in results if r["problems"]] == []


@with_recording
def test_truncated_inputs_are_one_line_naming_the_file(recording):
    workdir, reference, _ = recording
    results = faults.corrupt_inputs(workdir, reference, full=False)
    assert len(results) == 4
    assert [(name, p) for name, p in results if p] == []


def _exit_and_last_line(main, argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_convert_names_a_file_that_is_not_a_keras_archive(tmp_path, capsys):
    from keras_resnet.weights import main

    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 truncated")
    rc, err = _exit_and_last_line(main, [str(bad), str(tmp_path / "out.keras")], capsys)
    assert rc == 2 and str(bad) in err and "not found" not in err.lower(), err


@with_recording
def test_export_into_an_unwritable_place_is_one_line(recording, tmp_path, capsys):
    from keras_resnet.export.cli import main

    _, reference, _ = recording
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    rc, err = _exit_and_last_line(main, [reference, "--out", str(blocker / "out"), "--formats",
                                         "savedmodel", "--quiet"], capsys)
    assert rc == 2 and str(blocker) in err, err


def test_an_empty_class_folder_is_refused_or_left_out_with_a_warning(tmp_path):
    from keras_resnet import data as kdata

    kdata.sample_photo_folder(str(tmp_path / "photos"), per_class=4, size=16)
    (tmp_path / "photos" / "zz_empty").mkdir()
    said = []
    try:
        ds = kdata.get_dataset("folder", data_dir=str(tmp_path / "photos"), image_size=16,
                               progress=said.append)
    except kdata.DataError as e:
        assert "zz_empty" in str(e)
        return
    assert "zz_empty" not in ds.class_names and any("zz_empty" in m for m in said), said


@with_recording
def test_an_export_killed_after_its_first_artifacts_reruns_to_a_complete_export(recording):
    """Killed as its ONNX file is renamed into place (SavedModel and TFLite already written),
    the same export command, rerun, replaces what the interrupted export wrote and completes:
    every artifact loads in its own runtime and gives best.keras's probabilities."""
    workdir, reference, _ = recording
    results = faults.export_sweep(workdir, reference, log=lambda _: None,
                                  select=lambda what: what.startswith("rename") and ".onnx" in what)
    assert len(results) == 1 and ".onnx" in results[0]["op"], results
    assert results[0]["problems"] == [], results


@with_recording
def test_a_truncated_tfrecord_shard_is_one_line_naming_it(recording):
    workdir, _, _ = recording
    cases = [case for case in faults._corrupt_data_cases(workdir) if "TFRecord" in case[0]]
    results = faults._run_all(cases, workdir)
    assert [name for name, _ in results] == ["truncated TFRecord shard"]
    assert [(name, p) for name, p in results if p] == []


def _checksums(folder):
    from test_safety import checksums

    return checksums(folder)


@needs_mount
def test_make_tfrecords_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from keras_resnet.data import make_tfrecords_main, sample_photo_folder

    photos = tmp_path / "photos"
    sample_photo_folder(str(photos), per_class=20, size=64)  # ~150 KB of JPEGs
    before = _checksums(tmp_path)
    with faults.tmpfs("64k") as where:
        out = os.path.join(where, "records")
        capsys.readouterr()
        code = make_tfrecords_main([str(photos), out, "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0] == (f"keras-resnet-make-tfrecords: error: cannot write {out}: no space left on "
                          "the device; free some space and rerun"), err
        assert os.listdir(where) == []  # no records folder, no .records.partial-*
    assert _checksums(tmp_path) == before


def _experiment(argv, capsys):
    from keras_resnet.experiments import main

    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.slow
@needs_mount
def test_experiment_on_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    """The disk full from the start (the first run's checkpoint), and full when a finished
    experiment is rerun on a disk filled since (it rewrites its runs' files derived from their
    checkpoints, then its table and figure; the old code's traceback came from a
    FileWriteError there): one line, exit status 2, no temporary, nothing else changed."""
    monkeypatch.chdir(tmp_path)
    before = _checksums(tmp_path)
    argv = ["degradation", "--depths", "8,14", "--iterations", "2", "--batch-size", "8", "--quiet"]
    with faults.tmpfs("128k") as where:
        rc, err = _experiment(argv + ["--out", os.path.join(where, "exp")], capsys)
        assert rc == 2 and "Traceback" not in "\n".join(err), err
        assert err[-1].startswith("keras-resnet-experiment: error: ") and "no space left on the device" in err[-1], err
        assert faults.temporaries(where) == []
    with faults.tmpfs("64m") as where:
        out = os.path.join(where, "exp")
        rc, err = _experiment(argv + ["--out", out], capsys)
        assert rc == 0, err
        os.remove(os.path.join(out, "degradation.csv"))
        finished = _checksums(where)
        with open(os.path.join(where, "filler"), "wb") as f:  # the rest of the disk
            try:
                while True:
                    f.write(bytes(1 << 20))
                    f.flush()
            except OSError:
                pass
        rc, err = _experiment(argv + ["--out", out], capsys)
        assert rc == 2 and "Traceback" not in "\n".join(err), err
        assert err[-1].startswith("keras-resnet-experiment: error: ") and "no space left on the device" in err[-1], err
        assert faults.temporaries(where) == []
        os.remove(os.path.join(where, "filler"))
        assert _checksums(where) == finished
    assert _checksums(tmp_path) == before
