"""ResNet architectures: one general constructor and the named models on top of it.

``ResNet`` builds a flat functional graph (see :mod:`keras_resnet.layers`) from
stage-wise lists: how many blocks each stage has, their widths and strides, and which
block, shortcut and stem to use. Its ``get_config`` returns exactly those arguments, so
``ResNet.from_config(model.get_config())`` rebuilds the same architecture and ``.keras``
files load with ``safe_mode=True``.

Depth to stage sizes (the tables are :data:`keras_resnet.specs.IMAGENET_DEPTHS` and
:data:`~keras_resnet.specs.CIFAR_DEPTHS`):

=========  ==========  ===============  ===================================
family      depth       block            blocks per stage
=========  ==========  ===============  ===================================
ImageNet    18, 34      basic            [2,2,2,2], [3,4,6,3]
ImageNet    50/101/152  bottleneck       [3,4,6,3], [3,4,23,3], [3,8,36,3]
ImageNet    200         bottleneck       [3,24,36,3]
CIFAR       6n+2        basic            [n,n,n]   (16/32/64 filters)
CIFAR pre   9n+2        bottleneck       [n,n,n]   (16/32/64 x 4)
=========  ==========  ===============  ===================================

Layer names: ``stem_conv``, ``stem_bn``, ``stem_relu``, ``stem_pool``, then
``stage{s}_block{b}_{role}`` (``conv1``, ``bn1``, ``shortcut_conv``, ...; each block's
output layer is ``stage{s}_block{b}_out``), ``post_bn``/``post_relu`` (pre-activation
models), ``avg_pool``/``max_pool`` and ``predictions``.
"""

import dataclasses
import json
import os
import sys

from ._compat import get_source_inputs, is_keras_tensor, keras, register
from .layers import BlockSpec, block_parts, bn_layer, check_bottleneck_width, conv_layer, wire_block
from .preprocessing import preprocessing_spec
from .specs import (ATTENTIONS, BLOCKS, BOTTLENECK_ONLY, CIFAR_DEPTHS, CIFAR_FILTERS,  # noqa: F401
                    CIFAR_PREACT_DEPTHS, GROUPED_CONV, IMAGENET_DEPTHS, IMAGENET_FILTERS,
                    MODEL_SHORTCUTS, OUTPUT_STRIDES, POOLINGS, SHORTCUTS, SPEC_OPTIONS,
                    STEM_POOL_PADDINGS, STEMS, STRIDE_BLOCK, STRIDE_ON, USE_BIAS)
from .specs import MAX_CHANNELS, MAX_INPUT_SIZE, check_depth, check_limits, check_stage_count
from .specs import choice as _choice
from .specs import positive_int as _positive_int
from .specs import positive_list as _positive_list
from .weights.loading import checkpoint_options, load_weights

layers = keras.layers


def _stem_stride(stem):
    return 1 if stem == "cifar" else 4


def stage_layout(stem, stackwise_strides, output_stride=None):
    """``[(stride, dilation, first_dilation), ...]`` of each stage, and each stage's output
    stride.

    With ``output_stride``, a stage that would take the network past it keeps stride 1
    and dilates its 3x3 convolutions by the stride it gave up instead (timm's and
    torchvision's ``replace_stride_with_dilation`` rule: the stage's first block uses the
    previous dilation, the others the new one).
    """
    net, dilation, layout, strides = _stem_stride(stem), 1, [], []
    for s in stackwise_strides:
        previous = dilation
        if output_stride is not None and net >= output_stride:
            dilation *= s
            s = 1
        else:
            net *= s
        layout.append((s, dilation, previous))
        strides.append(net)
    return layout, strides


def min_input_size(stem, stackwise_strides, output_stride=None):
    """Smallest spatial size accepted: the network's total downsampling factor."""
    return stage_layout(stem, stackwise_strides, output_stride)[1][-1]


