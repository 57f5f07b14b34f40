"""Residual shortcuts and blocks.

Everything here exists in two forms that share one definition:

* functions (``basic_block``, ``bottleneck_block``) that add a block to a functional graph
  as a flat run of built-in layers (Conv2D, BatchNormalization, ReLU, Add, ...). The
  models in :mod:`keras_resnet.models` are made of these, so converters, BN folding and
  tensorflow-model-optimization see ordinary layers with stable names
  (``stage2_block1_conv1``, ...). Their BatchNormalization is
  :class:`FusedBatchNormalization`, a subclass that only changes how the training step
  is computed (one fused op; see its docstring);
* layers (``BasicBlock``, ``BottleneckBlock``, ``ProjectionShortcut``,
  ``ZeroPadShortcut``) for use inside your own Sequential, functional or subclassed
  models.  They are registered serializable Keras layers with ``get_config``.

Shortcut options (He et al. 2015, section 4.1):

* ``"A"``: parameter free. Where the block changes the number of channels, the input is
  subsampled by the stride and the new channels are zeros (:class:`ZeroPadShortcut`).
* ``"B"``: a 1x1 convolution (+ BN in post-activation blocks) where the number of
  channels changes; identity elsewhere.
* ``"C"``: a 1x1 convolution (+ BN) on every block.

With A and B a block that strides without changing its channel count (the layout of
keras.applications ResNetV2, which strides in the last block of a stage) subsamples its
shortcut with a 1x1 max-pool of that stride.

Blocks come in the original post-activation form (conv-BN-ReLU, ReLU after the addition)
and the full pre-activation form of "Identity Mappings in Deep Residual Networks" (BN-ReLU
before each conv, nothing after the addition). In pre-activation blocks a projection
shortcut reads the pre-activated input; parameter-free shortcuts read the raw input.

Family options (all off by default, so the blocks above are unchanged):

* ``groups`` / ``width_per_group``: grouped and wide bottlenecks (ResNeXt, Wide ResNet),
  with torchvision's width rule ``int(filters * width_per_group / 64) * groups``.
* ``avg_down``: ResNet-D projection shortcuts, a 2x2 average pool (stride 2, padding
  excluded from the average, like PyTorch's ``ceil_mode=True, count_include_pad=False``)
  then a 1x1 convolution with stride 1.
* ``attention``: ``"se"`` (squeeze-and-excitation, timm's ``SEModule``: reduced width
  ``make_divisible(C / 16, 8)``, 1x1 convolutions with bias, ReLU, sigmoid) or ``"eca"``
  (efficient channel attention, timm's ``EcaModule``), after the residual branch's last BN.
* ``drop_path``: stochastic depth on the residual branch (:class:`DropPath`).
* ``dilation`` / ``first_dilation``: dilated 3x3 convolutions (output stride 8 or 16).

Strided convolutions pad symmetrically (``ZeroPadding2D`` then a ``valid`` convolution),
as PyTorch does, so checkpoints from torchvision or timm compute the same function here.
"""

import math

from ._compat import LEGACY, keras, pad, register
from .specs import (ATTENTIONS, BASIC_OPTIONS, BOTTLENECK_OPTIONS, GROUPED_CONV, SHORTCUTS,
                    SPEC_OPTIONS, STRIDE_ON, USE_BIAS)
from .specs import choice as _choice
from .specs import positive_int as _positive_int

layers = keras.layers


def _grouped_gradients_native():
    """Whether TensorFlow computes grouped-convolution gradients as one op here: with
    oneDNN on CPU (TensorFlow's default on x86 Linux) or on a GPU."""
    import tensorflow as tf

    try:
        from tensorflow.python.util import _pywrap_util_port

        if _pywrap_util_port.IsMklEnabled():
            return True
    except (ImportError, AttributeError):  # pragma: no cover - depends on the build
        pass
    return bool(tf.config.list_physical_devices("GPU"))


