"""keras_resnet.data.randaug against torchvision's functional ops and timm's RandAugment
tables, on a real photo (scikit-learn's bundled china.jpg, resized small) and a uniform
random uint8 image.

Tolerances, and why (docs/augmentation.md has the same table):
- posterize, solarize, invert, equalize, erase, brightness, autocontrast, sharpness: exact.
  The same integer algorithm / the same float32 formula and truncation as torchvision.
- color, contrast: at most 1 grey level on at most 1% of the pixels. The same formula; the
  only difference is float32 summation order (the grayscale weights, the image mean)
  landing on the other side of an integer before truncation.
- rotate, shear, translate (nearest): identical except where a sampling point falls within
  float32 rounding of a pixel boundary (TensorFlow rounds half away from zero,
  torchvision's grid_sample half to even, and the two compute the mapped coordinate in a
  different order): at most 1% of the pixels differ, all of them next to such a boundary.
- rotate, shear (bilinear): at most 1 grey level away from the image border, where both
  blend the same four pixels and round; along the border torchvision blends the fill with a
  mask that it multiplies in twice, so border pixels are left out of the comparison.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.data import randaug
from torch_libraries import libraries


def _photo():
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg")  # 427x640 RGB
    small = tf.image.resize(image, [48, 72], method="area")
    return np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)


IMAGES = {"photo": _photo(),
          "noise": np.random.default_rng(0).integers(0, 256, (36, 44, 3), dtype=np.uint8)}


@pytest.fixture(scope="module")
def tv():
    torchvision, _ = libraries()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    return F, InterpolationMode


def _torch(F, image, fn):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return fn(t).numpy().transpose(1, 2, 0)


def _ours(fn, image):
    out = fn(tf.constant(image))
    assert out.dtype == tf.uint8 and tuple(out.shape) == image.shape
    return out.numpy()


EXACT = [
    ("posterize", [0, 1, 2, 4, 7, 8], lambda x, m: randaug.posterize(x, m),
     lambda F, t, m: F.posterize(t, m)),
    ("solarize", [0, 64, 128.5, 200, 255], lambda x, m: randaug.solarize(x, m),
     lambda F, t, m: F.solarize(t, m)),
    ("brightness", [0.0, 0.1, 0.55, 1.0, 1.37, 1.9], lambda x, m: randaug.brightness(x, m),
     lambda F, t, m: F.adjust_brightness(t, m)),
    ("sharpness", [0.0, 0.1, 0.55, 1.0, 1.37, 1.9], lambda x, m: randaug.sharpness(x, m),
     lambda F, t, m: F.adjust_sharpness(t, m)),
    ("invert", [None], lambda x, m: randaug.invert(x), lambda F, t, m: F.invert(t)),
    ("equalize", [None], lambda x, m: randaug.equalize(x), lambda F, t, m: F.equalize(t)),
    ("autocontrast", [None], lambda x, m: randaug.autocontrast(x),
     lambda F, t, m: F.autocontrast(t)),
]


@pytest.mark.parametrize("name,levels,ours,theirs", EXACT, ids=[e[0] for e in EXACT])
@pytest.mark.parametrize("which", sorted(IMAGES))
def test_exact_ops_match_torchvision(tv, name, levels, ours, theirs, which):
    F, _ = tv
    image = IMAGES[which]
    if name == "autocontrast":  # a narrower range than the full 0..255, so it stretches
        image = (image // 2 + 40).astype(np.uint8)
    for m in levels:
        got = _ours(lambda x: ours(x, m), image)
        want = _torch(F, image, lambda t: theirs(F, t, m))
        np.testing.assert_array_equal(got, want, err_msg=f"{name} at {m}")


BLENDS = [
    ("color", lambda x, m: randaug.color(x, m), lambda F, t, m: F.adjust_saturation(t, m)),
    ("contrast", lambda x, m: randaug.contrast(x, m), lambda F, t, m: F.adjust_contrast(t, m)),
]


@pytest.mark.parametrize("name,ours,theirs", BLENDS, ids=[b[0] for b in BLENDS])
@pytest.mark.parametrize("which", sorted(IMAGES))
def test_blend_ops_match_torchvision(tv, name, ours, theirs, which):
    F, _ = tv
    image = IMAGES[which]
    for m in [0.0, 0.1, 0.55, 1.0, 1.37, 1.9]:
        got = _ours(lambda x: ours(x, m), image).astype(int)
        want = _torch(F, image, lambda t: theirs(F, t, m)).astype(int)
        diff = np.abs(got - want)
        assert diff.max() <= 1, f"{name} at {m}: max difference {diff.max()}"
        assert (diff > 0).mean() <= 0.001, f"{name} at {m}: {(diff > 0).mean():.2%} differ"


def _geometric(F, IM, interpolation):
    mode = IM.NEAREST if interpolation == "nearest" else IM.BILINEAR
    fill = [128.0, 128.0, 128.0]

    def shear(t, m, axis):
        s = [math.degrees(math.atan(m)), 0.0] if axis == 0 else [0.0, math.degrees(math.atan(m))]
        return F.affine(t, angle=0.0, translate=[0, 0], scale=1.0, shear=s,
                        interpolation=mode, fill=fill, center=[0, 0])

    def translate(t, m, axis):
        return F.affine(t, angle=0.0, translate=[m, 0] if axis == 0 else [0, m], scale=1.0,
                        shear=[0.0, 0.0], interpolation=mode, fill=fill)

    return [
        ("rotate", [-30.0, 12.5, 45.0, 90.0, 135.0], randaug.rotate,
         lambda t, m: F.rotate(t, m, interpolation=mode, fill=fill)),
        ("shear_x", [-0.3, 0.15, 0.5, 0.99], randaug.shear_x, lambda t, m: shear(t, m, 0)),
        ("shear_y", [-0.3, 0.15, 0.5, 0.99], randaug.shear_y, lambda t, m: shear(t, m, 1)),
        ("translate_x", [-7, 3, 12, 32], randaug.translate_x, lambda t, m: translate(t, m, 0)),
        ("translate_y", [-7, 3, 12, 32], randaug.translate_y, lambda t, m: translate(t, m, 1)),
    ]


@pytest.mark.parametrize("which", sorted(IMAGES))
def test_geometric_ops_nearest_match_torchvision(tv, which):
    F, IM = tv
    image = IMAGES[which]
    for name, levels, ours, theirs in _geometric(F, IM, "nearest"):
        for m in levels:
            got = _ours(lambda x: ours(x, m, fill=128, interpolation="nearest"), image)
            want = _torch(F, image, lambda t: theirs(t, m))
            differ = np.any(got != want, axis=-1).mean()
            assert differ <= 0.01, f"{name} at {m}: {differ:.2%} of the pixels differ"


@pytest.mark.parametrize("which", sorted(IMAGES))
def test_geometric_ops_bilinear_match_torchvision(tv, which):
    F, IM = tv
    image = IMAGES[which]
    h, w, _ = image.shape
    for name, levels, ours, theirs in _geometric(F, IM, "bilinear"):
        for m in levels:
            got = _ours(lambda x: ours(x, m, fill=128, interpolation="bilinear"), image)
            want = _torch(F, image, lambda t: theirs(t, m))
            # pixels whose 3x3 neighbourhood maps fully inside the source: the border of
            # the filled region is where the two blend the fill differently
            ones = np.ones((h, w, 1), np.uint8) * 255
            inside = _ours(lambda x: ours(x, m, fill=0, interpolation="bilinear"), ones)[..., 0]
            inside = tf.nn.max_pool2d(255.0 - tf.constant(inside, tf.float32)[None, ..., None],
                                      3, 1, "SAME")[0, ..., 0].numpy() == 0
            diff = np.abs(got.astype(int) - want.astype(int)).max(axis=-1)[inside]
            assert diff.size > 0 and diff.max() <= 1, f"{name} at {m}: max {diff.max()}"


@pytest.mark.parametrize("which", sorted(IMAGES))
def test_erase_matches_torchvision(tv, which):
    import torch

    F, _ = tv
    image = IMAGES[which]
    value = np.random.default_rng(1).integers(0, 256, image.shape, dtype=np.uint8)
    for top, left, height, width in [(0, 0, 5, 7), (3, 11, 20, 9), (10, 2, 26, 30)]:
        box = value[top:top + height, left:left + width]
        want = _torch(F, image, lambda t: F.erase(
            t, top, left, height, width, torch.from_numpy(box.transpose(2, 0, 1).copy())))
        got = _ours(lambda x: randaug.erase(x, top, left, height, width, value), image)
        np.testing.assert_array_equal(got, want)
        got = _ours(lambda x: randaug.erase(x, top, left, height, width, [1, 2, 3]), image)
        want = _torch(F, image, lambda t: F.erase(
            t, top, left, height, width, torch.tensor([1, 2, 3], dtype=torch.uint8)[:, None, None]))
        np.testing.assert_array_equal(got, want)


def test_float_images_keep_dtype_and_agree_with_uint8():
    """A float32 image with integer values gives the uint8 result up to what the uint8 path
    rounds: the final truncation (< 1 level) plus, for the blends, its rounded degenerate
    image (grayscale floored, blur rounded: < 1 level, times |1 - factor| <= 1): < 2."""
    image = IMAGES["photo"]
    x = tf.constant(image.astype(np.float32))
    for fn in [lambda i: randaug.rotate(i, 20.0), lambda i: randaug.color(i, 1.6),
               lambda i: randaug.contrast(i, 0.4), lambda i: randaug.sharpness(i, 1.8),
               randaug.equalize, randaug.autocontrast, lambda i: randaug.posterize(i, 3),
               lambda i: randaug.solarize(i, 100)]:
        f = fn(x)
        assert f.dtype == tf.float32 and f.shape == x.shape
        u = fn(tf.constant(image)).numpy().astype(np.float32)
        assert np.all(np.abs(f.numpy() - u) < 2.0)
        assert f.numpy().min() >= 0 and f.numpy().max() <= 255
