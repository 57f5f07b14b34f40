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


# --------------------------------------------------------------------------- policies

@pytest.fixture(scope="module")
def timm_aa():
    _, timm = libraries()
    from timm.data import auto_augment

    return auto_augment


def test_rand_augment_ops_and_levels_match_timm(timm_aa):
    """The op list is timm's ``_RAND_INCREASING_TRANSFORMS``; every op's argument at several
    magnitudes is one of the two values timm's ``LEVEL_TO_ARG`` gives (it negates signed
    ops at random), and both signs occur for the signed ones."""
    assert randaug.RAND_AUGMENT_OPS == tuple(timm_aa._RAND_INCREASING_TRANSFORMS)
    ops = timm_aa.rand_augment_ops(magnitude=9, prob=0.5, transforms=timm_aa._RAND_INCREASING_TRANSFORMS)
    assert [op.name for op in ops] == list(randaug.RAND_AUGMENT_OPS)
    assert all(op.prob == 0.5 for op in ops)
    hparams = dict(timm_aa._HPARAMS_DEFAULT)
    for name in randaug.RAND_AUGMENT_OPS:
        level_fn = timm_aa.LEVEL_TO_ARG[name]
        for m in [0.0, 0.7, 3.0, 5.5, 9.0, 9.37, 10.0]:
            if level_fn is None:
                assert float(randaug.rand_augment_level(name, m)) == 0.0
                continue
            theirs = {round(float(level_fn(m, hparams)[0]), 5) for _ in range(40)}
            ours = {round(float(randaug.rand_augment_level(name, m, s)), 5) for s in (1.0, -1.0)}
            assert theirs <= ours, f"{name} at {m}: timm {theirs}, ours {ours}"
            if m > 0 and len(ours) == 2:
                assert theirs == ours, f"{name} at {m}: timm draws {theirs}, ours {ours}"


def _timm_args(name, arg):
    if name in ("PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd"):
        return (int(arg),)
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    return (float(arg),)


def test_rand_augment_applies_timms_ops(timm_aa):
    """One op at a time (``num_ops=1, prob=1``): the output equals timm's PIL op at the
    drawn magnitude and sign. Tolerances (PIL rather than torchvision arithmetic): exact for
    the integer ops; at most 2 levels for the enhancement blends (PIL rounds its grayscale
    and the contrast mean to integers, torchvision floors / keeps the float mean, times
    |1 - factor| < 1, plus the truncation); geometric ops (nearest) differ on at most 1%
    of the pixels (sampling points within rounding of a pixel boundary)."""
    from PIL import Image

    image = IMAGES["photo"]
    pil = Image.fromarray(image)
    seen = set()
    for i in range(60):
        seed = tf.constant([i, 17], tf.int64)
        op, applied, mags, sign = randaug.rand_augment_plan(seed, 1, 9, 0.5, 1.0)
        name = randaug.RAND_AUGMENT_OPS[int(op[0])]
        seen.add(name)
        arg = randaug.rand_augment_level(name, mags[0], sign[0])
        if name == "PosterizeIncreasing" and int(arg) == 0:
            continue  # magnitude clipped to 10: 0 bits, which PIL >= 10 refuses (ours: black)
        want = np.asarray(timm_aa.NAME_TO_OP[name](
            pil, *_timm_args(name, arg), fillcolor=(128, 128, 128), resample=Image.NEAREST))
        got = randaug.rand_augment(tf.constant(image), seed, num_ops=1, magnitude=9,
                                   magnitude_std=0.5, prob=1.0, interpolation="nearest").numpy()
        diff = np.abs(got.astype(int) - want.astype(int))
        if name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"):
            assert np.any(diff > 0, axis=-1).mean() <= 0.01, (name, float(arg))
        elif name.endswith("Increasing") and not name.startswith(("Posterize", "Solarize")):
            assert diff.max() <= 2, (name, float(arg), diff.max())
        elif name == "AutoContrast":
            assert diff.max() <= 1, (name, diff.max())  # PIL's LUT in float64
        else:
            assert diff.max() == 0, (name, float(arg))
    assert len(seen) >= 12, seen


def test_rand_augment_draws_follow_timm_distribution():
    """Over 4000 seeds: ops uniform over 15, applied with probability p, magnitudes
    N(9, 0.5) clipped to [0, 10], signs fair; each within 5 standard errors."""
    n = 4000
    seeds = tf.stack([tf.range(n, dtype=tf.int64), tf.fill([n], tf.constant(3, tf.int64))], 1)
    plans = tf.function(lambda: tf.vectorized_map(
        lambda s: randaug.rand_augment_plan(s, 2, 9, 0.5, 0.5), seeds))()
    op, applied, mags, sign = [p.numpy().ravel() for p in plans]
    counts = np.bincount(op, minlength=15)
    expected, sd = op.size / 15, math.sqrt(op.size * (1 / 15) * (14 / 15))
    assert np.all(np.abs(counts - expected) < 5 * sd), counts
    assert abs(applied.mean() - 0.5) < 5 * math.sqrt(0.25 / op.size)
    assert abs((sign > 0).mean() - 0.5) < 5 * math.sqrt(0.25 / op.size)
    ref = np.clip(np.random.default_rng(0).normal(9, 0.5, 10 ** 6), 0, 10)
    assert abs(mags.mean() - ref.mean()) < 5 * ref.std() / math.sqrt(op.size)
    assert abs(mags.std() - ref.std()) < 0.05 * ref.std()
    assert mags.min() >= 0 and mags.max() <= 10


