"""Optimizers for very large batches: LARS (here) and LAMB (``keras.optimizers.Lamb``)."""

from .._compat import keras, register

ops = keras.ops


@register(package="keras_resnet")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman and Ginsburg 2017), with momentum, as
    TensorFlow Model Garden's ``LARS`` (``classic_momentum``):

    ``g = grad + weight_decay * w`` (for decayed variables);
    ``trust = eeta * ||w|| / ||g||`` (1 when either norm is 0, or for variables excluded
    from layer adaptation);
    ``v = momentum * v + learning_rate * trust * g``;
    ``w = w - v`` (Nesterov: ``w = w - (momentum * v + learning_rate * trust * g)``).

    Weight decay here is coupled (added to the gradient, as in the paper), not Keras'
    decoupled ``weight_decay``. ``exclude_from_weight_decay`` and
    ``exclude_from_layer_adaptation`` are lists of substrings of variable paths; with
    ``exclude_1d`` (default) every variable of rank <= 1 (biases, BatchNormalization
    gammas and betas) is excluded from both, as the large-batch recipes do.
    ``exclude_from_layer_adaptation`` defaults to ``exclude_from_weight_decay``.
    """

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=0.0, eeta=0.001,
                 nesterov=False, exclude_from_weight_decay=None,
                 exclude_from_layer_adaptation=None, exclude_1d=True, name="lars", **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"LARS momentum must be in [0, 1), got {momentum}")
        if float(weight_decay) < 0 or float(eeta) <= 0:
            raise ValueError(f"LARS needs weight_decay >= 0 and eeta > 0, got "
                             f"{weight_decay}, {eeta}")
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eeta = float(eeta)
        self.nesterov = bool(nesterov)
        self.exclude_from_weight_decay_names = list(exclude_from_weight_decay or [])
        self.exclude_from_layer_adaptation_names = (
            list(exclude_from_layer_adaptation) if exclude_from_layer_adaptation is not None
            else list(self.exclude_from_weight_decay_names))
        self.exclude_1d = bool(exclude_1d)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

    def _excluded(self, variable, names):
        if self.exclude_1d and len(variable.shape) <= 1:
            return True
        path = getattr(variable, "path", None) or variable.name
        return any(n in path for n in names)

    def decays(self, variable):
        """Whether weight decay applies to ``variable``."""
        return self.lars_weight_decay > 0 and not self._excluded(
            variable, self.exclude_from_weight_decay_names)

    def adapts(self, variable):
        """Whether the trust ratio applies to ``variable``."""
        return not self._excluded(variable, self.exclude_from_layer_adaptation_names)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self._velocities[self._get_variable_index(variable)]
        if self.decays(variable):
            g = ops.add(g, ops.multiply(self.lars_weight_decay, variable))
        scaled_lr = lr
        if self.adapts(variable):
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            safe = ops.where(ops.greater(g_norm, 0), g_norm, 1.0)
            trust = ops.where(ops.logical_and(ops.greater(w_norm, 0), ops.greater(g_norm, 0)),
                              self.eeta * w_norm / safe, 1.0)
            scaled_lr = lr * ops.cast(trust, variable.dtype)
        step = ops.multiply(scaled_lr, g)
        new_v = ops.add(ops.multiply(self.momentum, v), step)
        self.assign(v, new_v)
        update = ops.add(ops.multiply(self.momentum, new_v), step) if self.nesterov else new_v
        self.assign_sub(variable, update)

    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum, weight_decay=self.lars_weight_decay, eeta=self.eeta,
            nesterov=self.nesterov,
            exclude_from_weight_decay=self.exclude_from_weight_decay_names,
            exclude_from_layer_adaptation=self.exclude_from_layer_adaptation_names,
            exclude_1d=self.exclude_1d)
        return config


def make_lamb(learning_rate, weight_decay=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
              exclude=None, **kwargs):
    """``keras.optimizers.Lamb`` with weight decay left out for ``exclude`` (a list of
    variables, e.g. biases and BatchNormalization parameters).

    Keras' Lamb applies weight decay decoupled, before the step (``w -= lr * wd * w``),
    outside the trust ratio; timm's ``Lamb`` adds ``wd * w`` to the update inside the trust
    ratio. Without weight decay the two agree (tests/test_ema_losses_optim.py)."""
    opt = keras.optimizers.Lamb(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                                epsilon=epsilon, weight_decay=weight_decay or None, **kwargs)
    if weight_decay and exclude:
        opt.exclude_from_weight_decay(var_list=list(exclude))
    return opt


__all__ = ["LARS", "make_lamb"]
