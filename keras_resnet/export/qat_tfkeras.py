"""The tf_keras side of quantization-aware training: every use of tensorflow-model-optimization.

Imported on first use (by :mod:`keras_resnet.export.qat`, or by your own tf_keras code) and
run as ``python -m keras_resnet.export.qat_tfkeras <job folder>`` with
``TF_USE_LEGACY_KERAS=1`` by :func:`keras_resnet.export.qat.qat_tflite`.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

from .._compat import LEGACY, keras
from ..layers import DropPath, ZeroPadShortcut
from ..models import ResNet
from ..preprocessing import apply_preprocessing
from .tflite_convert import convert_saved_model


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


def quantize_scope():
    """``tfmot.quantization.keras.quantize_scope`` with keras_resnet's custom objects."""
    return tfmot.quantization.keras.quantize_scope(
        {"ZeroPadShortcutQuantizeConfig": ZeroPadShortcutQuantizeConfig, "ZeroPadShortcut": ZeroPadShortcut,
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
            "(or use keras_resnet.export.qat.qat_tflite, which starts such a process)"
        )
    tfq = tfmot.quantization.keras

    def annotate(layer):
        # Parameter free; DropPath is the identity at inference and feeds an Add whose
        # output tfmot quantizes.
        if isinstance(layer, (ZeroPadShortcut, DropPath)):
            return tfq.quantize_annotate_layer(layer, quantize_config=ZeroPadShortcutQuantizeConfig())
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
# Pieces of the job


class EpochLog(keras.callbacks.Callback):
    """Prints ``[qat] epoch i/n: loss ... accuracy ...`` (the Keras 3 process relays it)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        print(f"[qat] epoch {epoch + 1}/{self.epochs}: loss {logs['loss']:.4f} "
              f"accuracy {logs['accuracy']:.4f}", flush=True)


class Serving(tf.Module):
    """The QAT model behind a ``serving_default`` signature: pixels -> logits, probabilities.

    Only the model's variables are tracked, not the tf_keras model: saving a tracked tf_keras
    model traces every layer's call for its Keras metadata, which the converter never reads
    (for ResNet-20 that made the save and the conversion about 5x slower)."""

    def __init__(self, net, preprocessing, input_shape):
        super().__init__()
        self.weights = list(net.variables)  # what the signature reads
        self._forward = lambda x: net(x, training=False)  # a function: not tracked
        self.preprocessing = dict(preprocessing)
        spec = tf.TensorSpec((None, *input_shape), tf.float32, name="images")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images):
        logits = self._forward(apply_preprocessing(images, self.preprocessing))
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


# ----------------------------------------------------------------------------------------
# The job (python -m keras_resnet.export.qat_tfkeras <job folder>)


def _run_job(folder):
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
    prep = job["preprocessing"]
    diff = float(np.max(np.abs(model(apply_preprocessing(data["check"], prep), training=False).numpy()
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
    x = apply_preprocessing(data["x"], prep)
    y = data["y"]
    init_ranges(qat, apply_preprocessing(data["calibration"], prep))
    before = qat.evaluate(x, y, verbose=0, batch_size=256)[1]
    print(f"[qat] fake-quantized accuracy on the training data before fine-tuning: {before:.4f}", flush=True)

    qat.fit(x, y, epochs=job["epochs"], batch_size=job["batch_size"], verbose=0, shuffle=True,
            callbacks=[EpochLog(job["epochs"])])
    module = Serving(qat, prep, config["input_shape"])
    saved = os.path.join(folder, "qat_saved_model")
    tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
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
