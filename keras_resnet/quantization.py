"""Quantization-aware training (tensorflow-model-optimization) to an int8 TFLite model.

tensorflow-model-optimization (tfmot) works on tf_keras (legacy Keras 2) models only, so
QAT runs in its own Python process with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is
imported. :func:`qat_tflite` (called in your Keras 3 process) writes the architecture
(``ResNet.get_config()``), the weights by layer name and the training data to a temporary
folder and starts ``python -m keras_resnet.quantization <folder>``; that process:

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
    from keras_resnet.quantization import quantize_model
    qat_model = quantize_model(model)   # a tf_keras keras_resnet model
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from ._compat import LEGACY

_CONFIG_CLASS = None


def _config_class():
    """The tfmot QuantizeConfig for :class:`~keras_resnet.layers.ZeroPadShortcut` (created on
    first use, since importing tfmot needs tf_keras)."""
    global _CONFIG_CLASS
    if _CONFIG_CLASS is None:
        import tensorflow_model_optimization as tfmot

        class ZeroPadShortcutQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
            """QuantizeConfig for the parameter-free option-A shortcut.

            The layer has no weights and only slices and zero-pads its input, which is
            already quantized (the previous block's output), so every output value lies on
            the input's quantization grid (zero included): nothing to quantize, no fake
            quantization added. The TFLite converter gives the slice and pad ops the
            input's scale and zero point.
            """

            def get_weights_and_quantizers(self, layer):
                return []

            def get_activations_and_quantizers(self, layer):
                return []

            def set_quantize_weights(self, layer, quantize_weights):
                pass

            def set_quantize_activations(self, layer, quantize_activations):
                pass

            def get_output_quantizers(self, layer):
                return []

            def get_config(self):
                return {}

        _CONFIG_CLASS = ZeroPadShortcutQuantizeConfig
    return _CONFIG_CLASS


def __getattr__(name):
    if name == "ZeroPadShortcutQuantizeConfig":
        return _config_class()
    raise AttributeError(name)


def quantize_scope():
    """``tfmot.quantization.keras.quantize_scope`` with keras_resnet's custom objects."""
    import tensorflow_model_optimization as tfmot

    from .layers import DropPath, ZeroPadShortcut

    cls = _config_class()
    return tfmot.quantization.keras.quantize_scope(
        {"ZeroPadShortcutQuantizeConfig": cls, "ZeroPadShortcut": ZeroPadShortcut,
         "DropPath": DropPath}
    )


def quantize_model(model):
    """A QAT model (fake quantization, tfmot's default 8-bit scheme) of a tf_keras
    keras_resnet model; run under ``TF_USE_LEGACY_KERAS=1``. Weights are kept.

    Supported: every option of ``ResNet`` except ``attention``: tfmot's default scheme
    has no quantization for the ``Multiply`` of squeeze-and-excitation nor the ``Conv1D``
    of ECA, and refuses them (post-training int8 export works for both).
    """
    if not LEGACY:
        raise RuntimeError(
            "quantize_model needs tf_keras: set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported "
            "(or use keras_resnet.quantization.qat_tflite, which starts such a process)"
        )
    import tensorflow_model_optimization as tfmot

    from ._compat import keras
    from .layers import DropPath, ZeroPadShortcut

    tfq = tfmot.quantization.keras
    cls = _config_class()

    def annotate(layer):
        # Parameter free; DropPath is the identity at inference and feeds an Add whose
        # output tfmot quantizes.
        if isinstance(layer, (ZeroPadShortcut, DropPath)):
            return tfq.quantize_annotate_layer(layer, quantize_config=cls())
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        return tfq.quantize_annotate_layer(layer)

    flat = keras.Model(model.inputs, model.outputs, name=model.name)
    annotated = keras.models.clone_model(flat, clone_function=annotate)
    with quantize_scope():
        return tfq.quantize_apply(annotated)


def init_ranges(qat_model, images, batch_size=256):
    """Set the activation quantization ranges from ``images`` (preprocessed model inputs).

    tfmot starts every activation range at [-6, 6] and moves it by an exponential moving
    average with decay 0.999 per training step, far too slow for a short fine-tuning run:
    ranges would still clip. Here one pass in training mode, with the moving average
    replaced by the batch's own min/max, sets each range to what the data produces
    (min/max calibration, as post-training quantization does); fine-tuning then moves it
    with tfmot's usual average. BatchNormalization layers should be frozen first.
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def batch_range(*args, **kwargs):
        kwargs["ema_decay"] = 0.0
        return original(*args, **kwargs)

    images = np.asarray(images, "float32")[:batch_size]
    quant_ops.MovingAvgQuantize = batch_range
    try:
        tf.function(lambda x: qat_model(x, training=True))(tf.constant(images))
    finally:
        quant_ops.MovingAvgQuantize = original


# ----------------------------------------------------------------------------------------
# Keras 3 side: start the tf_keras process


def _without_model_preprocessing(config, preprocessing):
    """tfmot cannot quantize a Rescaling layer: a model built with include_preprocessing
    is rebuilt without it, and its scale/offset composed into the serving preprocessing
    (``pixels * s1 + o1``, then ``* s2 + o2``)."""
    if not config.get("include_preprocessing"):
        return config, preprocessing
    from .preprocessing import preprocessing_spec

    channels = len(preprocessing["scale"])
    inner, _ = preprocessing_spec(config["preprocessing"], channels)
    s1, o1 = np.asarray(preprocessing["scale"], "float64"), np.asarray(preprocessing["offset"], "float64")
    s2, o2 = np.asarray(inner["scale"], "float64"), np.asarray(inner["offset"], "float64")
    config = dict(config, include_preprocessing=False)
    return config, {"scale": list(s1 * s2), "offset": list(o1 * s2 + o2)}


# Training images QAT reads from a file dataset (folder, TFRecord, TFDS) when not given
# train_arrays: a few fine-tuning epochs at a tiny learning rate need a sample, not the set.
QAT_FILE_SAMPLES = 2048


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    from .export._common import ExportError, say
    from .models import ResNet

    model = source.model
    if not isinstance(model, ResNet):
        raise ExportError(
            f"quantization-aware training needs a keras_resnet ResNet model; got {type(model).__name__}"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ExportError(f"epochs={epochs!r} is not supported; expected a positive integer")
    if train_arrays is None:
        from . import data

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
        env["PYTHONPATH"] = _repo_root() + os.pathsep + env.get("PYTHONPATH", "")
        say(progress, f"[qat] fine-tuning {epochs} epoch(s) with fake quantization (tf_keras process)")
        proc = subprocess.Popen([sys.executable, "-m", "keras_resnet.quantization", tmp], env=env,
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


# ----------------------------------------------------------------------------------------
# tf_keras side (python -m keras_resnet.quantization <job folder>)


def _run_job(folder):
    import tensorflow as tf

    from ._compat import keras
    from .models import ResNet

    if not LEGACY:
        raise RuntimeError("run with TF_USE_LEGACY_KERAS=1")
    with open(os.path.join(folder, "job.json")) as f:
        job = json.load(f)
    weights = np.load(os.path.join(folder, "weights.npz"))
    data = np.load(os.path.join(folder, "data.npz"))
    keras.utils.set_random_seed(job["seed"])
    config = dict(job["config"])
    config["classifier_activation"] = None  # logits; softmax is added at conversion
    config["input_shape"] = tuple(config["input_shape"])
    model = ResNet.from_config(config)
    for layer in model.layers:
        n = len(layer.weights)
        if n:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(n)])
    scale = np.asarray(job["preprocessing"]["scale"], "float32")
    offset = np.asarray(job["preprocessing"]["offset"], "float32")
    diff = float(np.max(np.abs(model(data["check"] * scale + offset, training=False).numpy()
                               - data["check_logits"])))
    print(f"[qat] tf_keras rebuild: max abs logit difference to the Keras 3 model {diff:.2g}", flush=True)
    if diff > 1e-3:
        raise RuntimeError(f"weights did not carry over to the tf_keras rebuild (difference {diff})")

    if job.get("freeze_bn", True):
        # BatchNormalization keeps the trained statistics (runs in inference mode), so
        # fine-tuning only adapts the weights and the quantization ranges.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    qat = quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(job["learning_rate"]),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    x = data["x"] * scale + offset
    y = data["y"]
    init_ranges(qat, data["calibration"] * scale + offset)
    before = qat.evaluate(x, y, verbose=0, batch_size=256)[1]
    print(f"[qat] fake-quantized accuracy on the training data before fine-tuning: {before:.4f}", flush=True)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"[qat] epoch {epoch + 1}/{job['epochs']}: loss {logs['loss']:.4f} "
                  f"accuracy {logs['accuracy']:.4f}", flush=True)

    qat.fit(x, y, epochs=job["epochs"], batch_size=job["batch_size"], verbose=0, shuffle=True,
            callbacks=[Progress()])

    h, w, c = config["input_shape"]

    class Serving(tf.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec((None, h, w, c), tf.float32, name="images")])
        def serve(self, images):
            logits = self.net(images * scale + offset, training=False)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    module = Serving(qat)
    saved = os.path.join(folder, "qat_saved_model")
    tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
    from .export.tflite import convert_saved_model

    flatbuffer = convert_saved_model(saved, "qat", data["calibration"], job["int8_io"])
    with open(os.path.join(folder, "qat.tflite"), "wb") as f:
        f.write(flatbuffer)
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump({"epochs": job["epochs"], "learning_rate": job["learning_rate"],
                   "rebuild_max_abs_diff": diff,
                   "train_accuracy_fake_quant_before": float(before),
                   "train_accuracy_fake_quant_after": float(qat.evaluate(x, y, verbose=0, batch_size=256)[1])},
                  f)
    print("[qat] converted to int8 TFLite", flush=True)


if __name__ == "__main__":
    _run_job(sys.argv[1])
