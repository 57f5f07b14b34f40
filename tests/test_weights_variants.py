"""Importing ResNeXt, Wide ResNet, ResNet-D, SE- and ECA-ResNet checkpoints.

The expectation is PyTorch itself: the networks written here after torchvision's
``models/resnet.py`` (ResNeXt, Wide ResNet) and timm's ``models/resnet.py`` (deep stem,
average-pool shortcuts, ``se.fc1``/``se.fc2``, ``se.conv``, dilation), with their module
names, so their ``state_dict`` keys are the published checkpoints' keys. Random weights and
non-trivial BatchNorm statistics; eval mode; the keras_resnet model loaded from the
``state_dict`` must give the same logits. The full-size models are checked against the real
torchvision and timm networks in test_reference_libraries.py; here are the shallow,
dilated and mixed configurations.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch_reference import randomized_eval, rel_error, torch_logits
from torch.nn import functional as F

import keras_resnet as kr
from keras_resnet import weights as W


# ----------------------------------------------------------------------------------------
# A reference after torchvision's Bottleneck/BasicBlock and timm's options.


def make_divisible(v, divisor=8, round_limit=0.0):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * v else new


class SEModule(nn.Module):  # timm.layers.squeeze_excite.SEModule
    def __init__(self, channels):
        super().__init__()
        rd = make_divisible(channels / 16, 8)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x):
        s = F.relu(self.fc1(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.fc2(s))


class EcaModule(nn.Module):  # timm.layers.eca.EcaModule
    def __init__(self, channels, gamma=2, beta=1):
        super().__init__()
        t = int(abs(math.log(channels, 2) + beta) / gamma)
        k = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x):
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * torch.sigmoid(y).view(x.shape[0], -1, 1, 1)


def attention(kind, channels):
    return {"se": SEModule, "eca": EcaModule}[kind](channels) if kind else None


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample, groups=1, width=64, attn=None,
                 dilation=1, first_dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, first_dilation, first_dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = attention(attn, planes)
        self.downsample = downsample

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        return F.relu(y + s)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample, groups=1, width=64, attn=None,
                 dilation=1, first_dilation=1):
        super().__init__()
        w = int(planes * (width / 64.0)) * groups  # torchvision's width rule
        self.conv1 = nn.Conv2d(cin, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, w, 3, stride, first_dilation, first_dilation, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se = attention(attn, planes * 4)
        self.downsample = downsample

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        return F.relu(y + s)


class AvgPool2dSame(nn.AvgPool2d):  # timm: "same" zero padding, then an average pool
    def forward(self, x):
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1)


def downsample(cin, cout, stride, dilation, avg_down):
    if not avg_down:  # torchvision: downsample.0 conv, downsample.1 BN
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    # timm's downsample_avg: downsample.0 pool, downsample.1 conv, downsample.2 BN
    if stride == 1 and dilation == 1:
        pool = nn.Identity()
    elif stride == 1:
        pool = AvgPool2dSame(2, 1)
    else:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    return nn.Sequential(pool, nn.Conv2d(cin, cout, 1, 1, bias=False), nn.BatchNorm2d(cout))


class TorchResNet(nn.Module):
    def __init__(self, block, layers, classes=10, groups=1, width=64, deep_stem=False,
                 avg_down=False, attn=None, output_stride=32):
        super().__init__()
        if deep_stem:  # timm stem_type="deep", stem_width=32: conv1.0/1/3/4/6
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, net_stride, dilation = 64, 4, 1
        for i, (n, planes) in enumerate(zip(layers, [64, 128, 256, 512])):
            stride = 1 if i == 0 else 2
            prev = dilation
            if net_stride >= output_stride:  # timm's make_blocks
                dilation *= stride
                stride = 1
            else:
                net_stride *= stride
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                ds = None
                if b == 0 and (s != 1 or cin != planes * block.expansion):
                    ds = downsample(cin, planes * block.expansion, s, dilation, avg_down)
                blocks.append(block(cin, planes, s, ds, groups, width, attn, dilation, prev))
                prev = dilation
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(x.mean((2, 3)))


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


def reference(layers=(3, 4, 6, 3), block=Bottleneck, seed=0, classes=CLASSES, **options):
    """A reference network with random weights and BN running statistics, in eval mode."""
    torch.manual_seed(seed)
    net = TorchResNet(block, list(layers), classes=classes, **options)
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
    net = reference(layers=(1, 1, 1, 1), block=BasicBlock, deep_stem=True, avg_down=True, attn="eca")
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
