"""Image augmentation ops of modern ImageNet recipes, in pure TensorFlow.

Every op works on one ``HxWxC`` image (``uint8``, or ``float32`` with values in 0..255) and
returns the input's dtype and shape. They are graph-safe (usable inside ``tf.data`` maps and
``tf.function``) and draw nothing from Python: the random policies take a stateless ``seed``
(an int32/int64 tensor of shape ``[2]``, as ``tf.random.stateless_*`` do), so the same seed
gives the same pixels.

The deterministic ops follow ``torchvision.transforms.v2.functional`` on uint8 tensors
(which follows PIL): the same formulas, the same truncation to integers. The random
policies follow timm (:func:`rand_augment`, ``rand-mM-mstdS-inc1``) and torchvision
(:func:`trivial_augment_wide`, :func:`random_erasing` as timm's ``RandomErasing``).
``docs/augmentation.md`` lists each op's measured agreement with torchvision.
"""

import math
import re

import tensorflow as tf

from .constants import IMAGENET_MEAN, IMAGENET_STD

_INTERPOLATIONS = ("nearest", "bilinear")


# --------------------------------------------------------------------------- helpers

def _to_float(image):
    return tf.cast(image, tf.float32)


def _truncate(x, dtype):
    """Clamp to 0..255 and return ``dtype``; integers are truncated, as PIL and torchvision
    do for uint8 blends (``tensor.clamp(0, 255).to(uint8)``)."""
    x = tf.clip_by_value(x, 0.0, 255.0)
    if dtype.is_integer:
        return tf.cast(tf.floor(x), dtype)
    return tf.cast(x, dtype)


def _round(x, dtype):
    x = tf.clip_by_value(x, 0.0, 255.0)
    if dtype.is_integer:
        return tf.cast(tf.round(x), dtype)
    return tf.cast(x, dtype)


def _fill_vector(fill, channels):
    fill = tf.cast(fill, tf.float32)
    return tf.broadcast_to(tf.reshape(fill, [-1]), [channels]) if fill.shape.rank else (
        tf.fill([channels], fill))


def _affine(image, matrix, fill, interpolation):
    """Resample ``image`` with the inverse map ``matrix`` (six numbers ``a, b, c, d, e, f``:
    output point ``(u, v)`` reads input point ``(a u + b v + c, d u + e v + f)``), in
    continuous coordinates where pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``, as PIL's
    ``Image.transform`` and torchvision's ``affine`` use. Points outside read ``fill``."""
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported; accepted: "
                         f"{', '.join(_INTERPOLATIONS)}")
    dtype = image.dtype
    x = _to_float(image)
    channels = tf.shape(x)[-1]
    fill = _fill_vector(fill, channels)
    a, b, c, d, e, f = [tf.cast(m, tf.float32) for m in matrix]
    # TensorFlow's projective transform puts pixel centres at integer coordinates.
    transform = tf.stack([a, b, a * 0.5 + b * 0.5 + c - 0.5,
                          d, e, d * 0.5 + e * 0.5 + f - 0.5, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=(x - fill)[None], transforms=transform[None], output_shape=tf.shape(x)[:2],
        fill_value=0.0, interpolation=interpolation.upper(), fill_mode="CONSTANT")[0]
    out = tf.ensure_shape(out + fill, image.shape)
    return _round(out, dtype)


def _size(image):
    shape = tf.shape(image)
    return tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)


def _grayscale(x, dtype):
    """torchvision's ``rgb_to_grayscale`` weights; floored for integer images, as its
    ``adjust_saturation``/``adjust_contrast`` do."""
    if x.shape[-1] == 1:
        return x
    gray = 0.2989 * x[..., 0:1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]
    return tf.floor(gray) if dtype.is_integer else gray


def _fma(a, b, c):
    """``a + b * c`` rounded once to float32 (a fused multiply-add), as torchvision's
    ``tensor.add_(other, alpha=...)`` computes it on x86-64 CPUs: the product of a float32
    and a pixel value is exact in float64."""
    wide = tf.cast(a, tf.float64) + tf.cast(b, tf.float64) * tf.cast(c, tf.float64)
    return tf.cast(wide, tf.float32)


def _blend(x, degenerate, factor, dtype):
    """``factor * x + (1 - factor) * degenerate`` with torchvision's rounding
    (``x.mul(factor).add_(degenerate, alpha=1 - factor)``), clamped and truncated."""
    factor = tf.cast(factor, tf.float32)
    return _truncate(_fma(x * factor, 1.0 - factor, degenerate), dtype)


