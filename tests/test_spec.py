"""ResNet's options as data: ResNetSpec checks them once and the model is built from it."""

import dataclasses

import pytest

import keras_resnet as kr
from keras_resnet.models import ResNetSpec


def test_the_model_is_its_spec_and_its_config_is_the_specs():
    model = kr.ResNet18D(input_shape=(32, 32, 3), classes=5)
    spec = model.spec
    assert isinstance(spec, ResNetSpec)
    assert spec.stackwise_num_blocks == (2, 2, 2, 2) and spec.stackwise_strides == (1, 2, 2, 2)
    assert spec.stem == "deep" and spec.avg_down and spec.stem_filters == 64
    # The deep stem divides by 4 and three strided stages by 8: 32 pixels at least.
    assert spec.min_input_size == 32 and list(spec.stage_strides) == model.stage_strides() == [4, 8, 16, 32]
    config = model.get_config()
    assert config == {"name": model.name, "trainable": True, **spec.config()}
    assert kr.ResNet.from_config(config).spec == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.classes = 10


@pytest.mark.parametrize("options, message", [
    (dict(stem="deeper"), "stem='deeper' is not supported; accepted values: 'imagenet', 'cifar', 'deep'"),
    (dict(block="bottleneck", stackwise_num_filters=[8, 16, 32, 64], width_per_group=1),
     "give a bottleneck width below 1"),
    (dict(block="basic", groups=32), "basic blocks support only groups=1"),
    (dict(input_shape=(16, 16, 3)), "below this network's minimum input size 32"),
    (dict(stackwise_strides=[1, 2]), "expected one per stage (4)"),
])
def test_a_bad_option_is_refused_once_in_one_line(options, message):
    with pytest.raises(ValueError) as info:
        kr.ResNet(**{"stackwise_num_blocks": [2, 2, 2, 2],
                     "stackwise_num_filters": [64, 128, 256, 512], **options})
    assert message in str(info.value) and "\n" not in str(info.value)
