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


# library, model name, keras_resnet constructor, what convert() must detect
CASES = [
    ("torchvision", "resnet50", "ResNet50", {}),
    ("torchvision", "resnext50_32x4d", "ResNeXt50_32x4d", {"groups": 32, "width_per_group": 4}),
    ("torchvision", "wide_resnet50_2", "WideResNet50_2", {"width_per_group": 128}),
    ("timm", "resnet50d", "ResNet50D", {"stem": "deep", "avg_down": True}),
    ("timm", "seresnet50", "SEResNet50", {"attention": "se"}),
    ("timm", "ecaresnet50d", "ECAResNet50D", {"stem": "deep", "avg_down": True, "attention": "eca"}),
]
FAST = {"resnet50", "resnet50d"}


@pytest.mark.parametrize("library,name,ctor,detected", [
    pytest.param(*case, marks=() if case[1] in FAST else pytest.mark.slow, id=f"{case[0]}-{case[1]}")
    for case in CASES])
def test_library_model_converts_to_the_same_logits(library, name, ctor, detected):
    net = (_torchvision if library == "torchvision" else _timm)(name)
    state = net.state_dict()
    x = images()
    want = torch_logits(net, x)
    assert want.shape == (2, 1000) and np.std(want) > 1e-2
    # The named constructor with the checkpoint as weights=...
    model = getattr(kr, ctor)(weights=state, classifier_activation=None)
    assert rel_error(model(x, training=False), want) <= 1e-4
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == \
        sum(p.numel() for p in net.parameters())
    # ... and convert(), which reads the architecture from the keys and shapes alone.
    converted = W.convert(state, classifier_activation=None)
    config = converted.get_config()
    assert {k: config[k] for k in detected} == detected
    assert rel_error(converted(x, training=False), want) <= 1e-4


def test_resnet26t_is_refused_naming_its_stem():
    """timm's resnet26t has a tiered deep stem (24, 32, 64 channels); keras_resnet's deep
    stem is (32, 32, 64), so its state_dict is refused rather than loaded wrongly."""
    state = timm.create_model("resnet26t", pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"conv1\.0|conv1\.3|stem"):
        model = W.convert(state, classifier_activation=None)
        # If the keys happened to fit, the numbers would have to as well.
        assert model is None
