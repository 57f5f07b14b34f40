"""The run directory's one owner, keras_resnet.rundir: run.json's field types and defaults,
a run directory or a .keras path resolved to its model file, the lock, and the commands
(evaluation, export, --init-from, train.py --export) that go through it."""

import json
import os
import zipfile

import pytest

from keras_resnet import rundir


def _fake_keras(path):
    """A zip archive named .keras (what the resolver checks; nothing here loads it)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    return path


def _run_dir(tmp_path, doc, models=("best.keras",)):
    run = tmp_path / "run"
    run.mkdir()
    for name in models:
        _fake_keras(run / name)
    (run / "run.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return run


BAD_FIELDS = [
    ([], None, "a JSON object"),
    ({"dataset": "digits", "dataset_kwargs": [1, 2]}, "dataset_kwargs", "an object"),
    ({"dataset": "digits", "class_names": 5}, "class_names", "a list of strings or null"),
    ({"input_shape": "8x8"}, "input_shape", "a list of integers or nulls"),
    ({"num_classes": 2.5}, "num_classes", "an integer"),
    ({"test_accuracy": "high"}, "test_accuracy", "a number or null"),
    ({"config": [], "status": "finished"}, "config", "an object"),
    ({"outputs": True}, "outputs", "a string"),
]


@pytest.mark.parametrize("doc, field, expected", BAD_FIELDS)
def test_a_wrong_typed_run_json_field_is_named_in_one_line(tmp_path, doc, field, expected):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(rundir.RunDirError) as info:
        rundir.read_run_json(str(path))
    message = str(info.value)
    assert str(path) in message and f"expected {expected}" in message and "\n" not in message
    if field:
        assert f"field {field!r}" in message


def test_run_json_defaults_and_the_dataset_arguments_of_older_runs(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"dataset": "synthetic", "input_shape": [16, 16, 3], "num_classes": 4,
                                "class_names": None, "test_accuracy": None}))
    run = rundir.read_run_json(str(path))
    # Fields an older run.json lacks read as every run writes them.
    assert run["outputs"] == "probabilities" and run["dataset_kwargs"] == {} and run["config"] == {}
    assert rundir.dataset_kwargs(run) == {"image_size": 16, "num_classes": 4}
    (tmp_path / "broken.json").write_text('{"dataset": ')
    with pytest.raises(rundir.RunDirError, match="could not read .*broken.json"):
        rundir.read_run_json(str(tmp_path / "broken.json"))


def test_a_run_directory_or_a_keras_file_resolves_to_one_model_file(tmp_path):
    run = _run_dir(tmp_path, {"dataset": "digits"}, models=("best.keras", "last.keras"))
    # Evaluation and export take the chosen model, --init-from the finished one.
    assert rundir.model_file(str(run)) == str(run / "best.keras")
    assert rundir.model_file(run, prefer=rundir.LAST) == str(run / "last.keras")
    os.remove(run / "last.keras")
    assert rundir.model_file(str(run), prefer=rundir.LAST) == str(run / "best.keras")
    path, info = rundir.resolve(str(run / "best.keras"))
    assert path == str(run / "best.keras") and info["dataset"] == "digits"
    alone = _fake_keras(tmp_path / "alone.keras")
    assert rundir.resolve(str(alone)) == (str(alone), None)

    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not a zip")
    cases = [(tmp_path / "empty", "is a directory without best.keras or last.keras"),
             (tmp_path / "missing.keras", "does not exist"),
             (tmp_path / "weights.h5", "not a Keras .keras file"),
             (tmp_path / "broken.keras", "is not a valid .keras file"),
             (3, "expected a run directory or a .keras file path")]
    for path, message in cases:
        with pytest.raises(rundir.RunDirError) as info:
            rundir.model_file(path if isinstance(path, int) else str(path))
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_the_lock_is_held_by_one_run_at_a_time(tmp_path):
    class Busy(RuntimeError):
        pass

    first, second = rundir.RunLock(), rundir.RunLock(Busy)
    first.acquire(str(tmp_path))
    with pytest.raises(Busy, match="is in use by another training run"):
        second.acquire(str(tmp_path))
    first.release()
    second.acquire(str(tmp_path))  # free once the first is released
    second.release()


def test_commands_refuse_a_wrong_typed_run_json_in_one_line(tmp_path, capsys):
    """--evaluate and the export command read run.json through the owner: exit 2, one line
    naming the file and the field, before any model is loaded."""
    from keras_resnet.export.cli import main as export_main
    from keras_resnet.train import main as train_main

    run = _run_dir(tmp_path, {"dataset": "digits", "dataset_kwargs": [1, 2]})
    assert train_main(["--evaluate", str(run)], prog="train.py") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train.py: error: ") and "run.json" in err[0]
    assert "field 'dataset_kwargs'" in err[0] and "expected an object" in err[0]
    assert export_main([str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.json" in err[0] and "field 'dataset_kwargs'" in err[0]
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_train_export_calls_the_export_library_and_says_its_errors_in_one_line(tmp_path, capsys):
    """train.py --export DIR exports the finished run through the export library: an existing
    report is refused (exit 2, one line, before any export is written)."""
    from keras_resnet.train import main as train_main

    out = tmp_path / "exports"
    out.mkdir()
    (out / "report.json").write_text("{}")
    code = train_main(["--model", "resnet8", "--dataset", "synthetic", "--image-size", "8",
                       "--num-classes", "3", "--epochs", "1", "--steps-per-epoch", "1",
                       "--batch-size", "4", "--no-tensorboard", "--no-plot", "--quiet",
                       "--run-dir", str(tmp_path / "run"), "--export", str(out)], prog="train.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error: ") and "report.json" in err[0], err
    assert sorted(os.listdir(out)) == ["report.json"] and (out / "report.json").read_text() == "{}"
    assert (tmp_path / "run" / "last.keras").is_file()  # the run itself finished
