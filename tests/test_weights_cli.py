"""The converting command: ``python -m keras_resnet.weights SOURCE OUTPUT.keras``."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnet as kr

from conftest import ROOT


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "keras_resnet.weights", *map(str, args)],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )


def error_line(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("keras-resnet-convert")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def torchvision_state(rng, blocks=(2, 2, 2, 2), classes=5):
    """A random ResNet state_dict with torchvision's keys and PyTorch's layouts (NumPy only)."""
    state = {}

    def conv(key, cout, cin, k):
        state[key] = rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype("float32")

    def bn(key, c):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{key}.bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{key}.running_mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[f"{key}.running_var"] = rng.uniform(0.5, 1.5, c).astype("float32")
        state[f"{key}.num_batches_tracked"] = np.array(7, dtype="int64")

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for s, (n, w) in enumerate(zip(blocks, [64, 128, 256, 512]), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            conv(f"{p}.conv1.weight", w, cin, 3)
            bn(f"{p}.bn1", w)
            conv(f"{p}.conv2.weight", w, w, 3)
            bn(f"{p}.bn2", w)
            if b == 0 and s > 1:
                conv(f"{p}.downsample.0.weight", w, cin, 1)
                bn(f"{p}.downsample.1", w)
            cin = w
    state["fc.weight"] = rng.normal(0, 0.05, (classes, 512)).astype("float32")
    state["fc.bias"] = rng.normal(0, 0.1, classes).astype("float32")
    return state


def test_help():
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    for word in ("source", "output", "--input-shape", "--no-top", "--classifier-activation",
                 "keras.applications", "safetensors"):
        assert word in proc.stdout


@pytest.mark.slow
def test_converts_a_keras_applications_file(tmp_path):
    app = keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3), classes=10,
                                        classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    source = tmp_path / "resnet50v2.weights.h5"
    app.save_weights(source)
    out = tmp_path / "out" / "resnet50v2.keras"
    out.parent.mkdir()
    proc = cli(source, out, "--classifier-activation", "none", "--input-shape", "64,64,3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found keras.applications ResNet50V2" in proc.stdout
    assert f"wrote {out}" in proc.stdout
    assert sorted(os.listdir(out.parent)) == ["resnet50v2.keras"]  # no temporary left
    model = keras.saving.load_model(out, safe_mode=True)
    assert isinstance(model, kr.ResNet)
    assert model.input_shape == (None, 64, 64, 3)
    # ResNetV2's preprocessing ("tf") is inside: the model takes RGB pixels in 0..255.
    assert "preprocessing inside the model (tf)" in proc.stdout
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    want = np.asarray(app(keras.applications.resnet_v2.preprocess_input(x.copy())))
    assert float(np.max(np.abs(model.predict(x, verbose=0) - want))) <= 1e-4


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_converts_a_safetensors_file_like_weights_path(tmp_path):
    from safetensors.numpy import save_file

    save_file(torchvision_state(np.random.default_rng(1)), str(tmp_path / "r18.safetensors"))
    out = tmp_path / "r18.keras"
    proc = cli(tmp_path / "r18.safetensors", out, "--no-top", "--pooling", "avg", "--name", "backbone")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found torchvision/timm ResNet-18" in proc.stdout
    model = keras.saving.load_model(out, safe_mode=True)
    assert model.name == "backbone" and model.output_shape == (None, 512)
    direct = kr.ResNet18(weights=str(tmp_path / "r18.safetensors"), include_top=False, pooling="avg")
    x = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    # The written model takes pixels (torchvision's preprocessing inside); the directly
    # loaded one takes what the checkpoint's own model took.
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               direct.predict(kr.preprocess_input(x, mode="torch"), verbose=0),
                               atol=1e-4)


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_bad_inputs_exit_non_zero_and_write_nothing(tmp_path, capsys):
    from safetensors.numpy import save_file

    from keras_resnet.weights import main

    state = torchvision_state(np.random.default_rng(3))
    state["layer1.0.gate.fc.weight"] = np.zeros((4, 64), "float32")
    save_file(state, str(tmp_path / "se.safetensors"))
    out = tmp_path / "out.keras"

    proc = cli(tmp_path / "se.safetensors", out)  # the real command's exit status
    assert proc.returncode == 2
    assert "unexpected key 'layer1.0.gate.fc.weight' (shape (4, 64))" in error_line(proc)

    def fails(*args):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        return err[0]

    assert "no such file" in fails(tmp_path / "missing.pth", out)
    assert "must end in .keras" in fails(tmp_path / "se.safetensors", tmp_path / "out.h5")
    assert "does not exist" in fails(tmp_path / "se.safetensors", tmp_path / "nowhere" / "out.keras")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "se.safetensors"), str(out), "--input-shape", "64,64"])
    assert e.value.code == 2 and "H,W,C" in capsys.readouterr().err
    # A file that exists but holds no checkpoint: said so, not "not found".
    for name, what in (("junk.keras", "not a .keras model file"), ("junk.pth", "neither torch.save's zip archive nor a pickle"),
                       ("junk.h5", "not an HDF5 file")):
        (tmp_path / name).write_bytes(b"not a checkpoint\n")
        message = fails(tmp_path / name, out)
        assert what in message and "not found" not in message.lower(), message
        os.remove(tmp_path / name)

    assert sorted(os.listdir(tmp_path)) == ["se.safetensors"]


def test_the_commands_preprocessing_choices_are_the_converters():
    from keras_resnet.weights import command, converter

    assert command.PREPROCESSING_CHOICES == converter.PREPROCESSING_CHOICES
