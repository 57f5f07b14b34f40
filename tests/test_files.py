"""keras_resnet.files: the one atomic write every output goes through."""

import errno
import os

import pytest

from keras_resnet import files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.FileWriteError) as info:
        with files.atomic_path(target) as tmp:
            fail(tmp)
    assert str(info.value) == f"cannot write {target}: no space left on the device; free some space and rerun"
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["run.json"]


def test_a_copy_is_atomic_too(tmp_path):
    source, target = tmp_path / "last.keras", tmp_path / "best.keras"
    source.write_bytes(bytes(range(256)) * 64)
    target.write_bytes(b"old")
    files.copy_file(source, target)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(files.FileWriteError) as info:  # a source that vanished
        files.copy_file(tmp_path / "gone.keras", target)
    assert str(tmp_path / "best.keras") in str(info.value)
    assert target.read_bytes() == source.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["best.keras", "last.keras"]


def test_a_directory_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "model"
    (target / "old").mkdir(parents=True)
    with files.atomic_path(target, directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "new"))
    assert os.listdir(target) == ["new"]
    assert os.listdir(tmp_path) == ["model"]


def test_files_get_a_normal_mode_and_the_suffix_writers_need(tmp_path):
    with files.atomic_path(tmp_path / "m.keras", suffix=".keras") as tmp:
        assert tmp.endswith(".keras") and files.is_temporary(os.path.basename(tmp))
        open(tmp, "w").close()
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "m.keras").st_mode & 0o777 == 0o666 & ~mask


def test_stale_temporaries_are_recognised_by_name_and_removed(tmp_path):
    (tmp_path / ".best.keras.tmp-abc.keras").write_text("x")
    (tmp_path / ".saved_model.tmp-xyz").mkdir()
    (tmp_path / "best.keras").write_text("keep")
    (tmp_path / ".hidden").write_text("keep")
    removed = files.remove_stale_temporaries(tmp_path)
    assert removed == [".best.keras.tmp-abc.keras", ".saved_model.tmp-xyz"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "best.keras"]


def test_write_text_into_a_file_that_is_not_a_directory_is_one_line(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(files.FileWriteError, match=r"^cannot write .*f/run.json: a path component is a file"):
        files.write_text(tmp_path / "f" / "run.json", "{}")


def test_a_killed_writes_temporaries_go_with_the_next_write_of_the_same_path(tmp_path):
    """A kill leaves ``.<name>.tmp-*`` (a file, or a directory a writer was filling) where
    no caller sweeps (an export's per-format folders): the next write of that path removes
    it, and leaves other names' temporaries alone."""
    (tmp_path / ".1.tmp-k1ll3d").mkdir()
    (tmp_path / ".1.tmp-k1ll3d" / "variables").mkdir()
    (tmp_path / ".m.onnx.tmp-abc").write_bytes(b"half")
    with files.atomic_path(tmp_path / "1", directory=True) as tmp:
        os.makedirs(os.path.join(tmp, "variables"))
    assert sorted(os.listdir(tmp_path)) == [".m.onnx.tmp-abc", "1"]
    files.write_bytes(tmp_path / "m.onnx", b"whole")
    assert sorted(os.listdir(tmp_path)) == ["1", "m.onnx"]


def _killed_between_the_renames(parent):
    """What a kill between atomic_path's two renames leaves when it replaces the folder
    ``1``: the old copy set aside, the complete new one under its temporary name, no ``1``."""
    (parent / ".1.tmp-old-a1b2").mkdir()
    (parent / ".1.tmp-old-a1b2" / "saved_model.pb").write_text("old")
    (parent / ".1.tmp-n3w").mkdir()
    (parent / ".1.tmp-n3w" / "saved_model.pb").write_text("new")


@pytest.mark.parametrize("recover", ["sweep", "next write fails"])
def test_a_kill_between_the_renames_of_a_folder_replacement_keeps_the_old_copy(tmp_path, recover):
    _killed_between_the_renames(tmp_path)
    if recover == "sweep":
        files.remove_stale_temporaries(tmp_path)
    else:
        with pytest.raises(KeyError):
            with files.atomic_path(tmp_path / "1", directory=True):
                raise KeyError("the writer failed")
    assert os.listdir(tmp_path) == ["1"]
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "old"


def test_the_umask_is_read_without_being_changed(tmp_path):
    old = os.umask(0o027)
    try:
        assert files._umask() == 0o027
        assert os.umask(0o027) == 0o027  # still set: reading it did not change it
    finally:
        os.umask(old)


def test_discard_removes_a_tree_in_one_step_and_a_kill_leaves_only_a_temporary(tmp_path):
    tree = tmp_path / "checkpoint"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data").write_text("x")
    files.discard(tree)
    assert os.listdir(tmp_path) == []
    files.discard(tree)  # absent: nothing happens
    # what a kill during the removal leaves: the tree under a temporary name, swept later
    (tmp_path / ".checkpoint.tmp-discard-k1" / "checkpoint").mkdir(parents=True)
    assert files.remove_stale_temporaries(tmp_path) == [".checkpoint.tmp-discard-k1"]
    assert os.listdir(tmp_path) == []
