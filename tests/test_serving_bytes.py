"""No train/serve skew: the SavedModel's JPEG signature (``serving_bytes``) applies exactly
the evaluation transform of the run (aspect-preserving resize and 87.5% centre crop for a
folder run), so real JPEGs of several aspect ratios get the predictions the evaluation
pipeline gives them."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import data as kdata
from keras_resnet.train import main


def _jpeg_folder(root, classes=2, seed=0):
    """``root/<class>/<i>.jpg``: real JPEG files (PIL) of several aspect ratios."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = [(20, 40), (40, 20), (24, 24), (30, 45), (45, 27), (22, 33)]  # (h, w)
    for c in range(classes):
        os.makedirs(root / f"class{c}", exist_ok=True)
        for i in range(10):
            h, w = sizes[(i + c) % len(sizes)]
            y, x = np.mgrid[0:h, 0:w]
            img = np.stack([(x * (7 + c * 5) + y * 3) % 256, (y * 11 + i * 20) % 256,
                            rng.integers(0, 256, (h, w))], -1).astype("uint8")
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.jpg", quality=90)
    return root


@pytest.mark.slow  # a training run, then an export whose checks start Python processes
def test_serving_bytes_does_the_evaluation_transform(tmp_path, capsys):
    from keras_resnet.export import export_all

    photos = _jpeg_folder(tmp_path / "photos")
    run_dir = tmp_path / "run"
    code = main(["--dataset", "folder", "--data-dir", str(photos), "--image-size", "16",
                 "--model", "resnet8", "--epochs", "1", "--batch-size", "4", "--quiet",
                 "--no-plot", "--no-tensorboard", "--run-dir", str(run_dir)], prog="train.py")
    assert code == 0, capsys.readouterr().err[-3000:]
    report = export_all(str(run_dir), str(tmp_path / "exports"), formats="savedmodel",
                        latency_runs=1, progress=None)
    assert report["passed"]
    (entry,) = [a for a in report["artifacts"] if a["format"] == "savedmodel"]
    path = entry["path"]
    with open(os.path.join(path, "assets.extra", "signature.json")) as f:
        doc = json.load(f)
    assert doc["eval_transform"]["crop"] == "centre 16x16"
    assert doc["eval_transform"]["crop_fraction"] == 0.875

    # The evaluation pipeline's pixels of the test split, and the same files' bytes.
    dataset = kdata.get_dataset("folder", data_dir=str(photos), image_size=16)
    pixels, labels = kdata.test_arrays(dataset)
    encoded = [bytes(x.numpy()) for x, _ in dataset.examples("test")]
    shapes = {tuple(tf.image.extract_jpeg_shape(b).numpy()[:2]) for b in encoded}
    assert len({round(h / w, 2) for h, w in shapes}) >= 3  # several aspect ratios
    loaded = tf.saved_model.load(path)
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))["logits"]
    from_pixels = loaded.signatures["serving_default"](images=tf.constant(pixels))["logits"]
    from_bytes, from_pixels = from_bytes.numpy(), from_pixels.numpy()
    import keras

    keras_probs = np.asarray(keras.saving.load_model(run_dir / "best.keras")(pixels))
    # Zero top-1 differences with the evaluation pipeline, logits within float32 rounding.
    np.testing.assert_array_equal(np.argmax(from_bytes, -1), np.argmax(keras_probs, -1))
    scale = float(np.max(np.abs(from_pixels)))
    assert float(np.max(np.abs(from_bytes - from_pixels))) <= 1e-5 * max(scale, 1.0)
