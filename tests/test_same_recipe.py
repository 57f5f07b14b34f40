"""Same images, same behaviour: a TFRecord run (``keras-resnet-make-tfrecords`` of a folder)
and a run on the folder itself choose the same small-data batch size and learning rate,
and a bare ``.keras`` file is exported reading its dataset at the model's own size."""

import json

import numpy as np

from keras_resnet import data as kdata
from keras_resnet.train import main

ARGS = ["--model", "resnet8", "--image-size", "16", "--epochs", "1", "--quiet", "--no-plot",
        "--no-tensorboard"]


def test_tfrecord_and_folder_runs_of_the_same_images_get_the_same_recipe(tmp_path, capsys):
    photos = kdata.sample_photo_folder(str(tmp_path / "photos"), per_class=40, size=16)
    written = kdata.write_tfrecords(photos, str(tmp_path / "records"))
    runs = {}
    for name, flags in (("folder", ["--dataset", "folder", "--data-dir", photos]),
                        ("tfrecord", ["--dataset", "tfrecord", "--data-dir",
                                      str(tmp_path / "records")])):
        code = main([*ARGS, *flags, "--run-dir", str(tmp_path / name)], prog="train.py")
        assert code == 0, capsys.readouterr().err[-3000:]
        with open(tmp_path / name / "run.json") as f:
            runs[name] = json.load(f)
    folder, records = runs["folder"], runs["tfrecord"]
    assert written["train"] == 64  # 80% of 80 images
    # The small-data recipe (64 images: batch 8, lr 0.1 x 8 / 256) in both.
    for key in ("global_batch_size", "effective_lr", "steps_per_epoch"):
        assert folder[key] == records[key], key
    assert folder["global_batch_size"] == 8 and folder["steps_per_epoch"] == 8
    assert np.isclose(folder["effective_lr"], 0.1 * 8 / 256)
    for key in ("batch_size", "lr", "preset", "augment", "schedule", "weight_decay"):
        assert folder["config"][key] == records["config"][key], key


def test_a_bare_keras_file_is_exported_at_its_own_input_size(tmp_path, capsys):
    """No run.json: the folder is read at the model's input size (64), not a default."""
    import keras_resnet as kr
    from keras_resnet.export.cli import main as export_main

    photos = kdata.sample_photo_folder(str(tmp_path / "photos"), per_class=12, size=80)
    model = kr.ResNet([1, 1], [8, 16], stem="cifar", input_shape=(64, 64, 3), classes=2,
                      include_preprocessing=True, name="bare")
    model.save(tmp_path / "bare.keras")
    code = export_main([str(tmp_path / "bare.keras"), "--out", str(tmp_path / "out"),
                        "--formats", "onnx", "--onnx", "int8", "--dataset", "folder",
                        "--data-dir", photos, "--num-samples", "8", "--latency-runs", "1",
                        "--max-accuracy-drop", "1", "--min-agreement", "0", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    with open(tmp_path / "out" / "report_onnx.json") as f:
        report = json.load(f)
    assert report["source"]["input_shape"] == [64, 64, 3]