# --------------------------------------------------------------------------- geometric ops

def rotate(image, degrees, fill=128, interpolation="nearest"):
    """Rotate counter-clockwise by ``degrees`` about the image centre (PIL ``Image.rotate``,
    torchvision ``rotate``); corners read ``fill``."""
    h, w = _size(image)
    t = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(t), tf.sin(t)
    cx, cy = w / 2.0, h / 2.0
    matrix = (cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)
    return _affine(image, matrix, fill, interpolation)


def shear_x(image, factor, fill=128, interpolation="nearest"):
    """Output ``(u, v)`` reads input ``(u + factor v, v)`` about the top-left corner: PIL's
    ``AFFINE (1, factor, 0, 0, 1, 0)`` (timm's ``ShearX``), torchvision's ``affine`` with
    ``shear=[degrees(atan(factor)), 0]`` and ``center=[0, 0]``."""
    return _affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill, interpolation)


def shear_y(image, factor, fill=128, interpolation="nearest"):
    """Output ``(u, v)`` reads input ``(u, v + factor u)`` (see :func:`shear_x`)."""
    return _affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill, interpolation)


def translate_x(image, pixels, fill=128, interpolation="nearest"):
    """Move the content right by ``pixels`` (left when negative), as torchvision's
    ``affine(translate=[pixels, 0])``."""
    return _affine(image, (1.0, 0.0, -tf.cast(pixels, tf.float32), 0.0, 1.0, 0.0), fill,
                   interpolation)


def translate_y(image, pixels, fill=128, interpolation="nearest"):
    """Move the content down by ``pixels`` (up when negative)."""
    return _affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, -tf.cast(pixels, tf.float32)), fill,
                   interpolation)


# --------------------------------------------------------------------------- colour ops

def posterize(image, bits):
    """Keep the ``bits`` (0..8) most significant bits of each value."""
    dtype = image.dtype
    x = tf.cast(tf.clip_by_value(tf.floor(_to_float(image)), 0.0, 255.0), tf.int32)
    shift = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    x = tf.bitwise.left_shift(tf.bitwise.right_shift(x, shift), shift)
    return tf.cast(x, dtype)


def solarize(image, threshold):
    """Invert every value ``>= threshold`` (``threshold`` 256 leaves the image alone)."""
    x = _to_float(image)
    out = tf.where(x >= tf.cast(threshold, tf.float32), 255.0 - x, x)
    return tf.cast(out, image.dtype)


def solarize_add(image, addition, threshold=128):
    """timm's ``SolarizeAdd``: add ``addition`` to every value below ``threshold``, capped
    at 255."""
    x = _to_float(image)
    out = tf.where(x < tf.cast(threshold, tf.float32),
                   tf.minimum(255.0, x + tf.cast(addition, tf.float32)), x)
    return tf.cast(out, image.dtype)


def invert(image):
    return tf.cast(255.0 - _to_float(image), image.dtype)


