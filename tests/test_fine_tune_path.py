"""The whole fine-tuning path a user takes, on a small JPEG folder with 3 classes: convert a
random-weight torchvision-layout ResNet-18 ``.pth``, fine-tune it with ``train.py
--init-from`` (1 epoch with the backbone frozen, then 1 more), export the float formats,
and check that the exports fed 0..255 pixels -- and the SavedModel fed JPEG bytes -- agree
with the Keras model on the evaluation pipeline's images."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import torch

from keras_resnet import data as kdata
from keras_resnet.train import main as train_main
from keras_resnet.weights import main as convert_main
from test_serving_bytes import _jpeg_folder
from test_weights_torch import reference


@pytest.mark.slow  # ~2 min: ResNet-18 trained two short epochs and exported three ways
def test_convert_fine_tune_export_agree(tmp_path, capsys):
    torch.save(reference(18).state_dict(), tmp_path / "r18.pth")
    assert convert_main([str(tmp_path / "r18.pth"), str(tmp_path / "r18.keras"), "--quiet"]) == 0
    photos = _jpeg_folder(tmp_path / "photos", classes=3)
    run_dir = tmp_path / "run"
    code = train_main(["--dataset", "folder", "--data-dir", str(photos), "--model", "resnet18",
                       "--image-size", "32", "--init-from", str(tmp_path / "r18.keras"),
                       "--freeze-epochs", "1", "--epochs", "2", "--batch-size", "4",
                       "--lr", "0.01", "--run-dir", str(run_dir), "--no-plot",
                       "--no-tensorboard"], prog="train.py")
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "backbone of resnet18 kept (its 10-class head dropped), new 3-class head" in out

    from keras_resnet.export import export_all

    report = export_all(str(run_dir), str(tmp_path / "exports"), tflite_precisions="fp32",
                        onnx_precisions="fp32", openvino_precisions="fp32", latency_runs=1,
                        progress=None)
    assert report["passed"], report.get("failures")

    import keras
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    dataset = kdata.get_dataset("folder", data_dir=str(photos), image_size=32)
    pixels, _ = kdata.test_arrays(dataset)  # the evaluation pipeline's pixels 0..255
    encoded = [bytes(x.numpy()) for x, _ in dataset.examples("test")]
    probs = np.asarray(keras.saving.load_model(run_dir / "best.keras")(pixels))
    want = np.argmax(probs, -1)
    paths = {a["format"] + "_" + a["precision"]: a["path"] for a in report["artifacts"]}
    saved = tf.saved_model.load(paths["savedmodel_fp32"])
    outputs = {
        "savedmodel": saved.signatures["serving_default"](images=tf.constant(pixels))["probabilities"].numpy(),
        "savedmodel bytes": saved.signatures["serving_bytes"](
            image_bytes=tf.constant(encoded))["probabilities"].numpy(),
        "onnx": ort.InferenceSession(paths["onnx_fp32"], providers=["CPUExecutionProvider"]).run(
            ["probabilities"], {"images": pixels})[0],
    }
    runner = Interpreter(model_path=paths["tflite_fp32"]).get_signature_runner("serving_default")
    outputs["tflite"] = np.concatenate([runner(images=pixels[i:i + 1])["probabilities"]
                                        for i in range(len(pixels))])
    # The ONNX file says which transform its images need (the run's evaluation transform).
    meta = ort.InferenceSession(paths["onnx_fp32"], providers=["CPUExecutionProvider"]
                                ).get_modelmeta().custom_metadata_map
    assert json.loads(meta["keras_resnet.eval_transform"])["crop"] == "centre 32x32"
    for name, got in outputs.items():
        np.testing.assert_array_equal(np.argmax(got, -1), want, err_msg=name)
        np.testing.assert_allclose(got, probs, atol=1e-4, err_msg=name)
    with open(run_dir / "run.json") as f:
        info = json.load(f)
    assert info["init_from"]["fine_tune"] and info["epochs_finished"] == 2
