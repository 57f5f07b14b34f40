"""Importing PyTorch ResNet checkpoints with torchvision's parameter names.

The expectation is torchvision itself: its ResNet-18 and ResNet-50 (10 classes), random
weights and non-trivial BatchNorm running statistics, run in eval mode; the keras_resnet
model loaded from its checkpoint must give the same logits.
"""

import sys

import numpy as np
import pytest
import torch
from torch_libraries import libraries
from torch_reference import randomized_eval, rel_error, torch_logits

import keras
import tensorflow as tf

import keras_resnet as kr
from keras_resnet import weights as W

from conftest import run_python


CLASSES = 10
torchvision = libraries()[0]


def reference(depth, seed=0):
    """torchvision's ResNet-``depth`` with random weights and BN running statistics, in
    eval mode.

    The running statistics are those of a real batch (so activations keep a sane scale
    through the network), then perturbed, and gamma/beta are random: nothing is at its
    default of 1/0.
    """
    torch.manual_seed(seed)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=CLASSES)
    return randomized_eval(net, 96)


def features(net, x):
    """torchvision's forward pass without the classifier (global average pooled)."""
    body = torch.nn.Sequential(*list(net.children())[:-1])  # all but fc
    with torch.no_grad():
        return torch.flatten(body(torch.from_numpy(x).permute(0, 3, 1, 2)), 1).numpy()


def images(n=2, size=224, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def r18_pth(tmp_path_factory):
    net = reference(18)
    path = tmp_path_factory.mktemp("r18") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return net, str(path)


@pytest.mark.parametrize("depth", [18, 50])
def test_pth_logits_match_pytorch(tmp_path, depth):
    net = reference(depth)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(net.state_dict(), path)
    x = images()
    want = torch_logits(net, x)
    assert np.std(want) > 1e-2
    model = getattr(kr, f"ResNet{depth}")(
        weights=str(path), input_shape=(224, 224, 3), classes=CLASSES, classifier_activation=None
    )
    assert rel_error(model(x, training=False), want) <= 1e-4


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_safetensors_without_torch(tmp_path):
    from safetensors.torch import save_file

    x = images()
    for depth in (18, 50):
        net = reference(depth, seed=depth)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  str(tmp_path / f"resnet{depth}.safetensors"))
        np.save(tmp_path / f"want{depth}.npy", torch_logits(net, x))
    np.save(tmp_path / "x.npy", x)
    run_python(f"""
        import sys, numpy as np
        import keras_resnet as kr
        x = np.load({str(tmp_path / "x.npy")!r})
        for depth in (18, 50):
            model = getattr(kr, f"ResNet{{depth}}")(
                weights={str(tmp_path)!r} + f"/resnet{{depth}}.safetensors",
                input_shape=(224, 224, 3), classes={CLASSES}, classifier_activation=None)
            np.save({str(tmp_path)!r} + f"/got{{depth}}.npy", np.asarray(model(x, training=False)))
        assert "torch" not in sys.modules, "torch was imported"
    """)
    for depth in (18, 50):
        got = np.load(tmp_path / f"got{depth}.npy")
        assert rel_error(got, np.load(tmp_path / f"want{depth}.npy")) <= 1e-4


def test_features_without_classifier(r18_pth):
    net, path = r18_pth
    x = images(size=96)
    model = kr.ResNet18(weights=path, include_top=False, pooling="avg")
    want = features(net, x)
    assert rel_error(model(x), want) <= 1e-4