@register(package="keras_resnet")
class ZeroPadShortcut(layers.Layer):
    """Option-A shortcut: subsample by ``strides``, then zero-pad channels to ``filters``.

    Parameter free. The new channels are split evenly before and after the existing
    ones (the extra one, if odd, goes after).

    Args:
        filters: number of output channels (at least the input's).
        strides: spatial subsampling factor; ``x[:, ::strides, ::strides, :]``.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.strides = _positive_int("strides", strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut '{self.name}': input has {channels} channels; "
                f"filters={self.filters} must be at least the input's channel count"
            )
        super().build(input_shape)

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        extra = self.filters - x.shape[-1]
        if extra:
            before = extra // 2
            x = pad(x, [[0, 0], [0, 0], [0, 0], [before, extra - before]])
        return x

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.strides)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


if LEGACY:  # pragma: no cover - tf_keras computes grouped Conv2D with tf.nn.convolution
    GroupedConv2D = layers.Conv2D
else:

    @register(package="keras_resnet")
    class GroupedConv2D(layers.Conv2D):
        """``keras.layers.Conv2D`` with ``groups > 1``, computed so it trains fast on
        TensorFlow CPUs and exports to TFLite and ONNX. Same weights and config as
        ``Conv2D`` (kernel ``(kh, kw, in / groups, out)``), plus ``implementation``:

        * ``"native"``: one grouped ``tf.nn.conv2d`` (a builtin grouped ``CONV_2D`` in
          TFLite, a ``Conv`` with ``group`` in ONNX). Its gradient needs oneDNN
          (TensorFlow's default on x86 Linux) or a GPU.
        * ``"split"``: split input and kernel into the groups, one ordinary convolution
          per group, concatenate. Gradients everywhere; 0.5-0.9x the training speed
          of ``"native"`` on CPU (``bench/bench_variants.py``).
        * ``"auto"`` (default): ``"native"`` where its gradient exists, else ``"split"``.
        * ``"keras"``: ``Conv2D``'s own path, which on TensorFlow runs grouped
          convolutions through an XLA-compiled function: on CPU it trained 18-85x slower
          than ``"native"`` here, and tf2onnx cannot convert it.

        Other backends and channels-first data always use ``Conv2D``'s own path.
        """

        def __init__(self, *args, implementation="auto", **kwargs):
            super().__init__(*args, **kwargs)
            self.implementation = _choice("implementation", implementation, GROUPED_CONV)

        def convolution_op(self, inputs, kernel):
            if (
                self.implementation == "keras" or self.groups == 1
                or self.data_format != "channels_last"
                or keras.backend.backend() != "tensorflow"
            ):
                return super().convolution_op(inputs, kernel)
            import tensorflow as tf

            args = dict(strides=self.strides, padding=self.padding.upper(),
                        dilations=self.dilation_rate)
            native = self.implementation == "native" or (
                self.implementation == "auto" and _grouped_gradients_native()
            )
            if native:
                return tf.nn.conv2d(inputs, kernel, **args)
            xs = tf.split(inputs, self.groups, axis=-1)
            ks = tf.split(kernel, self.groups, axis=-1)
            return tf.concat([tf.nn.conv2d(x, k, **args) for x, k in zip(xs, ks)], axis=-1)

        def get_config(self):
            return {**super().get_config(), "implementation": self.implementation}


@register(package="keras_resnet")
class DropPath(layers.Layer):
    """Stochastic depth (Huang et al. 2016) on a residual branch: per sample, the input is
    zeroed with probability ``rate`` and otherwise scaled by ``1 / (1 - rate)``.

    Identity at inference. The random stream comes from a ``keras.random.SeedGenerator``
    (the mechanism of ``keras.layers.Dropout``), so ``seed`` makes runs repeatable and the
    layer trains under ``tf.distribute`` strategies.

    Args:
        rate: probability of dropping the branch, in [0, 1).
        seed: integer seed of the layer's random stream (None: drawn at construction).
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"rate={rate!r} is not supported; expected a number in [0, 1)")
        self.rate = float(rate)
        self.seed = seed
        self.supports_masking = True
        if not LEGACY:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        keep = 1.0 - self.rate
        if LEGACY:  # pragma: no cover - tf_keras has no keras.ops / keras.random
            import tensorflow as tf

            shape = tf.concat([tf.shape(inputs)[:1], tf.ones([len(inputs.shape) - 1], "int32")], 0)
            u = tf.random.uniform(shape, seed=self.seed, dtype=inputs.dtype)
            return inputs * (tf.floor(keep + u) / keep)
        shape = (keras.ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        u = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        return inputs * (keras.ops.floor(keep + u) / keep)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


if LEGACY:  # pragma: no cover - tf_keras's own BatchNormalization is already fused
    FusedBatchNormalization = layers.BatchNormalization
else:

    @register(package="keras_resnet")
    class FusedBatchNormalization(layers.BatchNormalization):
        """``keras.layers.BatchNormalization`` that trains with one fused TensorFlow op.

        Keras 3 computes batch statistics and the normalisation as separate ops, and
        their gradient as many more. On the TensorFlow backend this layer runs the
        training step as ``FusedBatchNormV3`` (oneDNN on CPU, cuDNN on GPU) and its
        registered gradient instead; everything else is the parent's: same weights,
        same config, same inference path (so exported graphs do not change), and the
        moving variance is still updated with the *biased* batch variance, as Keras does.

        It falls back to the parent's computation where the fused op does not apply:
        other backends, inputs that are not 4-D channels-last float16/bfloat16/float32,
        masks, renorm, ``synchronized=True`` (statistics over all replicas), and
        inference (``training`` false or the layer frozen).
        """

        def _fused(self, inputs, training, mask):
            return (
                training and self.trainable and mask is None and not self.renorm
                and not self.synchronized and keras.backend.backend() == "tensorflow"
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and keras.backend.standardize_dtype(inputs.dtype)
                in ("float16", "bfloat16", "float32")
            )

        def call(self, inputs, training=None, mask=None):
            if not self._fused(inputs, training, mask):
                return super().call(inputs, training=training, mask=mask)
            import tensorflow as tf

            channels = inputs.shape[-1]
            scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
            offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
            empty = tf.constant([], "float32")
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )
            # The op reports the unbiased (n / (n - 1)) variance; Keras keeps the biased one.
            n = tf.cast(tf.reduce_prod(tf.shape(inputs, out_type="int64")[:-1]), "float32")
            variance = variance * tf.maximum(n - 1.0, 0.0) / n
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype) * (1.0 - m))
            self.moving_variance.assign(
                self.moving_variance * m + tf.cast(variance, self.moving_variance.dtype) * (1.0 - m)
            )
            return tf.cast(y, self.compute_dtype)


