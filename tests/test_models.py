"""Named models: parameter counts from the papers/torchvision, shortcut options, shapes."""

import math

import keras
import numpy as np
import pytest
from conftest import as_numpy, trainable_params

import keras_resnet as kr
from keras_resnet.models import CIFAR_DEPTHS, CIFAR_PREACT_DEPTHS, IMAGENET_DEPTHS

# torchvision's published parameter counts (no conv bias, 1000 classes).
TORCHVISION = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# He et al. 2015, CIFAR-10 with option A shortcuts.
CIFAR_A = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
# He et al. 2016, pre-activation CIFAR-10 bottleneck networks with projection shortcuts.
CIFAR_PREACT = {164: 1_703_258, 1001: 10_327_706}


@pytest.mark.parametrize("depth", sorted(TORCHVISION))
def test_imagenet_parameter_counts_match_torchvision(depth):
    model = getattr(kr, f"ResNet{depth}")(input_shape=(224, 224, 3))
    assert trainable_params(model) == TORCHVISION[depth]


@pytest.mark.parametrize("depth", sorted(CIFAR_A))
def test_cifar_option_a_parameter_counts_match_paper(depth):
    model = getattr(kr, f"ResNet{depth}CIFAR")()
    assert trainable_params(model) == CIFAR_A[depth]


@pytest.mark.parametrize("depth", sorted(CIFAR_PREACT))
def test_cifar_preact_parameter_counts_match_paper(depth):
    model = getattr(kr, f"PreActResNet{depth}CIFAR")()
    assert trainable_params(model) == CIFAR_PREACT[depth]


def _shape_changes(blocks, filters, expansion, stem_channels):
    """(in, out) channel pairs of every block, and which of them change shape."""
    pairs, cin = [], stem_channels
    for n, f in zip(blocks, filters):
        for _ in range(n):
            pairs.append((cin, f * expansion))
            cin = f * expansion
    return pairs


@pytest.mark.parametrize(
    "blocks,filters,block,stem,stem_ch",
    [
        ([3, 3, 3], [16, 32, 64], "basic", "cifar", 16),
        ([2, 2, 2, 2], [64, 128, 256, 512], "basic", "imagenet", 64),
        ([1, 2, 1, 1], [64, 128, 256, 512], "bottleneck", "imagenet", 64),
    ],
)
def test_shortcut_options_add_exactly_their_projections(blocks, filters, block, stem, stem_ch):
    def build(option):
        return kr.ResNet(blocks, filters, block=block, stem=stem, shortcut=option, classes=10,
                         input_shape=(32, 32, 3))

    a, b, c = (trainable_params(build(o)) for o in "ABC")
    expansion = 4 if block == "bottleneck" else 1
    pairs = _shape_changes(blocks, filters, expansion, stem_ch)
    # A 1x1 projection (no bias) plus its BN (gamma, beta) has cin*cout + 2*cout weights.
    projection = lambda cin, cout: cin * cout + 2 * cout  # noqa: E731
    plain = trainable_params(kr.ResNet(blocks, filters, block=block, stem=stem, residual=False,
                                       classes=10, input_shape=(32, 32, 3)))
    assert a == plain  # option A adds no parameters
    assert b - a == sum(projection(i, o) for i, o in pairs if i != o)
    assert c - a == sum(projection(i, o) for i, o in pairs)


def test_plain_network_has_same_layers_without_additions():
    res = kr.ResNet34(input_shape=(64, 64, 3), classes=10, shortcut="A")
    plain = kr.ResNet34(input_shape=(64, 64, 3), classes=10, shortcut="A", plain=True)
    kinds = lambda m: sorted(type(l).__name__ for l in m.layers)  # noqa: E731
    assert "Add" not in kinds(plain) and "ZeroPadShortcut" not in kinds(plain)
    without = [k for k in kinds(res) if k not in ("Add", "ZeroPadShortcut")]
    assert without == kinds(plain)
    assert trainable_params(res) == trainable_params(plain)
    assert plain.name == "plain34"


def _conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1  # PyTorch's output-size formula


def _imagenet_sizes(n):
    n = _conv_out(n, 7, 2, 3)
    n = _conv_out(n, 3, 2, 1)  # max pool
    sizes = [n]
    for _ in range(3):
        n = _conv_out(n, 3, 2, 1)
        sizes.append(n)
    return sizes


def _cifar_sizes(n):
    sizes = [n]
    for _ in range(2):
        n = _conv_out(n, 3, 2, 1)
        sizes.append(n)
    return sizes


NAMED = sorted(kr.models.NAMED_MODELS)
SIZES = [(224, 224), (32, 32), (40, 72)]


def _expected(name, h, w):
    model_channels = {
        "basic4": [64, 128, 256, 512], "bottleneck4": [256, 512, 1024, 2048],
        "basic3": [16, 32, 64], "bottleneck3": [64, 128, 256],
    }
    if name.endswith("CIFAR"):
        depth = int(name.replace("PreActResNet", "").replace("ResNet", "").replace("CIFAR", ""))
        bottleneck = name.startswith("PreAct") and depth in CIFAR_PREACT_DEPTHS and depth != 110
        chans = model_channels["bottleneck3" if bottleneck else "basic3"]
        return list(zip(_cifar_sizes(h), _cifar_sizes(w), chans))
    depth = int(name.replace("PreActResNet", "").replace("ResNet", ""))
    chans = model_channels[IMAGENET_DEPTHS[depth][0] + "4"]
    return list(zip(_imagenet_sizes(h), _imagenet_sizes(w), chans))


@pytest.mark.parametrize("name", NAMED)
def test_stage_shapes_of_every_named_model(name):
    """Stage output shapes follow PyTorch's size formula (symmetric padding) at 3 sizes."""
    model = kr.models.NAMED_MODELS[name](include_top=False, input_shape=(None, None, 3))
    features = kr.feature_extractor(model)
    for h, w in SIZES:
        shapes = features.compute_output_shape((2, h, w, 3))
        got = [tuple(shapes[f"stage{i + 1}"]) for i in range(len(shapes))]
        want = [(2, *e) for e in _expected(name, h, w)]
        assert got == want, (name, h, w)


@pytest.mark.parametrize("name", ["ResNet18", "PreActResNet50", "ResNet20CIFAR", "PreActResNet164CIFAR"])
def test_forward_pass_shapes_and_probabilities(name, rng):
    ctor = kr.models.NAMED_MODELS[name]
    for h, w in [(32, 32), (40, 72)]:
        model = ctor(input_shape=(h, w, 3), classes=7)
        x = rng.random((2, h, w, 3), dtype=np.float32)
        y = as_numpy(model(x, training=False))
        assert y.shape == (2, 7)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
        feats = kr.feature_extractor(model, stages=[len(_expected(name, h, w))])
        (out,) = feats(x).values()
        assert tuple(out.shape[1:]) == _expected(name, h, w)[-1]


def test_keras_applications_style_arguments(rng):
    x = rng.random((1, 64, 64, 3), dtype=np.float32)
    pooled = kr.ResNet18(include_top=False, pooling="avg", input_shape=(64, 64, 3))
    assert tuple(pooled(x).shape) == (1, 512)
    maxed = kr.ResNet18(include_top=False, pooling="max", input_shape=(64, 64, 3))
    assert tuple(maxed(x).shape) == (1, 512)
    logits = kr.ResNet18(classes=5, classifier_activation=None, input_shape=(64, 64, 3))
    out = as_numpy(logits(x))
    assert out.shape == (1, 5) and not np.isclose(out.sum(), 1.0)
    # input_tensor: the model joins an existing graph.
    inp = keras.Input((48, 48, 3))
    model = kr.ResNet20CIFAR(input_tensor=inp, classes=3)
    assert model.inputs[0] is inp or model.inputs[0].name == inp.name
    assert tuple(model.output.shape) == (None, 3)


def test_default_input_shape_allows_any_size(rng):
    model = kr.ResNet50(include_top=False)
    assert tuple(model.input.shape) == (None, None, None, 3)
    for h, w in [(64, 64), (96, 160)]:
        out = model(rng.random((1, h, w, 3), dtype=np.float32))
        assert tuple(out.shape) == (1, math.ceil(h / 32), math.ceil(w / 32), 2048)


def test_classifier_stays_float32_under_mixed_precision(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = kr.ResNet20CIFAR(input_shape=(16, 16, 3))
        assert model.get_layer("stage1_block1_conv1").compute_dtype == "float16"
        assert model.get_layer("predictions").compute_dtype == "float32"
        out = model(rng.random((2, 16, 16, 3), dtype=np.float32))
        assert out.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("depth", sorted(CIFAR_DEPTHS)[:2])
def test_cifar_models_run_on_digits_sized_grayscale(depth, rng):
    model = kr.resnet_cifar(depth, input_shape=(8, 8, 1), classes=10)
    out = model(rng.random((3, 8, 8, 1), dtype=np.float32))
    assert tuple(out.shape) == (3, 10)
