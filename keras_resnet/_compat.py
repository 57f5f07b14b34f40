"""Which Keras this process uses.

keras_resnet is written against the public Keras API so the same model code runs under
Keras 3 (the default) and under tf_keras (legacy Keras 2), which
tensorflow-model-optimization needs.  tf_keras is selected the way TensorFlow selects it:
set ``TF_USE_LEGACY_KERAS=1`` before anything imports TensorFlow. Every module takes
``keras`` from here.
"""

import os

LEGACY = os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes")

if LEGACY:  # pragma: no cover - exercised in a subprocess by the tests
    import tf_keras as keras
else:
    import keras

register = keras.saving.register_keras_serializable


def pad(x, paddings):
    """Zero-pad a tensor (``keras.ops.pad``; tf_keras has no ``keras.ops``)."""
    if LEGACY:  # pragma: no cover
        import tensorflow as tf

        return tf.pad(x, paddings)
    return keras.ops.pad(x, paddings)


def get_source_inputs(tensor):
    return keras.utils.get_source_inputs(tensor)


def is_keras_tensor(x):
    return keras.backend.is_keras_tensor(x)


__all__ = ["keras", "LEGACY", "pad", "register", "get_source_inputs", "is_keras_tensor"]
