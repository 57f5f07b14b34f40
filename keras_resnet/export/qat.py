"""Quantization-aware training (tensorflow-model-optimization) to an int8 TFLite model.

tensorflow-model-optimization (tfmot) works on tf_keras (legacy Keras 2) models only, so
QAT runs in its own Python process with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is
imported. :func:`qat_tflite` (called in your Keras 3 process) writes the architecture
(``ResNet.get_config()``), the weights by layer name and the training data to a temporary
folder and starts ``python -m keras_resnet.export.qat_tfkeras <folder>``, which holds all
the tf_keras/tfmot code; that process:

1. rebuilds the same architecture under tf_keras with a linear classifier (logits) and
   copies the weights over by layer name (names are the same under both Keras versions),
   checking that the rebuilt model's logits equal the Keras 3 model's;
2. annotates it for quantization (:class:`ZeroPadShortcutQuantizeConfig` for the option-A
   shortcut, tfmot's default 8-bit scheme for the built-in layers, which folds
   BatchNormalization into the convolutions) and fine-tunes it with fake quantization;
3. converts it, preprocessing and softmax included, to a full-integer TFLite model with a
   ``serving_default`` signature: ``images`` (pixels 0..255) -> ``logits``,
   ``probabilities``; builtin ops only.

Use under tf_keras in your own code::

    # TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported
    import tensorflow_model_optimization as tfmot
    from keras_resnet.export.qat import quantize_model
    qat_model = quantize_model(model)   # a tf_keras keras_resnet model
"""

import json
import os
import subprocess
import tempfile

import numpy as np

from .. import data
from ..isolated import python_command
from ..models import ResNet
from ..preprocessing import preprocessing_spec
from ._common import ExportError, say

# The tf_keras/tfmot side (keras_resnet.export.qat_tfkeras) is imported when one of these
# is first asked for: importing tensorflow_model_optimization is slow and needs the [qat] extra.
_TF_KERAS = ("ZeroPadShortcutQuantizeConfig", "init_ranges", "quantize_model", "quantize_scope")


def __getattr__(name):
    if name in _TF_KERAS:
        from . import qat_tfkeras

        return getattr(qat_tfkeras, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _without_model_preprocessing(config, preprocessing):
    """tfmot cannot quantize a Rescaling layer: a model built with include_preprocessing
    is rebuilt without it, and its scale/offset composed into the serving preprocessing
    (``pixels * s1 + o1``, then ``* s2 + o2``)."""
    if not config.get("include_preprocessing"):
        return config, preprocessing
    channels = len(preprocessing["scale"])
    inner, _ = preprocessing_spec(config["preprocessing"], channels)
    s1, o1 = np.asarray(preprocessing["scale"], "float64"), np.asarray(preprocessing["offset"], "float64")
    s2, o2 = np.asarray(inner["scale"], "float64"), np.asarray(inner["offset"], "float64")
    config = dict(config, include_preprocessing=False)
    return config, {"scale": list(s1 * s2), "offset": list(o1 * s2 + o2)}


# Training images QAT reads from a file dataset (folder, TFRecord, TFDS) when not given
# train_arrays: a few fine-tuning epochs at a tiny learning rate need a sample, not the set.
QAT_FILE_SAMPLES = 2048


def qat_tflite(source, out_path, calibration_images, int8_io="int8", epochs=2, batch_size=64,
               learning_rate=1e-5, freeze_bn=True, train_arrays=None, seed=0, timeout=3600,
               progress=print):
    """Fine-tune ``source``'s model with fake quantization for ``epochs`` epochs, then write
    an int8 TFLite model to ``out_path`` (see the module docstring).

    Args:
        source: an :class:`~keras_resnet.export.ExportSource` whose model is a keras_resnet
            ``ResNet``.
        calibration_images: pixels for the converter (input/output ranges).
        int8_io: ``"int8"``, ``"uint8"`` or ``"float32"`` model inputs and outputs.
        train_arrays: ``(pixels, labels)`` to fine-tune on (default: the source dataset's
            training split; for file datasets a seeded draw of ``QAT_FILE_SAMPLES`` images).
    """
    model = source.model
    if not isinstance(model, ResNet):
        raise ExportError(
            f"quantization-aware training needs a keras_resnet ResNet model; got {type(model).__name__}"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ExportError(f"epochs={epochs!r} is not supported; expected a positive integer")
    if train_arrays is None:
        if source.dataset is None:
            raise ExportError("quantization-aware training needs training data: pass train_arrays "
                              "or a source with a dataset")
        dataset = data.get_dataset(source.dataset, **source.dataset_kwargs)
        if dataset.arrays_in_memory:
            train_arrays = dataset.arrays("train")
        else:  # files: a seeded draw of at most QAT_FILE_SAMPLES training images
            say(progress, f"[qat] reading up to {QAT_FILE_SAMPLES} training images of {source.dataset!r}")
            train_arrays = data.train_sample(dataset, QAT_FILE_SAMPLES, seed)
    x, y = train_arrays
    x = source.check_images(x, "QAT training data")
    y = np.asarray(y).reshape(-1).astype("int64")
    check = x[:32]
    with tempfile.TemporaryDirectory() as tmp:
        config, preprocessing = _without_model_preprocessing(model.get_config(), source.preprocessing)
        job = {
            "config": config,
            "preprocessing": preprocessing,
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "seed": seed, "int8_io": int8_io, "freeze_bn": bool(freeze_bn),
        }
        with open(os.path.join(tmp, "job.json"), "w") as f:
            json.dump(job, f)
        weights = {}
        for layer in model.layers:
            for i, w in enumerate(layer.get_weights()):
                weights[f"{layer.name}/{i}"] = np.asarray(w, "float32")
        np.savez(os.path.join(tmp, "weights.npz"), **weights)
        np.savez(os.path.join(tmp, "data.npz"), x=x, y=y, calibration=np.asarray(calibration_images, "float32"),
                 check=check, check_logits=source.keras_logits(check))
        env = dict(os.environ)
        env["TF_USE_LEGACY_KERAS"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        say(progress, f"[qat] fine-tuning {epochs} epoch(s) with fake quantization (tf_keras process)")
        # isolated: nothing in the working directory (a statistics.py, a sitecustomize.py) runs
        argv, env = python_command([tmp], env=env, module="keras_resnet.export.qat_tfkeras")
        proc = subprocess.Popen(argv, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = []
        try:
            for line in proc.stdout:
                line = line.rstrip()
                tail = (tail + [line])[-40:]
                if line.startswith("[qat]"):
                    say(progress, line)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if proc.returncode != 0:
            raise RuntimeError("quantization-aware training failed:\n" + "\n".join(tail))
        with open(os.path.join(tmp, "qat.tflite"), "rb") as f, open(out_path, "wb") as g:
            g.write(f.read())
        with open(os.path.join(tmp, "result.json")) as f:
            return json.load(f)
