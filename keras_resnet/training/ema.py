"""Exponential moving average of a model's weights (timm ``ModelEmaV3``, torchvision's
``ExponentialMovingAverage``), as a Keras callback.

After every training batch, every weight of the model -- trainable ones and the
non-trainable ones such as BatchNormalization's moving mean and variance -- is averaged:
``ema = d * ema + (1 - d) * w``. Weights that are not floating point (counters) are copied.
The average starts as a copy of the model's weights when training begins (or when
:meth:`WeightEMA.build` is called), unless a saved state was restored with
:meth:`WeightEMA.set_state`.

``d`` is ``decay``; with ``warmup=True`` it is timm's warm-up
``min(decay, max(min_decay, 1 - (1 + step / warmup_gamma) ** -warmup_power))`` where
``step`` counts updates from 1, so early averages follow the model closely.
"""

import numpy as np
import tensorflow as tf

from .._compat import keras


class WeightEMA(keras.callbacks.Callback):
    """Average the model's weights after each train batch.

    Args:
        decay: the averaging factor ``d`` (timm's default 0.9998 for RSB, torchvision's
            0.99998 per image scaled by the batch size).
        warmup: use timm's warm-up of the decay (see the module docstring).
        warmup_gamma, warmup_power, min_decay: timm ``ModelEmaV3``'s warm-up parameters.
        every: update every ``every`` batches (torchvision's ``--model-ema-steps``).

    After (or during) ``fit``: :meth:`ema_model` returns a clone of the model holding the
    averaged weights; :meth:`get_state` / :meth:`set_state` save and restore the average
    (``{"step": int, "weights": [numpy arrays, in model.weights order]}``) for resuming;
    :attr:`variables` are the ``tf.Variable`` s holding it, for a ``tf.train.Checkpoint``.
    """

    def __init__(self, decay=0.9998, warmup=False, warmup_gamma=1.0, warmup_power=2 / 3,
                 min_decay=0.0, every=1):
        super().__init__()
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        if int(every) < 1:
            raise ValueError(f"EMA every must be >= 1, got {every}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.warmup_gamma = float(warmup_gamma)
        self.warmup_power = float(warmup_power)
        self.min_decay = float(min_decay)
        self.every = int(every)
        self._source = None
        self._averages = None
        self._step = None
        self._batches = 0
        self._pending = None
        self._update_fn = None

    # -- building ------------------------------------------------------------------
    def build(self, model):
        """Create the averages from ``model``'s current weights (once)."""
        if self._averages is not None and self._source is model:
            return
        self._source = model
        with tf.init_scope():
            self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_step")
            self._averages = [
                tf.Variable(tf.convert_to_tensor(w), trainable=False,
                            name="ema_" + w.name.replace("/", "_").replace(":", "_"))
                for w in model.weights]
        self._update_fn = None
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.set_state(state)

    @property
    def variables(self):
        """The averaged weights and the step counter (``tf.Variable`` s); ``None`` before
        :meth:`build`."""
        if self._averages is None:
            return None
        return [self._step] + list(self._averages)

    def current_decay(self, step):
        """The decay used for update number ``step`` (counted from 1)."""
        if not self.warmup:
            return self.decay
        d = 1.0 - (1.0 + step / self.warmup_gamma) ** -self.warmup_power
        return min(self.decay, max(self.min_decay, d))

    def _make_update(self):
        weights = self._source.weights

        @tf.function(autograph=False)
        def update():
            step = self._step.assign_add(1)
            s = tf.cast(step, tf.float32)
            if self.warmup:
                d = 1.0 - tf.pow(1.0 + s / self.warmup_gamma, -self.warmup_power)
                d = tf.minimum(self.decay, tf.maximum(self.min_decay, d))
            else:
                d = tf.constant(self.decay)
            for avg, w in zip(self._averages, weights):
                value = tf.convert_to_tensor(w)
                if avg.dtype.is_floating:
                    dd = tf.cast(d, avg.dtype)
                    avg.assign(dd * avg + (1.0 - dd) * tf.cast(value, avg.dtype))
                else:
                    avg.assign(value)
            return step

        return update

    def update(self):
        """One averaging step now (what each ``every``-th train batch does)."""
        if self._update_fn is None:
            self._update_fn = self._make_update()
        self._update_fn()

    # -- callback hooks ------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.build(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.every == 0:
            self.update()

    # -- results -------------------------------------------------------------------
    def averaged_weights(self):
        """The averaged weights as numpy arrays, in ``model.weights`` order."""
        self._require()
        return [v.numpy() for v in self._averages]

    def ema_model(self, model=None):
        """A clone of ``model`` (default: the trained model) holding the averaged weights.
        The clone is not compiled."""
        self._require()
        source = model if model is not None else self._source
        clone = keras.models.clone_model(source)
        clone.set_weights(self.averaged_weights())
        return clone

    def get_state(self):
        """``{"step": int, "weights": [numpy arrays]}``: everything needed to resume."""
        self._require()
        return {"step": int(self._step.numpy()), "weights": self.averaged_weights()}

    def set_state(self, state):
        """Restore a :meth:`get_state` result (before or after :meth:`build`)."""
        if self._averages is None:
            self._pending = state
            return
        weights = list(state["weights"])
        if len(weights) != len(self._averages):
            raise ValueError(f"EMA state has {len(weights)} weights, the model has "
                             f"{len(self._averages)}")
        for avg, w in zip(self._averages, weights):
            if tuple(avg.shape) != tuple(np.shape(w)):
                raise ValueError(f"EMA state weight for {avg.name} has shape {np.shape(w)}, "
                                 f"expected {tuple(avg.shape)}")
            avg.assign(np.asarray(w, dtype=avg.dtype.as_numpy_dtype))
        self._step.assign(int(state["step"]))

    def _require(self):
        if self._averages is None:
            raise RuntimeError("WeightEMA has no average yet: call build(model) or fit with it")


__all__ = ["WeightEMA"]
