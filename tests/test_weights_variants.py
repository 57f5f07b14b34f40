"""Importing ResNeXt, Wide ResNet, ResNet-D, SE- and ECA-ResNet checkpoints.

The expectation is timm itself: its ``ResNet`` class built with the options (grouped and
wide bottlenecks, deep stem, average-pool shortcuts, SE and ECA, dilation) on shallow
networks, random weights and non-trivial BatchNorm statistics, eval mode; the keras_resnet
model loaded from its ``state_dict`` must give the same logits. The full-size named models
are checked against torchvision's and timm's own in test_reference_libraries.py.
"""

import numpy as np
import pytest
import torch
from torch_libraries import libraries
from torch_reference import randomized_eval, rel_error, torch_logits

import keras_resnet as kr
from keras_resnet import weights as W


CLASSES = 10


def test_resnext101_32x8d_parameter_count_matches_torchvision():
    """torchvision's published count (no forward pass needed)."""
    model = kr.ResNeXt101_32x8d(input_shape=(32, 32, 3))
    assert trainable(model) == 88_791_336


def test_convert_builds_the_eca_resnet_d_a_checkpoint_holds():
    """ECA-ResNet-D (timm ecaresnet50d's keys) on a shallow network: convert() detects the
    deep stem, the average-pool shortcuts and ECA from the keys alone."""
    net = reference(layers=(1, 2, 1, 1), deep_stem=True, avg_down=True, attn="eca")
    x = images(size=48)
    model = W.convert(net.state_dict(), classifier_activation=None)
    config = model.get_config()
    assert (config["stem"], config["avg_down"], config["attention"]) == ("deep", True, "eca")
    assert config["stackwise_num_blocks"] == [1, 2, 1, 1]
    assert rel_error(model(x, training=False), torch_logits(net, x)) <= 1e-4


def reference(layers=(3, 4, 6, 3), block="bottleneck", seed=0, classes=CLASSES, groups=1, width=64,
              deep_stem=False, avg_down=False, attn=None, output_stride=32):
    """timm's ResNet with these options, random weights and BN running statistics, in eval
    mode (its module names are the published checkpoints' keys)."""
    timm_resnet = libraries()[1].models.resnet
    torch.manual_seed(seed)
    net = timm_resnet.ResNet(
        timm_resnet.BasicBlock if block == "basic" else timm_resnet.Bottleneck, list(layers),
        num_classes=classes, cardinality=groups, base_width=width,
        stem_type="deep" if deep_stem else "", stem_width=32 if deep_stem else 64,
        avg_down=avg_down, output_stride=output_stride,
        block_args=dict(attn_layer=attn) if attn else None)
    return randomized_eval(net, 64)


def images(n=2, size=64, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_checkpoint_matches_pytorch(output_stride):
    """timm's output_stride rule (stride kept at 1, dilation instead), with ResNet-D
    shortcuts (its AvgPool2dSame in dilated stages), on a small bottleneck network."""
    options = dict(deep_stem=True, avg_down=True, attn="se", groups=4, width=16)
    net = reference(layers=(1, 2, 1, 2), output_stride=output_stride, **options)
    x = images(size=48)
    want = torch_logits(net, x)
    model = kr.ResNet(
        [1, 2, 1, 2], [64, 128, 256, 512], block="bottleneck", stem="deep", avg_down=True,
        attention="se", groups=4, width_per_group=16, output_stride=output_stride,
        classes=CLASSES, classifier_activation=None, weights=net.state_dict(),
    )
    assert rel_error(model(x, training=False), want) <= 1e-4


def test_basic_block_variants_match_pytorch():
    net = reference(layers=(1, 1, 1, 1), block="basic", deep_stem=True, avg_down=True, attn="eca")
    x = images(size=40)
    model = kr.ResNet([1, 1, 1, 1], [64, 128, 256, 512], stem="deep", avg_down=True, attention="eca",
                      weights=net.state_dict(), classes=CLASSES, classifier_activation=None)
    assert rel_error(model(x, training=False), torch_logits(net, x)) <= 1e-4


def test_variant_mismatches_name_the_option_and_load_nothing():
    net = reference(layers=(1, 1, 1, 1), groups=8, width=8)
    state = net.state_dict()
    model = kr.ResNet([1, 1, 1, 1], [64, 128, 256, 512], block="bottleneck", classes=CLASSES)
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"needs groups=8 \(model has 1\), width_per_group=8 \(model has 64\)"):
        W.load_weights(model, state)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # A ResNet-D checkpoint into a plain model, and an SE checkpoint into a model without.
    with pytest.raises(ValueError, match=r"stem='deep' \(model has 'imagenet'\).*avg_down=True"):
        kr.ResNet([1, 1, 1, 1], [64, 128, 256, 512], block="bottleneck", classes=CLASSES,
                  weights=reference(layers=(1, 1, 1, 1), deep_stem=True, avg_down=True).state_dict())
    se = reference(layers=(1, 1, 1, 1), attn="se").state_dict()
    with pytest.raises(ValueError, match=r"attention='se' \(model has None\)"):
        kr.ResNet([1, 1, 1, 1], [64, 128, 256, 512], block="bottleneck", classes=CLASSES, weights=se)
    # An SE key the block does not have: named as the checkpoint names it.
    bad = dict(se)
    del bad["layer3.0.se.fc2.bias"]
    with pytest.raises(ValueError, match=r"stage3_block1_se_fc2' has 2 weight arrays; state_dict has 1 "
                                         r"\(keys layer3.0.se.fc2.weight\)"):
        kr.ResNet([1, 1, 1, 1], [64, 128, 256, 512], block="bottleneck", attention="se",
                  classes=CLASSES, weights=bad)