# ----------------------------------------------------------------------------------------
# One definition of a block: which layers it has (``block_parts``) and how they connect
# (``wire_block``). The functions and the layer classes below both use these two.


def check_bottleneck_width(filters, width_per_group, groups):
    """Refuses a bottleneck whose 3x3 convolution would have no channels."""
    if int(filters * width_per_group / 64) * groups < 1:
        raise ValueError(
            f"filters={filters}, width_per_group={width_per_group}, groups={groups} give a "
            "bottleneck width below 1"
        )


def check_block_options(kind, filters, strides, options):
    """Refuses, in one line, a block option that is unknown or out of its accepted values."""
    unknown = sorted(set(options) - set(SPEC_OPTIONS))
    if unknown:
        raise TypeError(f"unexpected block option {unknown[0]!r}; accepted: {', '.join(SPEC_OPTIONS)}")
    o = dict(SPEC_OPTIONS, **options)
    _positive_int("filters", filters)
    _positive_int("strides", strides)
    for name, accepted in (("shortcut", SHORTCUTS), ("use_bias", USE_BIAS),
                           ("stride_on", STRIDE_ON), ("grouped_conv", GROUPED_CONV)):
        _choice(name, o[name], accepted)
    for name in ("groups", "width_per_group", "dilation"):
        _positive_int(name, o[name])
    _choice("attention", o["attention"], ATTENTIONS)
    if o["expansion"] is not None:
        _positive_int("expansion", o["expansion"])
    _positive_int("first_dilation", o["first_dilation"] or o["dilation"])
    if kind != "bottleneck" and (o["groups"] != 1 or o["width_per_group"] != 64):
        raise ValueError(
            f"groups={o['groups']}, width_per_group={o['width_per_group']}: basic blocks support "
            "only groups=1 and width_per_group=64; use bottleneck blocks for ResNeXt/Wide ResNet"
        )
    if kind == "bottleneck":
        check_bottleneck_width(filters, o["width_per_group"], o["groups"])