def equalize(image):
    """Histogram equalization per channel, PIL's algorithm (``ImageOps.equalize``), which
    torchvision reproduces exactly. Float images are rounded to integer levels first."""
    dtype = image.dtype
    x = tf.cast(tf.clip_by_value(tf.round(_to_float(image)), 0.0, 255.0), tf.int32)
    channels = tf.shape(x)[-1]
    flat = tf.transpose(tf.reshape(x, [-1, channels]))  # [C, N]
    n = tf.shape(flat)[1]
    offsets = tf.range(channels)[:, None] * 256
    hist = tf.math.bincount(tf.reshape(flat + offsets, [-1]), minlength=256 * channels,
                            maxlength=256 * channels)
    hist = tf.reshape(hist, [channels, 256])
    top = tf.reduce_max(flat, axis=1)
    step = (n - tf.gather(hist, top, batch_dims=1)) // 255  # [C]
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    safe = tf.maximum(step, 1)[:, None]
    lut = tf.minimum((cum + (step // 2)[:, None]) // safe, 255)
    mapped = tf.gather(lut, flat, batch_dims=1)
    out = tf.where((step > 0)[:, None], mapped, flat)
    out = tf.reshape(tf.transpose(out), tf.shape(image))
    return tf.cast(out, dtype)


def autocontrast(image):
    """Stretch each channel to 0..255 (PIL's ``autocontrast`` with no cutoff)."""
    dtype = image.dtype
    x = _to_float(image)
    lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
    flat = tf.equal(hi, lo)
    inv_scale = tf.where(flat, 1.0, (hi - lo) * (1.0 / 255.0))
    lo = tf.where(flat, 0.0, lo)
    return _truncate((x - lo) / inv_scale, dtype)


def color(image, factor):
    """Saturation: blend with the grayscale image (0 gray, 1 unchanged, >1 more colour)."""
    x = _to_float(image)
    return _blend(x, _grayscale(x, image.dtype), factor, image.dtype)


def contrast(image, factor):
    """Blend with the mean of the grayscale image (0 a flat gray, 1 unchanged)."""
    x = _to_float(image)
    mean = tf.reduce_mean(_grayscale(x, image.dtype))
    return _blend(x, mean, factor, image.dtype)


def brightness(image, factor):
    """Multiply by ``factor`` (blend with black)."""
    return _truncate(_to_float(image) * tf.cast(factor, tf.float32), image.dtype)


def sharpness(image, factor):
    """Blend with PIL's ``SMOOTH`` filter (3x3, centre 5, others 1, divided by 13); the
    one-pixel border keeps its values (0 smooth, 1 unchanged, >1 sharper)."""
    dtype = image.dtype
    x = _to_float(image)
    channels = x.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], "VALID")[0]
    if dtype.is_integer:
        blurred = tf.round(blurred)
    blurred = tf.pad(blurred, [[1, 1], [1, 1], [0, 0]])
    shape = tf.shape(x)
    rows = tf.range(shape[0])[:, None, None]
    cols = tf.range(shape[1])[None, :, None]
    inside = (rows > 0) & (rows < shape[0] - 1) & (cols > 0) & (cols < shape[1] - 1)
    degenerate = tf.where(inside, blurred, x)
    factor = tf.cast(factor, tf.float32)
    return _truncate(_fma(x, 1.0 - factor, degenerate - x), dtype)


def erase(image, top, left, height, width, value):
    """Set the box ``[top, top+height) x [left, left+width)`` to ``value``: a number, one
    number per channel, or a tensor of the image's shape whose pixels inside the box are
    used (torchvision's ``erase``)."""
    dtype = image.dtype
    shape = tf.shape(image)
    rows = tf.range(shape[0])[:, None, None]
    cols = tf.range(shape[1])[None, :, None]
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    box = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    value = tf.cast(value, dtype)
    return tf.ensure_shape(tf.where(box, value, image), image.shape)


# --------------------------------------------------------------------------- RandAugment

# timm's _RAND_INCREASING_TRANSFORMS, in its order; the level maps follow timm's LEVEL_TO_ARG
# for these names (``_LEVEL_DENOM`` 10, ``translate_pct`` 0.45).
RAND_AUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
    "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
    "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)
# Ops whose argument timm negates with probability 1/2.
_RAND_SIGNED = {"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


def rand_augment_level(name, magnitude, sign=1.0, translate_pct=0.45):
    """The argument timm's RandAugment gives op ``name`` at ``magnitude`` (0..10, a float
    after the noise), with ``sign`` (+1 or -1) as the random negation of signed ops.
    Translations are a fraction of the image side. Returns a float32 tensor."""
    m = tf.cast(magnitude, tf.float32) / 10.0
    sign = tf.cast(sign, tf.float32)
    if name in ("AutoContrast", "Equalize", "Invert"):
        return tf.constant(0.0)
    if name == "Rotate":
        return sign * m * 30.0
    if name == "PosterizeIncreasing":
        return 4.0 - tf.floor(m * 4.0)
    if name == "SolarizeIncreasing":
        return 256.0 - tf.minimum(256.0, tf.floor(m * 256.0))
    if name == "SolarizeAdd":
        return tf.minimum(128.0, tf.floor(m * 110.0))
    if name.endswith("Increasing"):  # Color, Contrast, Brightness, Sharpness
        return tf.maximum(0.1, 1.0 + sign * m * 0.9)
    if name in ("ShearX", "ShearY"):
        return sign * m * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * m * translate_pct
    raise ValueError(f"unknown RandAugment op {name!r}; accepted: {', '.join(RAND_AUGMENT_OPS)}")


def _rand_op(name, image, arg, fill, interpolation):
    if name == "AutoContrast":
        return autocontrast(image)
    if name == "Equalize":
        return equalize(image)
    if name == "Invert":
        return invert(image)
    if name == "Rotate":
        return rotate(image, arg, fill, interpolation)
    if name == "PosterizeIncreasing":
        return posterize(image, tf.cast(arg, tf.int32))
    if name == "SolarizeIncreasing":
        return solarize(image, arg)
    if name == "SolarizeAdd":
        return solarize_add(image, arg)
    if name == "ColorIncreasing":
        return color(image, arg)
    if name == "ContrastIncreasing":
        return contrast(image, arg)
    if name == "BrightnessIncreasing":
        return brightness(image, arg)
    if name == "SharpnessIncreasing":
        return sharpness(image, arg)
    if name == "ShearX":
        return shear_x(image, arg, fill, interpolation)
    if name == "ShearY":
        return shear_y(image, arg, fill, interpolation)
    # timm's translate_x_rel moves the content left (up) for a positive argument
    h, w = _size(image)
    if name == "TranslateXRel":
        return translate_x(image, -arg * w, fill, interpolation)
    return translate_y(image, -arg * h, fill, interpolation)


def rand_augment_plan(seed, num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.5,
                      magnitude_max=10):
    """The draws :func:`rand_augment` makes for ``seed``: ``(op_index, applied, magnitude,
    sign)``, each a tensor of shape ``[num_ops]``. Ops are chosen uniformly with
    replacement; each is applied with probability ``prob``; its magnitude is
    ``N(magnitude, magnitude_std)`` (uniform in ``[0, magnitude]`` when ``magnitude_std``
    is infinite or above 100, as timm), clipped to ``[0, magnitude_max]``; ``sign`` is
    -1 or +1 with probability 1/2."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    shape = [num_ops]
    op_index = tf.random.stateless_uniform(shape, seeds[0], 0, len(RAND_AUGMENT_OPS), tf.int32)
    applied = tf.random.stateless_uniform(shape, seeds[1]) < prob
    m = float(magnitude)
    if magnitude_std == float("inf") or magnitude_std > 100:
        mags = tf.random.stateless_uniform(shape, seeds[2], 0.0, m)
    elif magnitude_std > 0:
        mags = m + magnitude_std * tf.random.stateless_normal(shape, seeds[2])
    else:
        mags = tf.fill(shape, m)
    mags = tf.clip_by_value(mags, 0.0, float(magnitude_max))
    sign = tf.where(tf.random.stateless_uniform(shape, seeds[3]) < 0.5, -1.0, 1.0)
    return op_index, applied, mags, sign


def rand_augment(image, seed, num_ops=2, magnitude=9, magnitude_std=0.5, increasing=True,
                 fill=128, prob=0.5, magnitude_max=10, interpolation="bilinear"):
    """timm's RandAugment ``rand-m{magnitude}-mstd{magnitude_std}-inc1-n{num_ops}``:
    ``num_ops`` ops drawn uniformly (with replacement) from :data:`RAND_AUGMENT_OPS`, each
    applied with probability ``prob`` (timm's 0.5) at a noisy magnitude (see
    :func:`rand_augment_plan`). Geometric ops use ``interpolation`` and ``fill`` (a number
    or one per channel; timm fills with the mean colour and picks bilinear or bicubic at
    random). Only timm's "increasing" op set is implemented."""
    if not increasing:
        raise ValueError("rand_augment supports only increasing=True (timm's inc1 op set)")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported; accepted: "
                         f"{', '.join(_INTERPOLATIONS)}")
    op_index, applied, mags, sign = rand_augment_plan(
        seed, num_ops, magnitude, magnitude_std, prob, magnitude_max)
    for i in range(num_ops):
        def branch(name, i=i):
            def apply():
                arg = rand_augment_level(name, mags[i], sign[i])
                return _rand_op(name, image, arg, fill, interpolation)
            return apply
        branches = [branch(name) for name in RAND_AUGMENT_OPS]
        augmented = tf.switch_case(op_index[i], branches)
        image = tf.ensure_shape(tf.where(applied[i], augmented, image), image.shape)
    return image


_RAND_KEYS = {"n": ("num_ops", int), "m": ("magnitude", float), "mstd": ("magnitude_std", float),
              "inc": ("increasing", int), "p": ("prob", float), "mmax": ("magnitude_max", float)}


def parse_rand_augment(spec):
    """``"rand-m9-mstd0.5-inc1"`` -> keyword arguments of :func:`rand_augment`.

    Keys as timm's: ``m`` magnitude, ``n`` number of ops, ``mstd`` magnitude noise (above
    100: uniform), ``inc`` 1 for the increasing op set (the only one implemented), ``p``
    probability of each op, ``mmax`` magnitude cap. Unset keys keep timm's defaults
    (``n`` 2, ``m`` 10, ``mstd`` 0, ``p`` 0.5)."""
    parts = str(spec).split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec {spec!r} must start with 'rand-' "
                         f"(e.g. rand-m9-mstd0.5-inc1)")
    kwargs = {"num_ops": 2, "magnitude": 10.0, "magnitude_std": 0.0, "increasing": False,
              "prob": 0.5, "magnitude_max": 10.0}
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(\d+(?:\.\d*)?|\.\d+)", part)
        if not match or match.group(1) not in _RAND_KEYS:
            raise ValueError(f"RandAugment spec {spec!r}: bad key {part!r}; accepted keys: "
                             f"{', '.join(k + 'N' for k in _RAND_KEYS)}")
        key, (name, kind) = match.group(1), _RAND_KEYS[match.group(1)]
        kwargs[name] = kind(float(match.group(2))) if kind is int else float(match.group(2))
    kwargs["increasing"] = bool(kwargs["increasing"])
    if kwargs["magnitude_std"] > 100:
        kwargs["magnitude_std"] = float("inf")
    if not kwargs["increasing"]:
        raise ValueError(f"RandAugment spec {spec!r}: only the increasing op set is supported; "
                         f"add -inc1")
    return kwargs


