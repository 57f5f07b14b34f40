"""Conversion checked against the real libraries: torchvision's and timm's own ResNets.

Each network is built by torchvision or timm, randomly initialised (seeded) with
non-trivial BatchNorm statistics, run in eval mode; keras_resnet converts its own
``state_dict`` (nothing written in this repository stands between them) and must give the
same logits on a 64x64 batch, within 1e-4 of the logits' scale (float32 rounding through
~50 layers).
"""

import numpy as np
import pytest
from torch_libraries import libraries

torch = pytest.importorskip("torch")
torchvision, timm = libraries()

from torch_reference import randomized_eval, rel_error, torch_logits  # noqa: E402

import keras_resnet as kr  # noqa: E402
from keras_resnet import weights as W  # noqa: E402

SIZE = 64


def images(n=2, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, SIZE, SIZE, 3)).astype("float32")


def _torchvision(name):
    torch.manual_seed(0)
    return randomized_eval(getattr(torchvision.models, name)(weights=None), SIZE)


def _timm(name):
    torch.manual_seed(0)
    return randomized_eval(timm.create_model(name, pretrained=False), SIZE)


# library, model name, keras_resnet constructor, what convert() must detect, the published
# parameter count (torchvision's model docs, timm's model cards), the checkpoint's label
CASES = [
    ("torchvision", "resnet50", "ResNet50", {}, 25_557_032, "ResNet-50"),
    ("torchvision", "resnext50_32x4d", "ResNeXt50_32x4d", {"groups": 32, "width_per_group": 4},
     25_028_904, "ResNeXt-50 32x4d"),
    ("torchvision", "wide_resnet50_2", "WideResNet50_2", {"width_per_group": 128}, 68_883_240,
     "Wide ResNet-50-2"),
    ("timm", "resnet50d", "ResNet50D", {"stem": "deep", "avg_down": True}, 25_576_264, "ResNet-50-D"),
    ("timm", "seresnet50", "SEResNet50", {"attention": "se"}, 28_088_024, "SE-ResNet-50"),
    ("timm", "ecaresnet50d", "ECAResNet50D", {"stem": "deep", "avg_down": True, "attention": "eca"},
     None, "ECA-ResNet-50-D"),  # timm's card rounds it (25.6M)
]
FAST = {"resnet50d"}  # the others in the slow tier (~10-25 s each)


@pytest.mark.parametrize("library,name,ctor,detected,published,label", [
    pytest.param(*case, marks=() if case[1] in FAST else pytest.mark.slow, id=f"{case[0]}-{case[1]}")
    for case in CASES])
def test_library_model_converts_to_the_same_logits(library, name, ctor, detected, published, label,
                                                   tmp_path):
    net = (_torchvision if library == "torchvision" else _timm)(name)
    state = net.state_dict()
    source = state
    if name == "resnet50d":  # one through a .pth file, as users have them
        source = str(tmp_path / f"{name}.pth")
        torch.save(state, source)
    x = images()
    want = torch_logits(net, x)
    assert want.shape == (2, 1000) and np.std(want) > 1e-2
    # The named constructor with the checkpoint as weights=...
    model = getattr(kr, ctor)(weights=source, classifier_activation=None)
    assert rel_error(model(x, training=False), want) <= 1e-4
    count = sum(p.numel() for p in net.parameters())
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == count
    assert published is None or count == published
    assert W.inspect_checkpoint(state).describe() == f"torchvision/timm {label}"
    # ... and convert(), which reads the architecture from the keys and shapes alone.
    converted = W.convert(state, classifier_activation=None)
    config = converted.get_config()
    assert {k: config[k] for k in detected} == detected and converted.name == name
    assert rel_error(converted(x, training=False), want) <= 1e-4


def test_resnet26t_is_refused_naming_its_stem():
    """timm's resnet26t has a tiered deep stem (24, 32, 64 channels); keras_resnet's deep
    stem is (32, 32, 64), so its state_dict is refused, naming the key, rather than loaded
    wrongly (the options do not cover it)."""
    state = timm.create_model("resnet26t", pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"key 'conv1.0.weight' has shape \(24, 3, 3, 3\) .*"
                                         r"'stem_conv1' weight 0 has shape \(3, 3, 3, 32\)"):
        W.convert(state, classifier_activation=None)
