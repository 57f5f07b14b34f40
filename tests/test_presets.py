"""keras-hub ResNet presets, both ways, checked with keras-hub itself.

A randomly initialised keras-hub model (random BatchNorm statistics too) is saved with
keras-hub's ``save_to_preset``, loaded by ``keras_resnet.from_preset`` and must give the
same outputs within 1e-5 of their scale (float32 rounding); then a keras_resnet model is
written by ``keras_resnet.save_to_preset`` and loaded by keras-hub's ``from_preset``.
"""

import numpy as np
import pytest

import keras_resnet as kr

from conftest import randomize_weights

keras_hub = pytest.importorskip("keras_hub")

SCALE = [1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)]
OFFSET = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]
CONFIGS = {
    "v1_basic": dict(input_conv_filters=[64], input_conv_kernel_sizes=[7], block_type="basic_block",
                     stackwise_num_blocks=[2, 1, 1, 1]),
    "v1_bottleneck": dict(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                          block_type="bottleneck_block", stackwise_num_blocks=[2, 1, 1, 1]),
    "vd_bottleneck": dict(input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
                          block_type="bottleneck_block_vd", stackwise_num_blocks=[1, 2, 1, 1]),
    # basic_block_vd: a projection on the first stack too, where the channels stay 64.
    "vd_basic": dict(input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
                     block_type="basic_block_vd", stackwise_num_blocks=[2, 1, 1, 1]),
    # ResNetV2: pre-activation, the stem max-pool padded with -inf.
    "v2_basic": dict(input_conv_filters=[64], input_conv_kernel_sizes=[7], block_type="basic_block",
                     stackwise_num_blocks=[2, 1, 1, 1], use_pre_activation=True),
    "v2_bottleneck": dict(input_conv_filters=[64], input_conv_kernel_sizes=[7],
                          block_type="bottleneck_block", stackwise_num_blocks=[2, 1, 1, 1],
                          use_pre_activation=True),
}


def _backbone(kind, **extra):
    config = dict(CONFIGS[kind], stackwise_num_filters=[64, 128, 256, 512],
                  stackwise_num_strides=[1, 2, 2, 2], **extra)
    backbone = keras_hub.models.ResNetBackbone(**config)
    return randomize_weights(backbone, np.random.default_rng(0), kernel_noise=0.01)