# --------------------------------------------------------------------------- TrivialAugmentWide

TRIVIAL_AUGMENT_OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
                       "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize",
                       "AutoContrast", "Equalize")


def trivial_augment_space(num_bins=31):
    """torchvision's ``TrivialAugmentWide`` space: ``{name: (magnitudes, signed)}`` with
    ``magnitudes`` a list of floats (one entry for ops without a magnitude)."""
    def linspace(lo, hi):
        return [lo + (hi - lo) * i / (num_bins - 1) for i in range(num_bins)]
    posterize_bits = [float(8 - round(i / ((num_bins - 1) / 6))) for i in range(num_bins)]
    return {
        "Identity": ([0.0], False),
        "ShearX": (linspace(0.0, 0.99), True),
        "ShearY": (linspace(0.0, 0.99), True),
        "TranslateX": (linspace(0.0, 32.0), True),
        "TranslateY": (linspace(0.0, 32.0), True),
        "Rotate": (linspace(0.0, 135.0), True),
        "Brightness": (linspace(0.0, 0.99), True),
        "Color": (linspace(0.0, 0.99), True),
        "Contrast": (linspace(0.0, 0.99), True),
        "Sharpness": (linspace(0.0, 0.99), True),
        "Posterize": (posterize_bits, False),
        "Solarize": (linspace(255.0, 0.0), False),
        "AutoContrast": ([0.0], False),
        "Equalize": ([0.0], False),
    }