class BlockSpec:
    """The options of one residual block (:data:`keras_resnet.specs.SPEC_OPTIONS`), checked
    once (:func:`check_block_options`)."""

    def __init__(self, kind, filters, in_channels, strides=1, *, checked=False, **options):
        """``checked=True``: the options come from a :class:`keras_resnet.models.ResNetSpec`,
        which has checked them all; they are only normalised here."""
        if not checked:
            check_block_options(kind, filters, strides, options)
        o = dict(SPEC_OPTIONS, **options)
        for key in ("preact", "zero_init", "residual", "avg_down"):
            o[key] = bool(o[key])
        o["drop_path"] = float(o["drop_path"])
        o["expansion"] = o["expansion"] or (4 if kind == "bottleneck" else 1)
        o["first_dilation"] = o["first_dilation"] or o["dilation"]
        self.__dict__.update(o)
        self.kind = kind
        self.filters = filters
        self.out_channels = filters * self.expansion
        self.in_channels = in_channels
        self.strides = strides
        # torchvision's rule: ResNeXt 32x4d has 4 channels per group at 64 filters.
        self.width = int(filters * self.width_per_group / 64) * self.groups

    # which shortcut this block gets ---------------------------------------------------
    @property
    def shortcut_kind(self):
        """One of None (plain), "identity", "pool", "zeropad", "projection"."""
        if not self.residual:
            return None
        if self.shortcut == "C" or (
            self.shortcut == "B" and self.in_channels != self.out_channels
        ):
            return "projection"
        if self.in_channels != self.out_channels:
            return "zeropad"
        return "pool" if self.strides > 1 else "identity"