def test_wrapped_and_prefixed_bfloat16_state_dicts(tmp_path):
    from safetensors.torch import save_file

    net = reference(18)
    state = net.state_dict()
    x = images(size=64)
    want = torch_logits(net, x)
    # A training checkpoint: {"state_dict": {"module.<key>": ...}} as DataParallel saves it.
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    model = kr.ResNet18(weights=str(wrapped), classes=CLASSES, classifier_activation=None)
    assert rel_error(model(x), want) <= 1e-4
    # bfloat16 tensors (NumPy has no such dtype): the stored values, widened to float32.
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    save_file(bf16, str(tmp_path / "bf16.safetensors"))
    loaded = W.read(str(tmp_path / "bf16.safetensors"))
    np.testing.assert_array_equal(
        loaded["stage2_block1_conv1"][0],
        bf16["layer2.0.conv1.weight"].float().numpy().transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(loaded["predictions"][0], bf16["fc.weight"].float().numpy().T)


def test_convert_detects_the_architecture(r18_pth):
    net, path = r18_pth
    model = W.convert(path, classifier_activation=None)
    assert model.name == "resnet18"
    config = model.get_config()
    assert config["stackwise_num_blocks"] == [2, 2, 2, 2] and config["block"] == "basic"
    assert config["classes"] == CLASSES
    x = images(size=64)
    assert rel_error(model(x), torch_logits(net, x)) <= 1e-4


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def unchanged(model, before):
    return all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_wrong_depth_names_the_key_and_loads_nothing(r18_pth):
    _, path = r18_pth

    def refused(model):
        before = snapshot(model)
        with pytest.raises(ValueError) as e:
            W.load_weights(model, path)
        assert unchanged(model, before)
        return str(e.value)

    msg = refused(kr.ResNet34(classes=CLASSES))
    assert "torchvision/timm ResNet-18 (basic blocks [2, 2, 2, 2])" in msg
    assert "resnet34 has basic blocks [3, 4, 6, 3]" in msg
    assert "key 'layer1.2.conv1.weight' is not in the checkpoint" in msg
    assert "shape (3, 3, 64, 64)" in msg
    msg = refused(kr.ResNet50(classes=CLASSES))
    assert "key 'layer1.0.conv1.weight' has shape (64, 64, 3, 3) (as Keras (3, 3, 64, 64))" in msg
    assert "'stage1_block1_conv1' weight 0 has shape (1, 1, 64, 64)" in msg


def test_key_and_shape_mismatches(r18_pth):
    net, _ = r18_pth
    state = net.state_dict()
    model = kr.ResNet18(classes=CLASSES)
    before = snapshot(model)

    def error(bad):
        with pytest.raises(ValueError) as e:
            W.load_weights(model, bad)
        assert unchanged(model, before)
        return str(e.value)

    bad = dict(state, **{"layer3.1.conv2.weight": torch.zeros(256, 128, 3, 3)})
    msg = error(bad)
    assert "key 'layer3.1.conv2.weight' has shape (256, 128, 3, 3) (as Keras (3, 3, 128, 256))" in msg
    assert "model layer 'stage3_block2_conv2' weight 0 has shape (3, 3, 256, 256)" in msg

    bad = {k: v for k, v in state.items() if k != "layer4.1.bn2.running_var"}
    assert "missing key 'layer4.1.bn2.running_var'" in error(bad)

    bad = {k: v for k, v in state.items() if not k.startswith("layer2.1.conv1.")}
    assert "key 'layer2.1.conv1.weight' is not in the checkpoint" in error(bad)

    bad = dict(state, **{"layer2.1.gate.fc.weight": torch.zeros(8, 128)})
    msg = error(bad)
    assert "unexpected key 'layer2.1.gate.fc.weight' (shape (8, 128))" in msg

    bad = dict(state, **{"conv1.bias": torch.zeros(64)})
    assert "keys conv1.weight, conv1.bias" in error(bad)

    with pytest.raises(ValueError, match=r"classes=1000 does not match the 10 classes"):
        kr.ResNet18(weights=dict(state))
    with pytest.raises(ValueError, match=r"needs bn_epsilon=1e-05 \(model has 0.001\)"):
        kr.ResNet18(weights=dict(state), classes=CLASSES, bn_epsilon=1e-3)


def test_pth_without_pytorch_says_what_to_install(r18_pth, monkeypatch):
    _, path = r18_pth
    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without PyTorch sees
    with pytest.raises(ImportError, match=r"needs PyTorch \(pip install torch\); a .safetensors file"):
        kr.ResNet18(weights=path, classes=CLASSES)


def test_pth_needs_a_loadable_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"broken.pth' is not a loadable PyTorch state_dict"):
        kr.ResNet18(weights=str(path))


@pytest.mark.slow
def test_converted_model_fine_tunes_and_exports(r18_pth, tmp_path):
    net, path = r18_pth
    model = W.convert(path, input_shape=(32, 32, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, CLASSES, 16)
    # Before training, the converted model is the PyTorch model.
    assert rel_error(model(x), torch_logits(net, x)) <= 1e-4
    # The usual fine-tuning recipe: BatchNorm layers frozen (they then run in inference
    # mode with the imported statistics), everything else trained.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(keras.optimizers.SGD(0.001, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss_before = model.evaluate(x, y, verbose=0)
    stem_before = model.get_layer("stem_conv").get_weights()[0].copy()
    bn_before = model.get_layer("stage2_block1_bn1").get_weights()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    loss_after = model.evaluate(x, y, verbose=0)
    # The first step sees the imported model (same loss as before training); memorising
    # 16 examples then drives the loss down, through the imported weights (the BN layers are
    # frozen, so every step's loss is a deterministic function of the weights: halving it in
    # 8 steps is learning, not noise).
    assert history[0] == pytest.approx(loss_before, rel=1e-3)
    assert history[-1] < 0.5 * history[0]
    assert loss_after < 0.25 * loss_before
    assert not np.array_equal(model.get_layer("stem_conv").get_weights()[0], stem_before)
    for a, b in zip(bn_before, model.get_layer("stage2_block1_bn1").get_weights()):
        np.testing.assert_array_equal(a, b)

    # Exports like any other model: a SavedModel that serves the same outputs, and a
    # .keras file that reloads with safe_mode.
    model.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = loaded.serve(tf.constant(x)).numpy()
    expected = model.predict(x, verbose=0)
    assert float(np.max(np.abs(served - expected))) <= 1e-5
    model.save(tmp_path / "tuned.keras")
    reloaded = keras.saving.load_model(tmp_path / "tuned.keras", compile=False, safe_mode=True)
    assert float(np.max(np.abs(reloaded.predict(x, verbose=0) - expected))) <= 1e-5


def test_torchvision_preprocessing_is_normalize_of_pixels_over_255():
    from keras_resnet.data import apply_preprocessing

    pixels = np.random.default_rng(4).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    t = torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    want = ((t - mean) / std).permute(0, 2, 3, 1).numpy()
    got = apply_preprocessing(pixels, W.PREPROCESSING["torchvision"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
