"""Pyramid outputs under keras-hub's names, checked against keras-hub's own backbone."""

import numpy as np
import pytest

import keras_resnet as kr

keras_hub = pytest.importorskip("keras_hub")


@pytest.mark.parametrize("block_type,ctor", [("basic_block", "ResNet18"),
                                              ("bottleneck_block", "ResNet50")])
def test_levels_strides_and_channels_match_keras_hub(block_type, ctor):
    blocks = [2, 2, 2, 2] if block_type == "basic_block" else [3, 4, 6, 3]
    hub = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2], block_type=block_type, image_shape=(64, 64, 3))
    model = getattr(kr, ctor)(include_top=False, input_shape=(64, 64, 3))
    pyramid = kr.feature_pyramid(model)
    assert list(pyramid.pyramid_outputs) == list(hub.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    for level, tensor in hub.pyramid_outputs.items():
        assert tuple(pyramid.pyramid_outputs[level].shape) == tuple(tensor.shape)
    assert pyramid.feature_strides == {"P2": 4, "P3": 8, "P4": 16, "P5": 32}
    # The model computes them: a 64x64 image gives 16, 8, 4, 2 pixel maps.
    out = pyramid(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (1, 64 // s, 64 // s, int(hub.pyramid_outputs[k].shape[-1]))
        for k, s in pyramid.feature_strides.items()}
    # The symbolic outputs are the model's own stage outputs (usable to build heads).
    outputs = kr.pyramid_outputs(model)
    assert outputs["P5"] is model.get_layer("stage4_block2_out" if ctor == "ResNet18"
                                            else "stage4_block3_out").output


def test_dilated_strides_and_a_subset():
    model = kr.ResNet50(include_top=False, output_stride=8, input_shape=(64, 64, 3))
    pyramid = kr.feature_pyramid(model, stages=[2, 3, 4])
    assert pyramid.feature_strides == {"P3": 8, "P4": 8, "P5": 8}
    with pytest.raises(ValueError, match=r"stages=\[5\]: accepted stage numbers are 1..4 \(P2..P5\)"):
        kr.pyramid_outputs(model, stages=[5])