def _pixels(n=2, size=64, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _rel(got, want):
    want = np.asarray(want)
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def _normalised(pixels):
    return (pixels * np.asarray(SCALE, "float32") + np.asarray(OFFSET, "float32")).astype("float32")


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_keras_hub_classifier_preset_loads_with_the_same_logits(kind, tmp_path):
    backbone = _backbone(kind)
    converter = keras_hub.layers.ResNetImageConverter(image_size=(64, 64), scale=SCALE, offset=OFFSET)
    classifier = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=7,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    rng = np.random.default_rng(2)
    dense = classifier.output_dense
    dense.set_weights([w + rng.normal(0, 0.1, w.shape).astype("float32") for w in dense.get_weights()])
    classifier.save_to_preset(str(tmp_path / "preset"))

    model = kr.from_preset(tmp_path / "preset")
    pixels = _pixels()
    want = np.asarray(classifier(_normalised(pixels), training=False))
    assert np.std(want) > 1e-2
    assert _rel(model(pixels, training=False), want) <= 1e-5
    assert model.get_config()["include_preprocessing"]
    assert model.pretrained_cfg["image_size"] == [64, 64]


@pytest.mark.parametrize("kind,option,other", [("v2_bottleneck", "stem_pool_padding", "zeros"),
                                               ("vd_basic", "shortcut", "B")])
def test_the_option_a_preset_needs_is_what_makes_it_match(kind, option, other, tmp_path):
    """A v2 preset gives stem_pool_padding='-inf' and a basic_block_vd preset shortcut='first';
    the default value of that option, with the same weights, computes another function, so
    the matches above check the option itself."""
    backbone = _backbone(kind)
    backbone.save_to_preset(str(tmp_path / "preset"))
    model = kr.from_preset(tmp_path / "preset")
    config = model.get_config()
    assert config[option] == {"stem_pool_padding": "-inf", "shortcut": "first"}[option]
    x = _normalised(_pixels())
    want = np.asarray(backbone(x, training=False))
    assert _rel(model(x, training=False), want) <= 1e-5
    if option == "stem_pool_padding":
        assert config["preact"] and "stem_pool_window" in [layer.name for layer in model.layers]
        changed = kr.ResNet.from_config({**config, option: other})
        changed.set_weights(model.get_weights())
        assert _rel(changed(x, training=False), want) > 1e-3
    else:  # shortcut B has no stage-1 projection, whose weights keras-hub's preset holds
        changed = kr.ResNet.from_config({**config, option: other})
        missing = {layer.name for layer in model.layers} - {layer.name for layer in changed.layers}
        assert missing == {"stage1_block1_shortcut_conv", "stage1_block1_shortcut_bn"}


def test_keras_hub_backbone_preset_loads_with_the_same_features(tmp_path):
    backbone = _backbone("vd_bottleneck")
    backbone.save_to_preset(str(tmp_path / "preset"))
    model = kr.from_preset(str(tmp_path / "preset"))
    assert not model.get_config()["include_top"]
    x = _normalised(_pixels())
    assert _rel(model(x, training=False), backbone(x, training=False)) <= 1e-5
    # Its pyramid is keras-hub's.
    pyramid = kr.feature_pyramid(model)
    for level, tensor in backbone.pyramid_outputs.items():
        assert tuple(pyramid.pyramid_outputs[level].shape[1:]) == tuple(tensor.shape[1:])


@pytest.mark.parametrize("ctor,options", [
    ("ResNet18", {}),
    ("PreActResNet18", {"stem_pool_padding": "-inf"}),        # keras-hub ResNetV2
    ("ResNet18D", {"shortcut": "first"}),                      # keras-hub basic_block_vd
    pytest.param("ResNet50D", {}, marks=pytest.mark.slow),
    pytest.param("PreActResNet50", {"stem_pool_padding": "-inf"}, marks=pytest.mark.slow),
])
def test_keras_resnet_model_saved_as_a_preset_loads_in_keras_hub(ctor, options, tmp_path):
    model = getattr(kr, ctor)(classes=5, classifier_activation=None, include_preprocessing=True,
                              preprocessing="torch", **options)
    randomize_weights(model, np.random.default_rng(3), kernel_noise=0.01, bias_noise=0.1)
    path = kr.save_to_preset(model, tmp_path / "preset", image_size=(64, 64), labels=list("abcde"))
    loaded = keras_hub.models.ResNetImageClassifier.from_preset(path)
    pixels = _pixels(seed=4)
    want = np.asarray(model(pixels, training=False))
    assert _rel(loaded(_normalised(pixels), training=False), want) <= 1e-5
    # keras-hub's own preprocessor does what the model's preprocessing layer does.
    converted = np.asarray(loaded.preprocessor.image_converter(pixels))
    np.testing.assert_allclose(converted, _normalised(pixels), rtol=1e-5, atol=1e-4)
    # And back: the same model, with its labels.
    again = kr.from_preset(path)
    assert again.class_names == list("abcde")
    assert _rel(again(pixels, training=False), want) <= 1e-5


def test_backbone_without_top_saves_as_a_backbone_preset(tmp_path):
    model = kr.ResNet34(include_top=False)
    randomize_weights(model, np.random.default_rng(5), kernel_noise=0.01)
    kr.save_to_preset(model, tmp_path / "bb")
    loaded = keras_hub.models.Backbone.from_preset(str(tmp_path / "bb"))
    x = np.random.default_rng(6).normal(size=(1, 64, 64, 3)).astype("float32")
    assert _rel(loaded(x, training=False), model(x, training=False)) <= 1e-5


def test_what_has_no_equivalent_is_refused_and_nothing_written(tmp_path):
    # keras-hub builds a pre-activation _vd backbone without fixed sizes, but its strided
    # stages cannot run (the shortcut skips the average pool).
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[32, 32, 64], input_conv_kernel_sizes=[3, 3, 3],
        stackwise_num_filters=[64, 128], stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2],
        block_type="bottleneck_block_vd", use_pre_activation=True)
    backbone.save_to_preset(str(tmp_path / "v2vd"))
    with pytest.raises(ValueError, match=r"with use_pre_activation=True is not supported: keras-hub's "
                                         r"pre-activation _vd blocks skip"):
        kr.from_preset(tmp_path / "v2vd")
    with pytest.raises(ValueError, match=r"has no keras-hub ResNet equivalent: preact=True with "
                                         r"stem_pool_padding='zeros' .*stem_pool_padding='-inf'"):
        kr.save_to_preset(kr.PreActResNet18(), tmp_path / "out")
    with pytest.raises(ValueError, match=r"shortcut='B' projects on the first block of stages "
                                         r"\[2, 3, 4\], keras-hub's basic_block_vd on stages \[1, 2, 3, 4\]"):
        kr.save_to_preset(kr.ResNet18D(), tmp_path / "out")
    with pytest.raises(ValueError, match=r"attention='se' \(keras-hub needs None\)"):
        kr.save_to_preset(kr.SEResNet50(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("handle,command", [
    ("kaggle://keras/resnetv2/keras/resnet_50_imagenet", "kagglehub.model_download('keras/resnetv2/keras/resnet_50_imagenet')"),
    ("hf://keras/resnet_50_imagenet", "huggingface-cli download keras/resnet_50_imagenet"),
])
def test_remote_handles_say_to_download_first(handle, command):
    with pytest.raises(ValueError) as e:
        kr.from_preset(handle)
    message = str(e.value)
    assert "\n" not in message and "download it first" in message and command in message