def conv_layer(spec, filters, kernel, strides, name, normalized, zero=False, groups=1, dilation=1):
    bias = spec.use_bias is True or (spec.use_bias == "unnormalized" and not normalized)
    extra, cls = {}, layers.Conv2D
    if groups != 1:
        extra["groups"] = groups
        cls = GroupedConv2D
        if not LEGACY:
            extra["implementation"] = spec.grouped_conv
    if dilation != 1:
        extra["dilation_rate"] = dilation
    return cls(
        filters,
        kernel,
        strides=strides,
        padding="same" if (kernel == 1 or strides == 1) else "valid",
        use_bias=bias,
        kernel_initializer="zeros" if zero else spec.kernel_initializer,
        name=name,
        **extra,
    )


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """timm's ``make_divisible``: ``value`` rounded to a multiple of ``divisor``."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < round_limit * value:
        new += divisor
    return new


def se_channels(channels):
    """Reduced width of a squeeze-and-excitation module (timm: ``make_divisible(C/16, 8)``)."""
    return make_divisible(channels / 16, 8, round_limit=0.0)


def eca_kernel_size(channels, gamma=2, beta=1):
    """Kernel size of an ECA module over ``channels`` (Wang et al. 2020; timm's rule)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def bn_layer(spec, name, zero=False):
    return FusedBatchNormalization(
        epsilon=spec.bn_epsilon,
        momentum=spec.bn_momentum,
        gamma_initializer="zeros" if zero else "ones",
        name=name,
    )


def block_parts(spec, prefix=""):
    """The layers of one block, keyed by role; names are ``prefix + role``."""
    p = {}
    post = not spec.preact
    n = lambda role: prefix + role  # noqa: E731
    if spec.preact:
        p["preact_bn"] = bn_layer(spec, n("preact_bn"))
        p["preact_relu"] = layers.ReLU(name=n("preact_relu"))
    # (filters, kernel, stride, groups, dilation) of each convolution
    d0, d = spec.first_dilation, spec.dilation
    if spec.kind == "basic":
        convs = [(spec.filters, 3, spec.strides, 1, d0), (spec.out_channels, 3, 1, 1, d)]
    else:
        s1, s3 = (spec.strides, 1) if spec.stride_on == "1x1" else (1, spec.strides)
        w = spec.width
        convs = [(w, 1, s1, 1, 1), (w, 3, s3, spec.groups, d0), (spec.out_channels, 1, 1, 1, 1)]
    last = len(convs)
    for i, (f, k, s, g, dil) in enumerate(convs, start=1):
        is_last = i == last
        if k > 1 and s > 1:
            p[f"pad{i}"] = layers.ZeroPadding2D((k - 1) // 2 * dil, name=n(f"pad{i}"))
        normalized = post or not is_last
        zero_conv = spec.zero_init and spec.preact and is_last
        p[f"conv{i}"] = conv_layer(spec, f, k, s, n(f"conv{i}"), normalized, zero=zero_conv,
                              groups=g, dilation=dil)
        if normalized:
            p[f"bn{i}"] = bn_layer(spec, n(f"bn{i}"), zero=spec.zero_init and post and is_last)
        if not is_last:
            p[f"relu{i}"] = layers.ReLU(name=n(f"relu{i}"))
    c = spec.out_channels
    if spec.attention == "se":
        p["se_pool"] = layers.GlobalAveragePooling2D(keepdims=True, name=n("se_pool"))
        p["se_fc1"] = layers.Conv2D(se_channels(c), 1, use_bias=True, name=n("se_fc1"))
        p["se_relu"] = layers.ReLU(name=n("se_relu"))
        p["se_fc2"] = layers.Conv2D(c, 1, use_bias=True, name=n("se_fc2"))
        p["se_gate"] = layers.Activation("sigmoid", name=n("se_gate"))
        p["se_scale"] = layers.Multiply(name=n("se_scale"))
    elif spec.attention == "eca":
        p["eca_pool"] = layers.GlobalAveragePooling2D(name=n("eca_pool"))
        p["eca_flat"] = layers.Reshape((c, 1), name=n("eca_flat"))
        p["eca_conv"] = layers.Conv1D(
            1, eca_kernel_size(c), padding="same", use_bias=False, name=n("eca_conv")
        )
        p["eca_gate"] = layers.Activation("sigmoid", name=n("eca_gate"))
        p["eca_expand"] = layers.Reshape((1, 1, c), name=n("eca_expand"))
        p["eca_scale"] = layers.Multiply(name=n("eca_scale"))
    if spec.drop_path > 0 and spec.residual:
        p["drop_path"] = DropPath(spec.drop_path, seed=spec.drop_path_seed, name=n("drop_path"))
    kind = spec.shortcut_kind
    if kind == "projection":
        conv_stride = spec.strides
        if spec.avg_down:
            if spec.strides > 1:
                p["shortcut_avgpool"] = layers.AveragePooling2D(
                    2, strides=spec.strides, padding="same", name=n("shortcut_avgpool")
                )
            elif spec.dilation > 1:
                # timm's AvgPool2dSame(2, stride 1): zero-pad right/bottom, zeros counted.
                p["shortcut_avgpool_pad"] = layers.ZeroPadding2D(
                    ((0, 1), (0, 1)), name=n("shortcut_avgpool_pad")
                )
                p["shortcut_avgpool"] = layers.AveragePooling2D(
                    2, strides=1, padding="valid", name=n("shortcut_avgpool")
                )
            conv_stride = 1
        p["shortcut_conv"] = conv_layer(
            spec, spec.out_channels, 1, conv_stride, n("shortcut_conv"), normalized=post
        )
        if post:
            p["shortcut_bn"] = bn_layer(spec, n("shortcut_bn"))
    elif kind == "zeropad":
        p["shortcut_pad"] = ZeroPadShortcut(spec.out_channels, spec.strides, name=n("shortcut_pad"))
    elif kind == "pool":
        p["shortcut_pool"] = layers.MaxPooling2D(1, strides=spec.strides, name=n("shortcut_pool"))
    if kind is not None:
        p["add"] = layers.Add(name=n("add" if post else "out"))
    if post:
        p["out"] = layers.ReLU(name=n("out"))
    return p


def wire_block(x, p, spec, training=None):
    """Connect a block's layers (from ``block_parts``) to input ``x``."""

    def bn(name, t):
        return p[name](t, training=training) if training is not None else p[name](t)

    shortcut_in = x
    if spec.preact:
        x = p["preact_relu"](bn("preact_bn", x))
    if "shortcut_conv" in p:
        # A projection in a pre-activation block reads the pre-activated input.
        s = x if spec.preact else shortcut_in
        if "shortcut_avgpool_pad" in p:
            s = p["shortcut_avgpool_pad"](s)
        if "shortcut_avgpool" in p:
            s = p["shortcut_avgpool"](s)
        s = p["shortcut_conv"](s)
        if "shortcut_bn" in p:
            s = bn("shortcut_bn", s)
    elif "shortcut_pad" in p:
        s = p["shortcut_pad"](shortcut_in)
    elif "shortcut_pool" in p:
        s = p["shortcut_pool"](shortcut_in)
    else:
        s = shortcut_in
    i = 1
    while f"conv{i}" in p:
        if f"pad{i}" in p:
            x = p[f"pad{i}"](x)
        x = p[f"conv{i}"](x)
        if f"bn{i}" in p:
            x = bn(f"bn{i}", x)
        if f"relu{i}" in p:
            x = p[f"relu{i}"](x)
        i += 1
    if "se_pool" in p:
        a = p["se_relu"](p["se_fc1"](p["se_pool"](x)))
        x = p["se_scale"]([x, p["se_gate"](p["se_fc2"](a))])
    elif "eca_pool" in p:
        a = p["eca_conv"](p["eca_flat"](p["eca_pool"](x)))
        x = p["eca_scale"]([x, p["eca_expand"](p["eca_gate"](a))])
    if "drop_path" in p:
        x = p["drop_path"](x, training=training) if training is not None else p["drop_path"](x)
    if "add" in p:
        x = p["add"]([x, s])
    if "out" in p and not spec.preact:
        x = p["out"](x)
    return x


def _channels(x):
    return int(x.shape[-1])


def basic_block(x, filters, strides=1, name="block", **options):
    """Add a basic block (3x3, 3x3) to a functional graph; returns its output tensor.

    ``options``: ``shortcut`` ("A" | "B" | "C", default "B"), ``preact`` (False),
    ``zero_init`` (False), ``use_bias`` (False | True | "unnormalized"), ``bn_epsilon``
    (1e-5), ``bn_momentum`` (0.9), ``residual`` (True; False gives the plain block),
    ``kernel_initializer`` ("he_normal"), and the family options ``avg_down`` (False),
    ``attention`` (None | "se" | "eca"), ``drop_path`` (0.0), ``dilation`` (1).
    Layer names are ``f"{name}_{role}"``.
    """
    spec = BlockSpec("basic", filters, _channels(x), strides, **options)
    return wire_block(x, block_parts(spec, name + "_"), spec)


def bottleneck_block(x, filters, strides=1, name="block", **options):
    """Add a bottleneck block (1x1, 3x3, 1x1 with ``filters * expansion`` outputs).

    Same options as :func:`basic_block`, plus ``stride_on`` ("3x3", the default, as in
    torchvision and timm; or "1x1", as in the original paper and keras.applications),
    ``expansion`` (4), ``groups`` (1) and ``width_per_group`` (64).
    """
    spec = BlockSpec("bottleneck", filters, _channels(x), strides, **options)
    return wire_block(x, block_parts(spec, name + "_"), spec)


class _Block(layers.Layer):
    """A residual block as one Keras layer (shared code of the two block classes).

    Its options and their defaults are the class's ``_options`` table
    (:data:`keras_resnet.specs.BASIC_OPTIONS` / ``BOTTLENECK_OPTIONS``); each is also an
    attribute of the layer and a key of ``get_config``.
    """

    _kind = None
    _options = BASIC_OPTIONS

    def __init__(self, filters, strides=1, **kwargs):
        options = {k: kwargs.pop(k, v) for k, v in self._options.items()}
        super().__init__(**kwargs)
        spec = BlockSpec(self._kind, filters, filters, strides, **options)  # checks them all
        self.filters = filters
        self.strides = strides
        self.options = {k: getattr(spec, k) for k in self._options}
        for k, v in self.options.items():
            setattr(self, k, v)

    def _spec(self, in_channels):
        return BlockSpec(self._kind, self.filters, in_channels, self.strides, **self.options)

    def build(self, input_shape):
        self.spec = self._spec(int(input_shape[-1]))
        self.parts = block_parts(self.spec)
        if not LEGACY:
            # Create every sub-layer's weights now, so saved weights can be loaded
            # into a freshly built block.
            wire_block(keras.KerasTensor(tuple(input_shape)), self.parts, self.spec)
        super().build(input_shape)

    def call(self, inputs, training=None):
        return wire_block(inputs, self.parts, self.spec, training=training)

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.strides)

        out = self.filters * self.options.get("expansion", 1)
        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), out)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                **self.options}