def test_trivial_augment_space_matches_torchvision():
    torchvision, _ = libraries()
    from torchvision.transforms import TrivialAugmentWide

    theirs = TrivialAugmentWide()._augmentation_space(31)
    ours = randaug.trivial_augment_space(31)
    assert tuple(theirs) == randaug.TRIVIAL_AUGMENT_OPS == tuple(ours)
    for name, (mags, signed) in theirs.items():
        np.testing.assert_allclose(np.atleast_1d(mags.numpy()), ours[name][0], rtol=1e-6,
                                   atol=1e-6, err_msg=name)
        assert signed == ours[name][1], name


def test_trivial_augment_wide_applies_torchvisions_ops():
    """Each seed's output is torchvision's ``_apply_op`` for the drawn op, magnitude and
    sign (nearest, fill 128), within the functional ops' tolerances above; over the seeds
    every op occurs."""
    import torch

    libraries()
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    image = IMAGES["photo"]
    t = torch.from_numpy(image.transpose(2, 0, 1).copy())
    space = randaug.trivial_augment_space(31)
    seen = set()
    for i in range(70):
        seed = tf.constant([i, 5], tf.int64)
        op, b, negate = [int(v) for v in randaug.trivial_augment_plan(seed)]
        name = randaug.TRIVIAL_AUGMENT_OPS[op]
        seen.add(name)
        mags, signed = space[name]
        m = mags[b] if len(mags) > 1 else mags[0]
        if signed and negate:
            m = -m
        want = _apply_op(t, name, m, interpolation=InterpolationMode.NEAREST,
                         fill=[128.0] * 3).numpy().transpose(1, 2, 0)
        got = randaug.trivial_augment_wide(tf.constant(image), seed, fill=128).numpy()
        diff = np.abs(got.astype(int) - want.astype(int))
        if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
            assert np.any(diff > 0, axis=-1).mean() <= 0.01, (name, m)
        else:
            # torchvision's (v1) _apply_op uses the v1 functional ops, whose blends and
            # autocontrast round each product separately (v2's, which ours follow exactly,
            # fuse them): a result on an exact integer can truncate one level lower
            assert diff.max() <= 1, (name, m, diff.max())
    assert seen == set(randaug.TRIVIAL_AUGMENT_OPS), seen


@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
def test_policies_deterministic_in_tf_data(dtype):
    """The same seed gives the same pixels in a tf.data map (graph) run twice, and eagerly up
    to float32 rounding (graph optimizations reorder float arithmetic: float images within
    1e-3, uint8 images within one level where a value sits at a rounding boundary); other
    seeds give other pixels; dtype, shape and the 0..255 range are kept."""
    image = tf.cast(tf.constant(IMAGES["photo"]), dtype)
    policies = {
        "rand": lambda x, s: randaug.rand_augment(x, s, num_ops=2, magnitude=9),
        "trivial": lambda x, s: randaug.trivial_augment_wide(x, s),
        "erasing": lambda x, s: randaug.random_erasing(x, s, probability=1.0, value="pixel"),
    }
    seeds = tf.constant([[i, 1] for i in range(5)], tf.int64)
    for name, policy in policies.items():
        ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: policy(image, s))
        graph = [x.numpy() for x in ds]
        again = [x.numpy() for x in ds]
        eager = [policy(image, s).numpy() for s in seeds]
        for g, a, e in zip(graph, again, eager):
            assert g.dtype == dtype.as_numpy_dtype and g.shape == image.shape
            np.testing.assert_array_equal(g, a, err_msg=name)
            diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
            if dtype == tf.uint8:
                assert diff.max() <= 1 and (diff > 0).mean() <= 0.001, name
            else:
                assert diff.max() <= 1e-3, name
            if not (name == "erasing" and dtype == tf.float32):  # noise is left unclipped
                assert g.min() >= 0 and g.max() <= 255
        assert len({g.tobytes() for g in graph}) >= 4, name


def test_random_erasing_box_statistics():
    """The erased box follows timm's RandomErasing: area fraction in [0.02, 1/3] (rounded
    sides), aspect ratio in [0.3, 3.3] (rounded), inside the image, erased with probability
    ``probability``."""
    h, w = 40, 50
    image = tf.fill([h, w, 3], tf.constant(200, tf.uint8))
    erased = 0
    n = 300
    for i in range(n):
        out = randaug.random_erasing(image, tf.constant([i, 9], tf.int64), probability=0.5,
                                     value=0).numpy()
        mask = out[..., 0] == 0
        if not mask.any():
            continue
        erased += 1
        rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
        bh, bw = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert mask.sum() == bh * bw  # one solid box
        assert 0.02 * h * w - (bh + bw) <= bh * bw <= h * w / 3 + (bh + bw)
        assert 0.3 * (bw - 1) / (bh + 1) <= 1 and (bh - 1) / (bw + 1) <= 3.3 + 1e-9
    assert abs(erased / n - 0.5) < 5 * math.sqrt(0.25 / n)


def test_parse_rand_augment():
    assert randaug.parse_rand_augment("rand-m9-mstd0.5-inc1") == {
        "num_ops": 2, "magnitude": 9.0, "magnitude_std": 0.5, "increasing": True,
        "prob": 0.5, "magnitude_max": 10.0}
    kw = randaug.parse_rand_augment("rand-n3-m7-mstd101-inc1-p0.8")
    assert kw["num_ops"] == 3 and kw["magnitude"] == 7 and kw["prob"] == 0.8
    assert kw["magnitude_std"] == float("inf")
    with pytest.raises(ValueError, match="bad key 'x3'.*accepted keys"):
        randaug.parse_rand_augment("rand-m9-x3-inc1")
    with pytest.raises(ValueError, match="must start with 'rand-'"):
        randaug.parse_rand_augment("augmix-m5")
    with pytest.raises(ValueError, match="inc1"):
        randaug.parse_rand_augment("rand-m9")
