"""What is trained and how: the model, the learning-rate schedule, the optimizer and the
variables weight decay applies to."""

from .._compat import keras, register
from .config import SCHEDULES, resolve_model


def build_model(name, input_shape, num_classes, classifier_activation="softmax", sync_bn=False,
                preprocessing=None, model_kwargs=None):
    """The keras_resnet model ``name`` for ``input_shape``/``num_classes``; with
    ``preprocessing`` (``{"scale", "offset"}``) it is inside the model, which takes pixels.
    ``model_kwargs``: more options of the constructor (``drop_path_rate``, ``zero_init``,
    ``attention``, ``stem``, ...)."""
    extra = {} if preprocessing is None else dict(include_preprocessing=True, preprocessing=preprocessing)
    extra.update(model_kwargs or {})
    model = resolve_model(name)(input_shape=tuple(input_shape), classes=num_classes,
                                classifier_activation=classifier_activation, **extra)
    if sync_bn:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    return model


def pixel_model(model, preprocessing, name=None):
    """``model`` behind its input preprocessing: a model that takes pixels in 0..255
    (``uint8`` or float) and applies ``pixels * scale + offset`` (``preprocessing``) as its
    first layer, a float32 ``keras.layers.Rescaling`` (the arithmetic of
    :func:`keras_resnet.data.apply_preprocessing`, in float32 under a mixed-precision policy
    too), then ``model``. The trainer's training step runs this, so the preprocessing runs
    inside the compiled step (on the accelerator, per batch) instead of per image in
    ``tf.data``. ``model`` itself is unchanged: its variables are this model's, and a
    checkpoint of ``model`` is the same as before."""
    shape = tuple(model.input_shape[1:])
    pixels = keras.Input(shape=shape, name="pixels")
    scale = [float(v) for v in preprocessing["scale"]]
    offset = [float(v) for v in preprocessing["offset"]]
    x = keras.layers.Rescaling(scale if len(scale) > 1 else scale[0],
                               offset if len(offset) > 1 else offset[0],
                               dtype="float32", name="preprocessing")(pixels)
    return keras.Model(pixels, model(x), name=name or f"{model.name}_pixels")


@register(package="keras_resnet")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """``after`` (a schedule of the global step) preceded by a linear warmup over
    ``warmup_steps`` from ``initial_learning_rate`` to ``warmup_target``: the warmup of
    :class:`keras.optimizers.schedules.CosineDecay`, for schedules that have none."""

    def __init__(self, after, warmup_steps, warmup_target, initial_learning_rate=0.0):
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.warmup_target = float(warmup_target)
        self.initial_learning_rate = float(initial_learning_rate)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        start, target = self.initial_learning_rate, self.warmup_target
        warm = start + (target - start) * step / float(max(self.warmup_steps, 1))
        return keras.ops.where(step < self.warmup_steps, warm,
                               keras.ops.cast(self.after(step), "float32"))

    def get_config(self):
        return dict(after=keras.optimizers.schedules.serialize(self.after),
                    warmup_steps=self.warmup_steps, warmup_target=self.warmup_target,
                    initial_learning_rate=self.initial_learning_rate)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


def learning_rate_schedule(lr, total_steps, warmup_steps=0, kind="step", boundaries=(0.5, 0.75)):
    """Keras's own schedules: a linear warmup over ``warmup_steps`` from ``lr /
    warmup_steps`` to ``lr``, then

    - ``cosine``: :class:`~keras.optimizers.schedules.CosineDecay` to 0 at ``total_steps``;
    - ``constant``: ``lr`` (CosineDecay with ``alpha=1``);
    - ``step``: :class:`~keras.optimizers.schedules.PiecewiseConstantDecay`, lr / 10 from each
      of ``boundaries`` (fractions of ``total_steps``, warmup included) on.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule={kind!r} is not supported; accepted: {', '.join(SCHEDULES)}")
    schedules = keras.optimizers.schedules
    total_steps, warmup_steps = max(int(total_steps), 1), int(warmup_steps)
    start = lr / warmup_steps if warmup_steps else lr
    if kind in ("cosine", "constant"):
        return schedules.CosineDecay(
            start, decay_steps=max(total_steps - warmup_steps, 1),
            alpha=1.0 if kind == "constant" else 0.0,
            warmup_target=lr if warmup_steps else None, warmup_steps=warmup_steps)
    # PiecewiseConstantDecay changes value after a boundary: step b * total is the first at lr/10.
    steps = [max(int(round(b * total_steps)) - 1, 0) for b in boundaries]
    values = [lr * 0.1 ** i for i in range(len(steps) + 1)]
    step = schedules.PiecewiseConstantDecay(steps, values)
    return LinearWarmup(step, warmup_steps, lr, start) if warmup_steps else step


def decayed_variables(model):
    """Variables weight decay applies to: kernels only (BN gammas/betas and biases are
    1-D and skipped)."""
    return [v for v in model.trainable_variables if len(v.shape) > 1]


def make_optimizer(cfg, schedule, model):
    """SGD with momentum (weight decay as an L2 term in the loss, as in the paper), AdamW
    or LAMB (``keras.optimizers.Lamb``; decoupled weight decay) or LARS (for very large
    batches, :class:`keras_resnet.training.optimizers.LARS`); all skip BN parameters and
    biases. ``clip_grad_norm`` is applied by the training step (to the global batch's
    gradient), not here. Wrapped in a ``LossScaleOptimizer`` for ``mixed_float16``."""
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum,
                                   nesterov=bool(cfg.nesterov))
    else:
        if cfg.optimizer == "adamw":
            opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "lamb":
            opt = keras.optimizers.Lamb(learning_rate=schedule, weight_decay=cfg.weight_decay or None)
        else:
            from .optimizers import LARS

            opt = LARS(learning_rate=schedule, momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay or None)
        decayed = {id(v) for v in decayed_variables(model)}
        opt.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if id(v) not in decayed])
    if cfg.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt
