"""ResNet family options: stochastic depth, dilation, grouped convolutions, serialization.

Logits against PyTorch references are in test_weights_variants.py; exports in
test_export_variants.py.
"""

import numpy as np
import pytest

import keras_resnet as kr
from conftest import run_python

SMALL = dict(stackwise_num_blocks=[1, 2, 1, 2], stackwise_num_filters=[16, 32, 64, 128], block="bottleneck")


def _everything(**overrides):
    """A small model with every family option on."""
    options = dict(SMALL, stem="deep", stem_filters=16, avg_down=True, attention="se", groups=4,
                   width_per_group=16, drop_path_rate=0.2, classes=5, input_shape=(32, 32, 3))
    options.update(overrides)
    return kr.ResNet(**options)


def test_drop_path_is_identity_at_inference_and_keeps_the_expected_fraction(rng):
    layer = kr.DropPath(0.3, seed=1)
    x = rng.standard_normal((20000, 2, 2, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # no training flag: inference
    y = np.asarray(layer(x, training=True))
    ratio = y / x
    # Per sample, the whole branch is kept (scaled by 1 / 0.7) or dropped.
    kept = np.all(np.isclose(ratio, 1 / 0.7, rtol=1e-6), axis=(1, 2, 3))
    dropped = np.all(y == 0, axis=(1, 2, 3))
    assert np.all(kept | dropped)
    # Survival is Bernoulli(0.7): 5 standard deviations of the mean of 20,000 draws.
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / len(x))
    # Seeded: the same seed draws the same masks; another seed others.
    again = np.asarray(kr.DropPath(0.3, seed=1)(x, training=True))
    other = np.asarray(kr.DropPath(0.3, seed=2)(x, training=True))
    np.testing.assert_array_equal(again, y)
    assert not np.array_equal(other, y)
    assert kr.DropPath.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match=r"rate=1 is not supported; expected a number in \[0, 1\)"):
        kr.DropPath(1)


def test_drop_path_rate_rises_linearly_over_blocks_and_leaves_inference_unchanged(rng):
    model = _everything(drop_path_rate=0.3)
    n = sum(SMALL["stackwise_num_blocks"])
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, kr.DropPath)}
    # timm: block i of n drops with probability rate * i / (n - 1); block 0 gets none.
    want = {}
    i = 0
    for s, blocks in enumerate(SMALL["stackwise_num_blocks"], start=1):
        for b in range(1, blocks + 1):
            if i:
                want[f"stage{s}_block{b}_drop_path"] = pytest.approx(0.3 * i / (n - 1))
            i += 1
    assert rates == want
    plain = _everything(drop_path_rate=0.0)
    assert not any(isinstance(layer, kr.DropPath) for layer in plain.layers)
    plain.set_weights(model.get_weights())
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(plain(x, training=False)))
    # In training the branches are dropped: outputs differ from the plain model's.
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(plain(x, training=True)))


@pytest.mark.slow
def test_drop_path_trains_under_mirrored_strategy():
    """Two replicas (logical CPU devices), model.fit: the seeded random stream works in
    replica context."""
    run_python("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, keras_resnet as kr
        keras.utils.set_random_seed(0)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = kr.ResNet([1, 1], [8, 16], stem="cifar", drop_path_rate=0.5, input_shape=(8, 8, 1),
                              classes=3)
            model.compile("sgd", "sparse_categorical_crossentropy")
        x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
        y = np.arange(16) % 3
        h = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert strategy.num_replicas_in_sync == 2
        assert all(np.isfinite(h.history["loss"])), h.history
    """)


@pytest.mark.parametrize("output_stride", [8, 16, None])
def test_output_stride_shapes_and_reported_strides(output_stride):
    model = kr.ResNet(**dict(SMALL, stem="deep", avg_down=True, stem_filters=16), include_top=False,
                      output_stride=output_stride, input_shape=(None, None, 3))
    features = kr.feature_extractor(model)
    want = {8: [4, 8, 8, 8], 16: [4, 8, 16, 16], None: [4, 8, 16, 32]}[output_stride]
    assert [features.feature_strides[f"stage{s}"] for s in range(1, 5)] == want
    for h, w in [(64, 64), (96, 160)]:
        shapes = features.compute_output_shape((1, h, w, 3))
        got = [tuple(shapes[f"stage{s}"])[1:3] for s in range(1, 5)]
        # Every stride is a power of two and the inputs are multiples of 32: exact division.
        assert got == [(h // s, w // s) for s in want]
        out = features(np.zeros((1, h, w, 3), "float32"))
        assert [tuple(out[f"stage{s}"].shape)[1:3] for s in range(1, 5)] == got
    # The dilation rates follow: stage 4 of output stride 8 dilates by 4, its first block by 2.
    if output_stride == 8:
        assert model.get_layer("stage4_block1_conv2").dilation_rate == (2, 2)
        assert model.get_layer("stage4_block2_conv2").dilation_rate == (4, 4)
        assert model.min_input_size == 8


@pytest.mark.parametrize("implementation", ["split", "keras"])
def test_grouped_conv_implementations_compute_the_same_function(implementation, rng):
    """One grouped op (native), per-group convolutions, and Keras's own XLA route, checked
    against a NumPy reference: each group's outputs see only that group's inputs."""
    x = rng.standard_normal((2, 9, 9, 8)).astype("float32")
    native = kr.GroupedConv2D(12, 3, strides=2, groups=4, implementation="native", use_bias=False)
    other = kr.GroupedConv2D(12, 3, strides=2, groups=4, implementation=implementation, use_bias=False)
    native.build(x.shape)
    other.build(x.shape)
    kernel = rng.standard_normal((3, 3, 2, 12)).astype("float32")
    native.set_weights([kernel])
    other.set_weights([kernel])
    want = np.zeros((2, 4, 4, 12))
    for g in range(4):
        xs, ks = x[..., 2 * g:2 * g + 2], kernel[..., 3 * g:3 * g + 3]
        for i in range(4):
            for j in range(4):
                patch = xs[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
                want[:, i, j, 3 * g:3 * g + 3] = np.tensordot(patch, ks, axes=([1, 2, 3], [0, 1, 2]))
    for layer in (native, other):
        np.testing.assert_allclose(np.asarray(layer(x)), want, rtol=1e-4, atol=1e-4)
    config = other.get_config()
    assert kr.GroupedConv2D.from_config(config).get_config() == config


@pytest.mark.slow
def test_every_option_saves_and_loads_with_safe_mode_in_a_fresh_process(tmp_path, rng):
    models = {
        "grouped_se": _everything(),
        "eca_dilated": _everything(attention="eca", groups=1, width_per_group=64, output_stride=8,
                                   drop_path_rate=0.1),
        "basic_d": kr.ResNet([1, 1], [8, 16], stem="deep", stem_filters=8, avg_down=True,
                             attention="se", input_shape=(32, 32, 3), classes=3),
    }
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", np.asarray(model(x, training=False)))
    run_python(f"""
        import numpy as np, keras
        import keras_resnet  # registers the custom layers
        x = np.load({str(tmp_path / "x.npy")!r})
        for name in {sorted(models)!r}:
            m = keras.saving.load_model({str(tmp_path)!r} + f"/{{name}}.keras", safe_mode=True)
            want = np.load({str(tmp_path)!r} + f"/{{name}}.npy")
            np.testing.assert_array_equal(np.asarray(m(x, training=False)), want)
            assert type(m).__name__ == "ResNet", type(m)
    """)
    for model in models.values():
        clone = kr.ResNet.from_config(model.get_config())
        assert clone.get_config() == model.get_config()
        assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]


def test_defaults_add_no_layers():
    """The family options off: the layer names of today's models (no SE, drop path,
    average-pool or deep-stem layers) and plain Conv2D everywhere."""
    model = kr.ResNet50(input_shape=(64, 64, 3))
    names = [layer.name for layer in model.layers]
    assert not [n for n in names if any(k in n for k in ("_se_", "eca_", "drop_path", "avgpool", "stem_conv1"))]
    assert not any(isinstance(layer, (kr.GroupedConv2D, kr.DropPath)) for layer in model.layers)
    config = model.get_config()
    assert (config["groups"], config["width_per_group"], config["avg_down"], config["attention"],
            config["drop_path_rate"], config["output_stride"]) == (1, 64, False, None, 0.0, None)


def test_resnext_and_resnet_d_layers():
    model = kr.ResNeXt50_32x4d(input_shape=(64, 64, 3))
    conv2 = model.get_layer("stage1_block1_conv2")
    # torchvision: width int(64 * 4 / 64) * 32 = 128, 32 groups of 4 channels.
    assert isinstance(conv2, kr.GroupedConv2D) and conv2.groups == 32 and tuple(conv2.kernel.shape) == (3, 3, 4, 128)
    d = kr.ResNet50D(input_shape=(64, 64, 3))
    pool = d.get_layer("stage2_block1_shortcut_avgpool")
    assert pool.pool_size == (2, 2) and pool.strides == (2, 2)
    assert d.get_layer("stage2_block1_shortcut_conv").strides == (1, 1)
    assert [d.get_layer(f"stem_conv{i}").filters for i in (1, 2, 3)] == [32, 32, 64]
    assert d.name == "resnet50d"


def test_avg_down_pool_excludes_padding_like_ceil_mode():
    """An odd-sized map: the last window of PyTorch's AvgPool2d(2, 2, ceil_mode=True,
    count_include_pad=False) averages only the elements inside the map."""
    x = np.arange(1, 26, dtype="float32").reshape(1, 5, 5, 1)
    model = kr.ResNet([1, 1], [4, 8], stem="cifar", avg_down=True, include_top=False, input_shape=(5, 5, 1))
    pool = model.get_layer("stage2_block1_shortcut_avgpool")
    y = np.asarray(pool(x))[0, :, :, 0]
    want = np.array([[x[0, r:r + 2, c:c + 2, 0].mean() for c in (0, 2, 4)] for r in (0, 2, 4)])
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("size", [7, 8])
def test_stem_pool_padding_minus_inf_is_pytorchs_max_pool(size, rng):
    """stem_pool_padding='-inf': the 3x3/2 stem max-pool over a map padded with -inf (PyTorch's
    MaxPool2d(3, 2, padding=1)), computed here in NumPy, on odd and even sizes; 'zeros' (the
    default) differs where a border window is all negative (a pre-activation stem)."""
    x = (rng.standard_normal((2, size, size + 1, 4)) - 1.5).astype("float32")  # mostly negative
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    h, w = (padded.shape[1] - 3) // 2 + 1, (padded.shape[2] - 3) // 2 + 1
    want = np.zeros((2, h, w, 4), "float32")
    for i in range(h):
        for j in range(w):
            want[:, i, j] = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2))
    models = {p: kr.ResNet([1], [4], stem="imagenet", stem_filters=4, preact=True, include_top=False,
                           stem_pool_padding=p, input_shape=(None, None, 4)) for p in ("-inf", "zeros")}
    got = {}
    for padding, model in models.items():
        pool_in = model.get_layer("stem_conv").output
        pool = kr.models.keras.Model(pool_in, model.get_layer("stem_pool").output)
        got[padding] = np.asarray(pool(x))
    np.testing.assert_array_equal(got["-inf"], want)
    assert not np.array_equal(got["zeros"], want)
    assert models["zeros"].get_config()["stem_pool_padding"] == "zeros"  # the default
    assert "stem_pool_window" not in [layer.name for layer in models["zeros"].layers]


def test_shortcut_first_projects_on_every_stages_first_block():
    model = kr.ResNet([2, 2], [16, 32], stem="cifar", stem_filters=16, shortcut="first",
                      input_shape=(16, 16, 3), classes=2)
    names = {layer.name for layer in model.layers}
    assert {"stage1_block1_shortcut_conv", "stage2_block1_shortcut_conv"} <= names
    assert not {"stage1_block2_shortcut_conv", "stage2_block2_shortcut_conv"} & names
    assert "stage1_block1_shortcut_conv" not in {
        layer.name for layer in kr.ResNet.from_config({**model.get_config(), "shortcut": "B"}).layers}


@pytest.mark.parametrize("kwargs,match", [
    (dict(stem_pool_padding="reflect"), r"stem_pool_padding='reflect' is not supported; accepted "
                                        r"values: 'zeros', '-inf'"),
    (dict(stem="cifar", stem_pool_padding="-inf"), r"stem_pool_padding='-inf' needs a stem with a max-pool"),
    (dict(shortcut="D"), r"shortcut='D' is not supported; accepted values: 'A', 'B', 'C', 'first'"),
    (dict(block="basic", groups=32), r"basic blocks support only groups=1 and width_per_group=64"),
    (dict(output_stride=4), r"output_stride=4 is not supported; accepted values: None, 8, 16, 32"),
    (dict(attention="cbam"), r"attention='cbam' is not supported; accepted values: None, 'se', 'eca'"),
    (dict(drop_path_rate=1.0), r"drop_path_rate=1.0 is not supported; expected a number in \[0, 1\)"),
    (dict(grouped_conv="fast"), r"grouped_conv='fast' is not supported; accepted values: 'auto'"),
    (dict(groups=0), r"groups=0 is not supported; expected a positive integer"),
])
def test_bad_family_options_name_the_argument(kwargs, match):
    options = dict(SMALL, input_shape=(32, 32, 3))
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        kr.ResNet(**options)


def test_block_layers_take_the_family_options(rng):
    """BottleneckBlock as a layer computes what the functional block computes with the same
    weights, and its config round-trips."""
    x = rng.standard_normal((2, 9, 9, 8)).astype("float32")
    options = dict(groups=4, width_per_group=16, attention="se", avg_down=True, drop_path=0.2)
    block = kr.BottleneckBlock(8, strides=2, **options)
    y = block(x, training=False)
    inputs = kr.models.keras.Input((9, 9, 8))
    functional = kr.models.keras.Model(inputs, kr.bottleneck_block(inputs, 8, strides=2, name="b", **options))
    by_role = {layer.name[2:]: layer for layer in functional.layers if layer.weights}
    for role, layer in block.parts.items():
        if layer.weights:
            by_role[role].set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(functional(x, training=False)), np.asarray(y), rtol=1e-5, atol=1e-5)
    assert tuple(y.shape) == (2, 5, 5, 32)
    config = block.get_config()
    assert kr.BottleneckBlock.from_config(config).get_config() == config