def _check_input_shape(input_shape, minimum):
    if (
        not isinstance(input_shape, (list, tuple))
        or len(input_shape) != 3
        or any(d is not None and (isinstance(d, bool) or not isinstance(d, int)) for d in input_shape)
    ):
        raise ValueError(
            f"input_shape={input_shape!r} is not supported; expected (height, width, channels) "
            "with integer sizes (height and width may be None)"
        )
    h, w, c = input_shape
    if c is None or c < 1:
        raise ValueError(f"input_shape={tuple(input_shape)!r}: channels must be a positive integer")
    if c > MAX_CHANNELS or any(d is not None and d > MAX_INPUT_SIZE for d in (h, w)):
        raise ValueError(f"input_shape={tuple(input_shape)!r} is not supported; at most "
                         f"{MAX_INPUT_SIZE} x {MAX_INPUT_SIZE} pixels and {MAX_CHANNELS} channels")
    for dim_name, d in (("height", h), ("width", w)):
        if d is not None and d < minimum:
            raise ValueError(
                f"input_shape={tuple(input_shape)!r}: {dim_name} {d} is below this network's "
                f"minimum input size {minimum}; accepted: None or at least {minimum}"
            )
    return tuple(input_shape)


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """The options of a :class:`ResNet` as data, checked once and normalised: what
    ``ResNet.get_config`` returns (:meth:`config`), beside the model's name. ``ResNet``
    builds one from its arguments (their defaults are the constructor's) and builds the
    network from it; ``model.spec`` is the model's.

    Besides the fields, a spec knows each stage's ``layout`` (stride, dilation, first
    dilation), each stage's output stride (``stage_strides``), the smallest input it takes
    (``min_input_size``) and its input ``rescaling`` (``{"scale", "offset"}`` or None).
    """

    stackwise_num_blocks: tuple
    stackwise_num_filters: tuple
    stackwise_strides: tuple
    block: str
    stem: str
    stem_filters: int
    shortcut: str
    preact: bool
    zero_init: bool
    stride_on: str
    stride_block: str
    use_bias: object
    bn_epsilon: float
    bn_momentum: float
    residual: bool
    groups: int
    width_per_group: int
    avg_down: bool
    attention: object
    drop_path_rate: float
    output_stride: object
    grouped_conv: str
    stem_pool_padding: str
    include_preprocessing: bool
    preprocessing: object
    include_top: bool
    input_shape: tuple
    pooling: object
    classes: int
    classifier_activation: object

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("stackwise_num_blocks", "stackwise_num_filters", "stackwise_strides"):
            check_stage_count(name, getattr(self, name))  # before a long list is even printed
        blocks = _positive_list("stackwise_num_blocks", self.stackwise_num_blocks)
        put("stackwise_num_blocks", tuple(blocks))
        put("stackwise_num_filters", tuple(_positive_list(
            "stackwise_num_filters", self.stackwise_num_filters, len(blocks))))
        strides = self.stackwise_strides
        put("stackwise_strides", tuple(_positive_list(
            "stackwise_strides", [1] + [2] * (len(blocks) - 1) if strides is None else strides,
            len(blocks))))
        for name, accepted in (("block", BLOCKS), ("stem", STEMS), ("shortcut", MODEL_SHORTCUTS),
                               ("stride_on", STRIDE_ON), ("stride_block", STRIDE_BLOCK),
                               ("use_bias", USE_BIAS), ("pooling", POOLINGS)):
            _choice(name, getattr(self, name), accepted)
        _positive_int("classes", self.classes)
        put("stem_filters", _positive_int("stem_filters", self.stackwise_num_filters[0]
                                          if self.stem_filters is None else self.stem_filters))
        _positive_int("groups", self.groups)
        _positive_int("width_per_group", self.width_per_group)
        for name, accepted in (("attention", ATTENTIONS), ("output_stride", OUTPUT_STRIDES),
                               ("grouped_conv", GROUPED_CONV),
                               ("stem_pool_padding", STEM_POOL_PADDINGS)):
            _choice(name, getattr(self, name), accepted)
        if self.stem_pool_padding != "zeros" and self.stem == "cifar":
            raise ValueError(f"stem_pool_padding={self.stem_pool_padding!r} needs a stem with a "
                             "max-pool; accepted with stem='cifar': 'zeros'")
        rate = self.drop_path_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"drop_path_rate={rate!r} is not supported; expected a number in [0, 1)")
        put("drop_path_rate", float(rate))
        for name in ("preact", "zero_init", "residual", "avg_down", "include_preprocessing",
                     "include_top"):
            put(name, bool(getattr(self, name)))
        if self.block == "basic" and (self.groups != 1 or self.width_per_group != 64):
            raise ValueError(
                f"groups={self.groups}, width_per_group={self.width_per_group}: basic blocks "
                "support only groups=1 and width_per_group=64; use block='bottleneck' for "
                "ResNeXt/Wide ResNet")
        if self.block == "bottleneck":
            for f in self.stackwise_num_filters:
                check_bottleneck_width(f, self.width_per_group, self.groups)
        if self.stem == "deep" and self.stem_filters % 2:
            raise ValueError(f"stem_filters={self.stem_filters} must be even with stem='deep'")
        if self.output_stride is not None and self.stride_block != "first":
            raise ValueError("output_stride needs stride_block='first'")
        check_limits(blocks, self.stackwise_num_filters, self.stem_filters, self.groups,
                     self.width_per_group, self.classes)
        layout, stage_strides = stage_layout(self.stem, self.stackwise_strides, self.output_stride)
        put("layout", tuple(layout))
        put("stage_strides", tuple(stage_strides))
        put("min_input_size", stage_strides[-1])
        put("input_shape", _check_input_shape(
            (None, None, 3) if self.input_shape is None else self.input_shape, self.min_input_size))
        rescaling = None
        if self.include_preprocessing:
            rescaling, reverse = preprocessing_spec(self.preprocessing, self.input_shape[-1])
            if reverse:
                raise ValueError(f"include_preprocessing with preprocessing={self.preprocessing!r} "
                                 "is not supported (it reverses the channels); accepted: torch, "
                                 "tf, none, or a {'scale', 'offset'} dict")
        put("rescaling", rescaling)

    def config(self):
        """The options as ``get_config`` gives them (lists for the stage-wise values and the
        input shape)."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    def block_options(self):
        """The options every block of the network shares (:data:`keras_resnet.specs.SPEC_OPTIONS`)."""
        return {k: getattr(self, k) for k in SPEC_OPTIONS if hasattr(self, k)
                and (self.block == "bottleneck" or k not in BOTTLENECK_ONLY)}


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ResNetSpec))


@register(package="keras_resnet")
class ResNet(keras.Model):
    """A residual network (or its plain counterpart) as a functional Keras model.

    Args:
        stackwise_num_blocks: blocks per stage, e.g. ``[3, 4, 6, 3]``.
        stackwise_num_filters: base width of each stage (a bottleneck block outputs
            ``4x`` that), e.g. ``[64, 128, 256, 512]``.
        stackwise_strides: stride of each stage; default 1 for the first, 2 after.
        block: ``"basic"`` or ``"bottleneck"``.
        stem: ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool), ``"deep"`` (ResNet-C/D: three
            3x3 convs, the first with stride 2, with ``stem_filters / 2``,
            ``stem_filters / 2`` and ``stem_filters`` channels, then the 3x3/2 max-pool) or
            ``"cifar"`` (3x3/1 conv).
        stem_filters: channels of the stem convolution (default: the first stage's
            ``stackwise_num_filters``).
        shortcut: ``"A"`` (parameter free), ``"B"`` (projection where channels change),
            ``"C"`` (projection everywhere) or ``"first"`` (projection on the first block of
            every stage, identity elsewhere: keras-hub's layout); see
            :mod:`keras_resnet.layers`.
        preact: full pre-activation blocks ("Identity Mappings"); the stem is then a bare
            convolution and the last stage is followed by BN-ReLU.
        zero_init: last BN gamma (post-activation) or last conv (pre-activation) of every
            residual branch starts at zero, so identity-shortcut blocks start as the
            identity.
        stride_on: bottleneck stride on the ``"3x3"`` conv (v1.5, torchvision/timm) or the
            first ``"1x1"`` (original paper, keras.applications).
        stride_block: which block of a stage strides, ``"first"`` (usual) or ``"last"``
            (keras.applications ResNetV2).
        use_bias: conv biases: ``False`` (torchvision), ``True`` (keras.applications v1) or
            ``"unnormalized"`` (only convs not directly followed by BN; keras.applications
            v2).
        bn_epsilon, bn_momentum: BatchNormalization settings (PyTorch defaults: 1e-5, 0.9).
        residual: ``False`` builds the plain network (same layers, no shortcuts).
        groups, width_per_group: grouped/wide bottlenecks; the 3x3 conv of a stage with
            ``f`` filters has ``int(f * width_per_group / 64) * groups`` channels in
            ``groups`` groups (ResNeXt-50 32x4d: 32, 4; Wide ResNet-50-2: 1, 128).
        avg_down: ResNet-D projection shortcuts (2x2 average pool, then a 1x1 conv with
            stride 1).
        attention: ``None``, ``"se"`` (squeeze-and-excitation) or ``"eca"`` (efficient
            channel attention) after the last BN of every residual branch.
        drop_path_rate: stochastic depth; block ``i`` of ``n`` drops its residual branch
            with probability ``drop_path_rate * i / (n - 1)`` in training (timm's rule).
        output_stride: ``None`` (no dilation), 8, 16 or 32: the stages past it keep
            stride 1 and dilate instead (segmentation and detection backbones).
        grouped_conv: how grouped convolutions are computed on TensorFlow: ``"auto"``
            (default), ``"native"`` (one grouped op), ``"split"`` (per-group
            convolutions, concatenated) or ``"keras"`` (Keras's XLA route); see
            :class:`keras_resnet.layers.GroupedConv2D`. Same weights and function in each.
        stem_pool_padding: how the stem's 3x3/2 max-pool pads: ``"zeros"`` (default, as
            keras.applications) or ``"-inf"`` (padding never wins the max, as PyTorch and
            keras-hub's ResNetV2). They differ only where a border window is all negative,
            which happens in pre-activation stems (no ReLU before the pool).
        include_preprocessing: put the input preprocessing in the model (a
            ``keras.layers.Rescaling`` named ``preprocessing``), so it takes RGB pixels in
            0..255, as keras.applications' EfficientNetV2 and ConvNeXt do.
        preprocessing: that preprocessing: ``"torch"`` (torchvision/timm weights), ``"tf"``,
            ``"none"`` or a training run's ``{"scale", "offset"}``; see
            :mod:`keras_resnet.preprocessing`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation: as in ``keras.applications``. ``weights`` is None or the
            path of a local file (``.keras``, ``.weights.h5`` or a checkpoint that
            :mod:`keras_resnet.weights` can import). The classifier is float32 under a
            mixed-precision policy.
        name: model name.
    """

    def __init__(
        self,
        stackwise_num_blocks,
        stackwise_num_filters,
        stackwise_strides=None,
        block="basic",
        stem="imagenet",
        stem_filters=None,
        shortcut="B",
        preact=False,
        zero_init=False,
        stride_on="3x3",
        stride_block="first",
        use_bias=False,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        residual=True,
        groups=1,
        width_per_group=64,
        avg_down=False,
        attention=None,
        drop_path_rate=0.0,
        output_stride=None,
        grouped_conv="auto",
        stem_pool_padding="zeros",
        include_preprocessing=False,
        preprocessing="torch",
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name="resnet",
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - {"trainable", "dtype"})
        if unknown:  # as keras.applications: a misspelt argument is an error, not ignored
            raise TypeError(f"ResNet() got an unexpected keyword argument {unknown[0]!r}")
        if input_tensor is not None:
            if not is_keras_tensor(input_tensor):
                raise ValueError(
                    "input_tensor must be a Keras tensor (e.g. from keras.Input); "
                    f"got {type(input_tensor).__name__}"
                )
            shape = tuple(input_tensor.shape[1:])
            if input_shape is not None and tuple(input_shape) != shape:
                raise ValueError(
                    f"input_shape={tuple(input_shape)!r} does not match input_tensor's shape {shape}"
                )
            input_shape = shape
        # Every option checked once, here; the blocks below trust them.
        given = locals()
        spec = ResNetSpec(**{k: given[k] for k in SPEC_FIELDS})
        x = img_input = (input_tensor if input_tensor is not None
                         else keras.Input(shape=spec.input_shape, name="images"))
        if spec.rescaling is not None:
            # Pixels 0..255 in: the scale/offset as a serializable built-in layer.
            x = layers.Rescaling(spec.rescaling["scale"], spec.rescaling["offset"],
                                 name="preprocessing")(x)
        x = _backbone(x, spec)
        if spec.include_top:
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
            x = layers.Dense(
                spec.classes, activation=spec.classifier_activation, dtype="float32",
                name="predictions")(x)
        elif spec.pooling == "avg":
            x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        elif spec.pooling == "max":
            x = layers.GlobalMaxPooling2D(name="max_pool")(x)

        inputs = get_source_inputs(input_tensor) if input_tensor is not None else img_input
        # Keras walks the layer graph recursively; the deepest models (ResNet-1202 has
        # ~3,600 layers) need more than Python's default recursion limit.
        _ensure_recursion_limit(20 * sum(spec.stackwise_num_blocks)
                                * (4 if spec.block == "bottleneck" else 3))
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        self._resnet_spec = spec
        self._resnet_config = spec.config()  # what get_config returns, with the name
        self.min_input_size = spec.min_input_size
        if weights is not None:
            load_weights(self, weights)

    @property
    def spec(self):
        """The model's options (:class:`ResNetSpec`)."""
        return self._resnet_spec

    @property
    def num_stages(self):
        return len(self._resnet_config["stackwise_num_blocks"])

    def stage_output_names(self):
        """Names of the layers whose outputs are the stages' outputs, first to last."""
        blocks = self._resnet_config["stackwise_num_blocks"]
        return [f"stage{s}_block{n}_out" for s, n in enumerate(blocks, start=1)]

    def stage_strides(self):
        """Each stage's output stride (input size / feature map size), first to last."""
        return list(self._resnet_spec.stage_strides)

    @property
    def pretrained_cfg(self):
        """The input configuration of the model's weights (mean, std, interpolation,
        ``crop_pct``, sizes: :func:`keras_resnet.create_model`, :func:`keras_resnet.from_preset`),
        or None; saved in the config, so a ``.keras`` file keeps it. A copy: assign to change it."""
        text = getattr(self, "_pretrained_cfg_json", None)
        return None if text is None else json.loads(text)

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg):
        if cfg is not None and not isinstance(cfg, dict):
            raise ValueError(f"pretrained_cfg={cfg!r} is not supported; expected a dict or None")
        # Kept as JSON text: plain data in the config, nothing for Keras to track.
        self._pretrained_cfg_json = None if cfg is None else json.dumps(dict(cfg))

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self._resnet_config}
        if self.pretrained_cfg is not None:
            config["pretrained_cfg"] = self.pretrained_cfg
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # A config never makes the model open a file: a "weights" entry (a path inside a
        # .keras file) is dropped, as is an input tensor; the caller loads weights.
        config.pop("weights", None)
        config.pop("input_tensor", None)
        if isinstance(config.get("input_shape"), list):
            config["input_shape"] = tuple(config["input_shape"])
        trainable = config.pop("trainable", True)
        pretrained_cfg = config.pop("pretrained_cfg", None)
        model = cls(**config)
        model.trainable = trainable
        model.pretrained_cfg = pretrained_cfg
        return model


def _ensure_recursion_limit(needed):
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _backbone(x, spec):
    """The stem, the stages of blocks and (pre-activation) the final BN-ReLU of ``spec``."""
    options = spec.block_options()
    # A block spec for the stem convolution, so it shares the conv/BN settings.
    stem_spec = BlockSpec("basic", spec.stem_filters, spec.input_shape[-1], checked=True,
                          **{k: v for k, v in options.items() if k not in BOTTLENECK_ONLY})
    x = _stem(x, spec.stem, spec.stem_filters, stem_spec, spec.stem_pool_padding)
    blocks = spec.stackwise_num_blocks
    total, index = sum(blocks), 0
    for s, (n_blocks, f, (stride, dilation, first)) in enumerate(
            zip(blocks, spec.stackwise_num_filters, spec.layout), start=1):
        stride_at = 0 if spec.stride_block == "first" else n_blocks - 1
        for b in range(n_blocks):
            rate = spec.drop_path_rate * index / (total - 1) if total > 1 else 0.0
            index += 1
            if spec.shortcut == "first":  # a projection on the stage's first block only
                options["shortcut"] = "C" if b == 0 else "B"
            block_spec = BlockSpec(
                spec.block, f, int(x.shape[-1]), stride if b == stride_at else 1, checked=True,
                dilation=dilation, first_dilation=first if b == 0 else dilation,
                drop_path=rate, **options,
            )
            x = wire_block(x, block_parts(block_spec, f"stage{s}_block{b + 1}_"), block_spec)
    if spec.preact:
        x = bn_layer(stem_spec, "post_bn")(x)
        x = layers.ReLU(name="post_relu")(x)
    return x


def _stem(x, stem, filters, spec, pool_padding="zeros"):
    """The stem: ImageNet 7x7/2 conv + 3x3/2 max-pool, deep (3x3/2, 3x3, 3x3 convs) +
    3x3/2 max-pool, or CIFAR 3x3 conv."""
    if stem == "deep":
        # timm's "deep" stem: conv1.0/1.1 (conv, BN), conv1.3/1.4, conv1.6, then bn1.
        half = filters // 2
        x = layers.ZeroPadding2D(1, name="stem_pad")(x)
        x = conv_layer(spec, half, 3, 2, "stem_conv1", normalized=True)(x)
        x = bn_layer(spec, "stem_bn1")(x)
        x = layers.ReLU(name="stem_relu1")(x)
        x = conv_layer(spec, half, 3, 1, "stem_conv2", normalized=True)(x)
        x = bn_layer(spec, "stem_bn2")(x)
        x = layers.ReLU(name="stem_relu2")(x)
        x = conv_layer(spec, filters, 3, 1, "stem_conv3", normalized=not spec.preact)(x)
        if not spec.preact:
            x = bn_layer(spec, "stem_bn")(x)
            x = layers.ReLU(name="stem_relu")(x)
        return _stem_pool(x, pool_padding)
    kernel, strides = (7, 2) if stem == "imagenet" else (3, 1)
    if strides > 1:
        x = layers.ZeroPadding2D(kernel // 2, name="stem_pad")(x)
    # The stem conv is followed by BN unless the blocks are pre-activation ones.
    x = conv_layer(spec, filters, kernel, strides, "stem_conv", normalized=not spec.preact)(x)
    if not spec.preact:
        x = bn_layer(spec, "stem_bn")(x)
        x = layers.ReLU(name="stem_relu")(x)
    if stem == "imagenet":
        # Zero padding equals PyTorch's -inf padding after a ReLU, and is what
        # keras.applications does in both its v1 and v2 stems.
        x = _stem_pool(x, pool_padding)
    return x


def _stem_pool(x, padding):
    """The stem's 3x3/2 max-pool with one pixel of padding: zeros, or "-inf" (padding never
    wins), built as a 3x3 stride-1 "same" max-pool (which ignores its border) sampled every
    second pixel: the same windows and sizes, with built-in layers only."""
    if padding == "-inf":
        x = layers.MaxPooling2D(3, strides=1, padding="same", name="stem_pool_window")(x)
        return layers.MaxPooling2D(1, strides=2, name="stem_pool")(x)
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def feature_extractor(model, stages=None):
    """A model that returns the output of each stage, for detection/segmentation.

    Returns a ``keras.Model`` with the same input whose output is a dict
    ``{"stage1": ..., "stage2": ..., ...}`` (strides 4, 8, 16, 32 for the ImageNet
    layout; with ``output_stride=8`` they are 4, 8, 8, 8). The returned model's
    ``feature_strides`` attribute maps each output to its true stride. ``stages`` picks a
    subset, e.g. ``[2, 3, 4]``. For pre-activation models a
    stage's output is its last block's sum (not normalised), except the last stage, which
    passes through ``post_bn``/``post_relu`` when ``include_top=False`` is what you want:
    use ``model.get_layer("post_relu")`` for that.
    """
    if not isinstance(model, ResNet):
        raise ValueError(f"feature_extractor needs a keras_resnet ResNet model; got {type(model).__name__}")
    names = model.stage_output_names()
    stages = list(range(1, len(names) + 1)) if stages is None else list(stages)
    for s in stages:
        if not isinstance(s, int) or not 1 <= s <= len(names):
            raise ValueError(f"stages={stages!r}: accepted stage numbers are 1..{len(names)}")
    outputs = {f"stage{s}": model.get_layer(names[s - 1]).output for s in stages}
    extractor = keras.Model(model.input, outputs, name=f"{model.name}_features")
    # The output stride of each returned feature map (dilated stages keep their input's).
    all_strides = model.stage_strides()
    extractor.feature_strides = {f"stage{s}": all_strides[s - 1] for s in stages}
    return extractor


# ----------------------------------------------------------------------------------------
# Families and named constructors


def resnet_imagenet(depth, preact=False, plain=False, **kwargs):
    """ImageNet ResNet-``depth`` (18, 34, 50, 101, 152, 200), torchvision layout."""
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(
            f"depth={depth!r} is not supported; accepted ImageNet depths: {sorted(IMAGENET_DEPTHS)}"
        )
    block, blocks = IMAGENET_DEPTHS[depth]
    prefix = "plain" if plain else ("preact_resnet" if preact else "resnet")
    kwargs.setdefault("name", f"{prefix}{depth}")
    kwargs.setdefault("stem", "imagenet")
    return ResNet(blocks, IMAGENET_FILTERS, block=block, preact=preact, residual=not plain, **kwargs)


def resnet_cifar(depth, preact=False, plain=False, **kwargs):
    """CIFAR ResNet-``depth``.

    Post-activation: 6n+2 basic blocks, 16/32/64 filters, option-A shortcuts by default
    (He et al. 2015, section 4.2): depths 20, 32, 44, 56, 110, 1202 (and any 6n+2).
    Pre-activation ("Identity Mappings"): 110 is 6n+2 basic; 164 and 1001 (any 9n+2 not
    of the 6n+2 form) are bottleneck with 16/32/64 x 4 filters; projection shortcuts.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8:
        raise ValueError(f"depth={depth!r} is not supported; accepted CIFAR depths: 6n+2 or 9n+2")
    check_depth(depth)
    if preact and depth in (164, 1001) or preact and (depth - 2) % 6 and (depth - 2) % 9 == 0:
        block, n = "bottleneck", (depth - 2) // 9
    elif (depth - 2) % 6 == 0:
        block, n = "basic", (depth - 2) // 6
    else:
        accepted = "6n+2 (e.g. 20, 32, 44, 56, 110, 1202)"
        if preact:
            accepted += " or 9n+2 (e.g. 164, 1001)"
        raise ValueError(f"depth={depth!r} is not supported; accepted CIFAR depths: {accepted}")
    kwargs.setdefault("shortcut", "B" if preact else "A")
    if kwargs.get("input_tensor") is None:
        kwargs.setdefault("input_shape", (32, 32, 3))
    kwargs.setdefault("classes", 10)
    prefix = "plain_cifar" if plain else ("preact_resnet_cifar" if preact else "resnet_cifar")
    kwargs.setdefault("name", f"{prefix}{depth}")
    return ResNet(
        [n, n, n], CIFAR_FILTERS, block=block, stem="cifar", stem_filters=16, preact=preact,
        residual=not plain, **kwargs,
    )


# The named constructors take the arguments of keras.applications' (include_top, weights,
# input_tensor, input_shape, pooling, classes, classifier_activation), ``plain=True`` (the
# plain network, no shortcuts) and any other keyword argument of ``ResNet``.


def _named(kwargs, name, options):
    for key in ("input_shape", "classes"):
        if key in kwargs and kwargs[key] is None:
            del kwargs[key]  # None: the family's default
    for key, value in options.items():
        kwargs.setdefault(key, value)
    if name is not None and not kwargs.get("plain", False):
        kwargs.setdefault("name", name)
    return kwargs


def _imagenet(depth, preact, kwargs, name=None, **options):
    weights = kwargs.get("weights")
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        # A checkpoint fixes its layout (keras.applications v1/v2, torchvision) and its
        # classifier size: build those unless the caller chose otherwise.
        for key, value in checkpoint_options(weights).items():
            kwargs.setdefault(key, value)
    return resnet_imagenet(depth, preact=preact, **_named(kwargs, name, options))


def _cifar(depth, preact, kwargs):
    return resnet_cifar(depth, preact=preact, **_named(kwargs, None, {}))


def ResNet18(**kwargs):
    """ImageNet ResNet-18 (torchvision layout)."""
    return _imagenet(18, False, kwargs)


def ResNet34(**kwargs):
    """ImageNet ResNet-34 (torchvision layout)."""
    return _imagenet(34, False, kwargs)


def ResNet50(**kwargs):
    """ImageNet ResNet-50 (torchvision layout)."""
    return _imagenet(50, False, kwargs)


def ResNet101(**kwargs):
    """ImageNet ResNet-101 (torchvision layout)."""
    return _imagenet(101, False, kwargs)


def ResNet152(**kwargs):
    """ImageNet ResNet-152 (torchvision layout)."""
    return _imagenet(152, False, kwargs)


def ResNet200(**kwargs):
    """ImageNet ResNet-200 (torchvision layout)."""
    return _imagenet(200, False, kwargs)


def PreActResNet18(**kwargs):
    """ImageNet pre-activation ResNet-18."""
    return _imagenet(18, True, kwargs)


def PreActResNet34(**kwargs):
    """ImageNet pre-activation ResNet-34."""
    return _imagenet(34, True, kwargs)


def PreActResNet50(**kwargs):
    """ImageNet pre-activation ResNet-50."""
    return _imagenet(50, True, kwargs)


def PreActResNet101(**kwargs):
    """ImageNet pre-activation ResNet-101."""
    return _imagenet(101, True, kwargs)


def PreActResNet152(**kwargs):
    """ImageNet pre-activation ResNet-152."""
    return _imagenet(152, True, kwargs)


def PreActResNet200(**kwargs):
    """ImageNet pre-activation ResNet-200."""
    return _imagenet(200, True, kwargs)


def ResNet20CIFAR(**kwargs):
    """CIFAR ResNet-20 (option A)."""
    return _cifar(20, False, kwargs)


def ResNet32CIFAR(**kwargs):
    """CIFAR ResNet-32 (option A)."""
    return _cifar(32, False, kwargs)


def ResNet44CIFAR(**kwargs):
    """CIFAR ResNet-44 (option A)."""
    return _cifar(44, False, kwargs)


def ResNet56CIFAR(**kwargs):
    """CIFAR ResNet-56 (option A)."""
    return _cifar(56, False, kwargs)


def ResNet110CIFAR(**kwargs):
    """CIFAR ResNet-110 (option A)."""
    return _cifar(110, False, kwargs)


def ResNet1202CIFAR(**kwargs):
    """CIFAR ResNet-1202 (option A)."""
    return _cifar(1202, False, kwargs)


def PreActResNet110CIFAR(**kwargs):
    """CIFAR pre-activation ResNet-110."""
    return _cifar(110, True, kwargs)


def PreActResNet164CIFAR(**kwargs):
    """CIFAR pre-activation ResNet-164."""
    return _cifar(164, True, kwargs)


def PreActResNet1001CIFAR(**kwargs):
    """CIFAR pre-activation ResNet-1001."""
    return _cifar(1001, True, kwargs)


def ResNet18D(**kwargs):
    """ResNet-18-D: deep stem, average-pool downsampling (timm resnet18d)."""
    return _imagenet(18, False, kwargs, name='resnet18d', stem='deep', avg_down=True)


def ResNet34D(**kwargs):
    """ResNet-34-D: deep stem, average-pool downsampling (timm resnet34d)."""
    return _imagenet(34, False, kwargs, name='resnet34d', stem='deep', avg_down=True)


def ResNet50D(**kwargs):
    """ResNet-50-D: deep stem, average-pool downsampling (timm resnet50d)."""
    return _imagenet(50, False, kwargs, name='resnet50d', stem='deep', avg_down=True)


def ResNet101D(**kwargs):
    """ResNet-101-D: deep stem, average-pool downsampling (timm resnet101d)."""
    return _imagenet(101, False, kwargs, name='resnet101d', stem='deep', avg_down=True)


def ResNet152D(**kwargs):
    """ResNet-152-D: deep stem, average-pool downsampling (timm resnet152d)."""
    return _imagenet(152, False, kwargs, name='resnet152d', stem='deep', avg_down=True)


def ResNet200D(**kwargs):
    """ResNet-200-D: deep stem, average-pool downsampling (timm resnet200d)."""
    return _imagenet(200, False, kwargs, name='resnet200d', stem='deep', avg_down=True)


def ResNeXt50_32x4d(**kwargs):
    """ResNeXt-50 32x4d (Xie et al. 2017) (torchvision resnext50_32x4d)."""
    return _imagenet(50, False, kwargs, name='resnext50_32x4d', groups=32, width_per_group=4)


def ResNeXt101_32x8d(**kwargs):
    """ResNeXt-101 32x8d (torchvision resnext101_32x8d)."""
    return _imagenet(101, False, kwargs, name='resnext101_32x8d', groups=32, width_per_group=8)


def ResNeXt101_64x4d(**kwargs):
    """ResNeXt-101 64x4d (torchvision resnext101_64x4d)."""
    return _imagenet(101, False, kwargs, name='resnext101_64x4d', groups=64, width_per_group=4)


def WideResNet50_2(**kwargs):
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016) (torchvision wide_resnet50_2)."""
    return _imagenet(50, False, kwargs, name='wide_resnet50_2', groups=1, width_per_group=128)


def WideResNet101_2(**kwargs):
    """Wide ResNet-101-2 (torchvision wide_resnet101_2)."""
    return _imagenet(101, False, kwargs, name='wide_resnet101_2', groups=1, width_per_group=128)


def SEResNet50(**kwargs):
    """SE-ResNet-50: squeeze-and-excitation blocks (timm seresnet50)."""
    return _imagenet(50, False, kwargs, name='seresnet50', attention='se')


def SEResNet101(**kwargs):
    """SE-ResNet-101: squeeze-and-excitation blocks (timm seresnet101)."""
    return _imagenet(101, False, kwargs, name='seresnet101', attention='se')


def ECAResNet50D(**kwargs):
    """ECA-ResNet-50-D: ResNet-50-D with efficient channel attention
    (timm ecaresnet50d)."""
    return _imagenet(50, False, kwargs, name='ecaresnet50d', stem='deep', avg_down=True, attention='eca')


NAMED_MODELS = {f.__name__: f for f in (
    ResNet18, ResNet34, ResNet50, ResNet101, ResNet152, ResNet200,
    PreActResNet18, PreActResNet34, PreActResNet50, PreActResNet101, PreActResNet152, PreActResNet200,
    ResNet20CIFAR, ResNet32CIFAR, ResNet44CIFAR, ResNet56CIFAR, ResNet110CIFAR, ResNet1202CIFAR,
    PreActResNet110CIFAR, PreActResNet164CIFAR, PreActResNet1001CIFAR,
)}
# The family beyond the 2015/2016 papers: options of ``ResNet``, never copied blocks.
VARIANT_MODELS = {f.__name__: f for f in (
    ResNet18D, ResNet34D, ResNet50D, ResNet101D, ResNet152D, ResNet200D,
    ResNeXt50_32x4d, ResNeXt101_32x8d, ResNeXt101_64x4d, WideResNet50_2, WideResNet101_2,
    SEResNet50, SEResNet101, ECAResNet50D,
)}
