"""The model registry: one table of names that every name lookup resolves through."""

import inspect
import subprocess
import sys

import pytest

import keras_resnet as kr
from keras_resnet import registry

# The package's exported constructors of whole models (keras.applications-style names).
EXPORTED = sorted(n for n in kr.__all__ if n[0].isupper() and inspect.isfunction(getattr(kr, n)))


def test_every_exported_constructor_is_registered_once():
    assert EXPORTED, "no constructors exported"
    assert sorted(registry.MODELS) == EXPORTED
    listed = kr.list_models()
    assert len(listed) == len(set(n.lower() for n in listed))  # no name twice, in any case
    for name in EXPORTED:
        assert listed.count(name) == 1
        assert kr.resolve_model(name) is getattr(kr, name)


@pytest.mark.parametrize("spelling,expected", [
    ("ResNet50D", "ResNet50D"), ("resnet50d", "ResNet50D"), ("resnext50-32x4d", "ResNeXt50_32x4d"),
    ("ResNeXt50_32x4d", "ResNeXt50_32x4d"), ("wide_resnet50_2", "WideResNet50_2"),
    ("SEResNet50", "SEResNet50"), ("ecaresnet50d", "ECAResNet50D"),
    ("ResNet56CIFAR", "ResNet56CIFAR"), ("resnet56", "ResNet56CIFAR"),
    ("preactresnet164", "PreActResNet164CIFAR"),
])
def test_constructor_names_resolve_whatever_the_spelling(spelling, expected):
    assert kr.resolve_model(spelling) is registry.MODELS[expected]


@pytest.mark.parametrize("name,blocks,residual,preact,stem", [
    ("resnet8", [1, 1, 1], True, False, "cifar"),
    ("plain14", [2, 2, 2], False, False, "cifar"),
    ("preactresnet20", [3, 3, 3], True, True, "cifar"),
    ("resnet18", [2, 2, 2, 2], True, False, "imagenet"),
    ("plain34", [3, 4, 6, 3], False, False, "imagenet"),
])
def test_family_names_build_their_family(name, blocks, residual, preact, stem):
    config = kr.resolve_model(name)(input_shape=(32, 32, 3), classes=3).get_config()
    assert (config["stackwise_num_blocks"], config["residual"], config["preact"], config["stem"]) \
        == (blocks, residual, preact, stem)


def test_list_models_filters_like_timm():
    assert kr.list_models("resnext*") == ["ResNeXt101_32x8d", "ResNeXt101_64x4d", "ResNeXt50_32x4d"]
    fifty = kr.list_models("*50*")
    assert {"ResNet50", "ResNet50D", "SEResNet50", "ECAResNet50D", "plain50"} <= set(fifty)
    assert all("50" in n for n in fifty)
    assert kr.list_models("nothing*") == []
    assert "resnet50" not in fifty  # another spelling of ResNet50, listed once
    assert kr.resolve_model("resnet50") is kr.ResNet50
    for name in kr.list_models():  # every listed name resolves
        kr.resolve_model(name)


@pytest.mark.parametrize("typo,suggestion", [
    ("ResNet50DD", "ResNet50D"), ("resnext50_32x8d", "ResNeXt50_32x4d"), ("SEResNet5", "SEResNet50"),
])
def test_unknown_name_offers_close_matches(typo, suggestion):
    with pytest.raises(ValueError) as e:
        kr.resolve_model(typo)
    message = str(e.value)
    assert f"model={typo!r} is not supported" in message and "did you mean" in message
    assert suggestion in message.split("did you mean", 1)[1].split("?")[0]


def test_plain1202_is_not_listed_but_still_builds_by_name():
    """plain1202 cannot train in float32 (its first step's gradient overflows, measured in
    docs/layout.md), so the list, and the registry matrix made from it, leave it out; the
    name still resolves (6n+2 depths build), as do the residual 1,202-layer networks."""
    names = kr.list_models()
    assert "plain1202" not in names and "plain110" in names
    assert {"ResNet1202CIFAR", "preactresnet1202"} <= set(names)
    assert kr.list_models("plain*") == [n for n in names if n.startswith("plain")]
    build = kr.resolve_model("plain1202")
    assert build.args[0] == 1202 and build.keywords["plain"] is True


def test_unknown_name_of_another_kind_is_refused_without_guesses():
    with pytest.raises(ValueError, match="is not supported; accepted"):
        kr.resolve_model(50)
    with pytest.raises(ValueError, match="is not supported"):
        kr.resolve_model("resnet9")  # neither an ImageNet depth nor 6n+2


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_training_command_takes_every_variant_name(tmp_path):
    """--model resolves through the registry: a variant's name passes the training command's
    check (it was refused before), and a typo gets the suggestion, exit status 2."""
    from keras_resnet.training import TrainConfig
    from keras_resnet.training.config import check_config

    for name in registry.VARIANT_MODELS:
        cfg = TrainConfig(model=name).resolved(_digits())
        check_config(cfg)  # no error
    r = subprocess.run([sys.executable, "-I", "-c", "import sys; from keras_resnet.train import main; "
                        "sys.exit(main(['--model', 'ResNet50DD', '--epochs', '1']))"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "did you mean ResNet50D" in r.stderr.strip().splitlines()[-1]


def _digits():
    from keras_resnet import data

    return data.get_dataset("digits")