@register(package="keras_resnet")
class BasicBlock(_Block):
    """Basic residual block (3x3, 3x3) as a layer; see :func:`basic_block` for options.

    Example::

        model = keras.Sequential([
            keras.Input((32, 32, 16)),
            keras_resnet.BasicBlock(16),
            keras_resnet.BasicBlock(32, strides=2, shortcut="A"),
        ])
    """

    _kind = "basic"


@register(package="keras_resnet")
class BottleneckBlock(_Block):
    """Bottleneck block (1x1, 3x3, 1x1; ``filters * expansion`` output channels).

    ``groups`` and ``width_per_group`` give ResNeXt/Wide bottlenecks (3x3 conv with
    ``int(filters * width_per_group / 64) * groups`` channels in ``groups`` groups).
    """

    _kind = "bottleneck"
    _options = BOTTLENECK_OPTIONS


@register(package="keras_resnet")
class ProjectionShortcut(layers.Layer):
    """Option-B/C shortcut as a layer: 1x1 convolution with ``strides`` (+ BN).

    Args:
        filters: output channels.
        strides: stride of the 1x1 convolution.
        normalize: follow the convolution with BatchNormalization (post-activation
            blocks do; pre-activation blocks do not).
        use_bias: give the convolution a bias.
    """

    def __init__(
        self, filters, strides=1, normalize=True, use_bias=False, bn_epsilon=1e-5,
        bn_momentum=0.9, kernel_initializer="he_normal", **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.strides = _positive_int("strides", strides)
        self.normalize = bool(normalize)
        self.use_bias = bool(use_bias)
        self.bn_epsilon = bn_epsilon
        self.bn_momentum = bn_momentum
        self.kernel_initializer = kernel_initializer
        self.conv = layers.Conv2D(
            filters, 1, strides=strides, use_bias=self.use_bias,
            kernel_initializer=kernel_initializer, name="conv",
        )
        self.bn = (
            FusedBatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name="bn")
            if self.normalize else None
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(input_shape))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self.conv(inputs)
        return self.bn(x, training=training) if self.bn is not None else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "normalize": self.normalize,
            "use_bias": self.use_bias,
            "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum,
            "kernel_initializer": self.kernel_initializer,
        }