def _trivial_op(name, image, m, fill, interpolation):
    if name == "Identity":
        return image
    if name == "ShearX":
        return shear_x(image, m, fill, interpolation)
    if name == "ShearY":
        return shear_y(image, m, fill, interpolation)
    if name == "TranslateX":  # torchvision truncates the magnitude: int(magnitude)
        return translate_x(image, tf.cast(tf.cast(m, tf.int32), tf.float32), fill, interpolation)
    if name == "TranslateY":
        return translate_y(image, tf.cast(tf.cast(m, tf.int32), tf.float32), fill, interpolation)
    if name == "Rotate":
        return rotate(image, m, fill, interpolation)
    if name == "Brightness":
        return brightness(image, 1.0 + m)
    if name == "Color":
        return color(image, 1.0 + m)
    if name == "Contrast":
        return contrast(image, 1.0 + m)
    if name == "Sharpness":
        return sharpness(image, 1.0 + m)
    if name == "Posterize":
        return posterize(image, tf.cast(m, tf.int32))
    if name == "Solarize":
        return solarize(image, m)
    if name == "AutoContrast":
        return autocontrast(image)
    return equalize(image)


def trivial_augment_plan(seed, num_bins=31):
    """The draws :func:`trivial_augment_wide` makes for ``seed``: ``(op_index, bin_index,
    negate)`` scalar tensors, each uniform."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    op_index = tf.random.stateless_uniform([], seeds[0], 0, len(TRIVIAL_AUGMENT_OPS), tf.int32)
    bin_index = tf.random.stateless_uniform([], seeds[1], 0, num_bins, tf.int32)
    negate = tf.random.stateless_uniform([], seeds[2]) < 0.5
    return op_index, bin_index, negate


def trivial_augment_wide(image, seed, fill=128, num_bins=31, interpolation="nearest"):
    """torchvision's ``TrivialAugmentWide``: one op drawn uniformly from
    :data:`TRIVIAL_AUGMENT_OPS`, one of ``num_bins`` magnitudes drawn uniformly, negated with
    probability 1/2 for signed ops. torchvision's defaults are nearest interpolation and
    fill 0; ``fill`` here defaults to mid-gray 128."""
    space = trivial_augment_space(num_bins)
    op_index, bin_index, negate = trivial_augment_plan(seed, num_bins)

    def branch(name):
        def apply():
            mags, signed = space[name]
            if len(mags) > 1:
                m = tf.gather(tf.constant(mags, tf.float32), bin_index)
            else:
                m = tf.constant(mags[0], tf.float32)
            if signed:
                m = tf.where(negate, -m, m)
            return _trivial_op(name, image, m, fill, interpolation)
        return apply

    out = tf.switch_case(op_index, [branch(name) for name in TRIVIAL_AUGMENT_OPS])
    return tf.ensure_shape(out, image.shape)


# --------------------------------------------------------------------------- random erasing

def random_erasing(image, seed, probability=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3),
                   value=0, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """timm's ``RandomErasing`` (one box, ``max_count`` 1): with ``probability``, try up to
    10 boxes of area ``U(scale) * H * W`` and log-uniform aspect ratio in ``ratio``; the
    first that fits inside the image is erased (none fits: the image is unchanged).

    ``value``: a number or one number per channel (a constant box, timm's ``mode="const"``
    is 0 after normalization, i.e. ``value=mean`` here); ``"pixel"``: per-pixel normal
    noise ``mean + std * N(0, 1)`` per channel, which after the pipeline's
    ``(x - mean) / std`` normalization is exactly timm's ``mode="pixel"`` (RSB); ``"rand"``:
    one such normal colour for the whole box (timm's ``mode="rand"``). Noise is clipped to
    0..255 and rounded for uint8 images; float images keep it unclipped. ``mean``/``std``
    default to ImageNet's, in 0..255 units.
    """
    if not (isinstance(value, str) and value in ("pixel", "rand")) and isinstance(value, str):
        raise ValueError(f"random_erasing value={value!r} is not supported; accepted: a "
                         f"number, one number per channel, 'pixel', 'rand'")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    h, w = _size(image)
    attempts = 10
    area = h * w
    target = tf.random.stateless_uniform([attempts], seeds[0], scale[0], scale[1]) * area
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(tf.random.stateless_uniform([attempts], seeds[1], *log_ratio))
    bh = tf.round(tf.sqrt(target * aspect))
    bw = tf.round(tf.sqrt(target / aspect))
    fits = (bw < w) & (bh < h)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    bh, bw = bh[first], bw[first]
    u = tf.random.stateless_uniform([2], seeds[2])
    top = tf.floor(u[0] * (h - bh + 1))
    left = tf.floor(u[1] * (w - bw + 1))
    do = tf.reduce_any(fits) & (tf.random.stateless_uniform([], seeds[3]) < probability)
    bh = tf.where(do, bh, 0.0)
    channels = image.shape[-1]
    if isinstance(value, str):
        mean_v = tf.constant(list(mean)[:channels], tf.float32)
        std_v = tf.constant(list(std)[:channels], tf.float32)
        shape = tf.shape(image) if value == "pixel" else [1, 1, channels]
        fill = mean_v + std_v * tf.random.stateless_normal(shape, seeds[4])
        if image.dtype.is_integer:
            fill = tf.round(tf.clip_by_value(fill, 0.0, 255.0))
        value = fill
    return erase(image, top, left, bh, bw, value)


__all__ = [
    "rotate", "shear_x", "shear_y", "translate_x", "translate_y", "posterize", "solarize",
    "solarize_add", "equalize", "autocontrast", "color", "contrast", "brightness",
    "sharpness", "invert", "erase", "rand_augment", "rand_augment_plan", "rand_augment_level",
    "parse_rand_augment", "trivial_augment_wide", "trivial_augment_space", "trivial_augment_plan", "random_erasing",
    "RAND_AUGMENT_OPS", "TRIVIAL_AUGMENT_OPS",
]
