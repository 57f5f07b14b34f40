"""keras_resnet.deepen: a deeper model that starts as the same function."""

import numpy as np
import pytest

import keras
import keras_resnet as kr
from conftest import randomize_weights, trainable_params


def randomize(model, rng):
    return randomize_weights(model, rng, kernel_noise=0.02, bias_noise=0.02)


def assert_same_function(source, deep, x):
    """Same outputs in inference and in a training-mode forward pass (batch statistics)."""
    for training in (False, True):
        np.testing.assert_allclose(
            np.asarray(deep(x, training=training)), np.asarray(source(x, training=training)),
            rtol=1e-5, atol=1e-5, err_msg=f"training={training}")


def assert_carried(source, deep, rename=lambda name: name):
    """Every source weight sits, unchanged, in the layer of the same place."""
    for layer in source.layers:
        for a, b in zip(layer.get_weights(), deep.get_layer(rename(layer.name)).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)


def test_resnet20_to_56_same_function_and_parameter_count(rng):
    source = randomize(kr.ResNet20CIFAR(input_shape=(16, 16, 3), classifier_activation=None), rng)
    deep = kr.deepen(source, depth=56)
    assert isinstance(deep, kr.ResNet)
    assert deep.get_config()["stackwise_num_blocks"] == [9, 9, 9]
    assert deep.name == "resnet_cifar56"
    # He et al. 2015, Table 6: ResNet-56 has 0.85M parameters; 853,018 exactly.
    assert trainable_params(deep) == 853018 == trainable_params(kr.ResNet56CIFAR())
    assert len(deep.layers) > len(source.layers)
    assert_carried(source, deep)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    assert_same_function(source, deep, x)
    # The inserted blocks' BN moving statistics do not reach the output.
    for name in ("stage1_block4_bn1", "stage1_block4_bn2", "stage3_block9_bn2"):
        gamma, beta, mean, var = deep.get_layer(name).get_weights()
        deep.get_layer(name).set_weights([gamma, beta, rng.normal(0, 3, mean.shape).astype("f4"),
                                          rng.uniform(0.1, 9, var.shape).astype("f4")])
    assert_same_function(source, deep, x)
    # The inserted blocks (4..9 of each stage) pass their input through unchanged.
    probe = keras.Model(deep.input, [deep.get_layer("stage2_block3_out").output,
                                     deep.get_layer("stage2_block9_out").output])
    a, b = probe(x, training=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(np.abs(np.asarray(a)).max()) > 0


def test_preact_resnet20_to_56(rng):
    source = randomize(kr.resnet_cifar(20, preact=True, input_shape=(8, 8, 3),
                                       classifier_activation=None), rng)
    deep = kr.deepen(source, blocks_per_stage=[9, 9, 9])
    assert trainable_params(deep) == trainable_params(kr.resnet_cifar(56, preact=True))
    # The inserted pre-activation blocks end in an all-zero convolution.
    assert not np.any(deep.get_layer("stage3_block4_conv2").get_weights()[0])
    assert_carried(source, deep)
    assert_same_function(source, deep, rng.normal(size=(4, 8, 8, 3)).astype("float32"))


def test_imagenet_bottleneck_resnet50_to_101(rng):
    source = kr.ResNet50(input_shape=(32, 32, 3), classes=7, classifier_activation=None)
    for layer in source.layers:  # random BN statistics on top of the random kernels
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.2, beta.shape).astype("float32"),
                               rng.normal(0, 0.5, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2.0, var.shape).astype("float32")])
    deep = kr.deepen(source, depth=101)
    assert deep.get_config()["stackwise_num_blocks"] == [3, 4, 23, 3]
    # torchvision's ResNet-101 with a 7-class head: 44,549,160 - 2048*993 - 993.
    assert trainable_params(deep) == 44549160 - 2048 * 993 - 993
    assert_same_function(source, deep, rng.normal(size=(2, 32, 32, 3)).astype("float32"))


def test_stride_in_last_block_preact_bottleneck_keeps_the_strided_block_last(rng):
    source = randomize(kr.ResNet([2, 2], [4, 8], block="bottleneck", stem="cifar", preact=True,
                                 stride_block="last", input_shape=(8, 8, 3), classes=5,
                                 classifier_activation=None), rng)
    deep = kr.deepen(source, blocks_per_stage=[3, 4])
    # Each stage's last source block (stage 2's strides) is the grown stage's last block.
    assert_carried(source, deep, rename=lambda n: n.replace("stage2_block2_", "stage2_block4_")
                   .replace("stage1_block2_", "stage1_block3_"))
    assert deep.get_layer("stage2_block4_conv2").strides == (2, 2)
    assert_same_function(source, deep, rng.normal(size=(3, 8, 8, 3)).astype("float32"))
    with pytest.raises(ValueError, match="cannot grow stage 2: with stride_block='last'"):
        kr.deepen(kr.ResNet([2, 1], [4, 8], stem="cifar", stride_block="last",
                            input_shape=(8, 8, 3)), blocks_per_stage=[2, 2])


def test_keras_round_trip(tmp_path, rng):
    source = randomize(kr.resnet_cifar(8, input_shape=(8, 8, 1), classifier_activation=None), rng)
    deep = kr.deepen(source, depth=20)
    path = str(tmp_path / "deep.keras")
    deep.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, kr.ResNet)
    assert loaded.get_config() == deep.get_config()
    assert_same_function(source, loaded, rng.normal(size=(4, 8, 8, 1)).astype("float32"))


@pytest.mark.parametrize("build, kwargs, message", [
    (lambda: kr.resnet_cifar(8, plain=True), dict(depth=20),
     "cannot deepen a plain network (residual=False)"),
    (lambda: kr.resnet_cifar(8, shortcut="C"), dict(depth=20),
     "cannot deepen a model with option-C shortcuts"),
    (lambda: kr.resnet_cifar(20), dict(depth=14),
     "blocks per stage [2, 2, 2] are fewer than the source's [3, 3, 3]"),
    (lambda: kr.resnet_cifar(20), dict(blocks_per_stage=[4, 2, 4]),
     "fewer than the source's [3, 3, 3] in stage 2"),
    (lambda: kr.ResNet18(input_shape=(32, 32, 3)), dict(depth=50),
     "depth=50 is a different family: ImageNet ResNet-50 has bottleneck blocks"),
    (lambda: kr.resnet_cifar(20), dict(blocks_per_stage=[3, 3, 3, 3]),
     "has 4 stages and the source model 3"),
    (lambda: kr.resnet_cifar(20), dict(depth=21), "accepted: 6n+2"),
    (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), dict(depth=20),
     "deepen needs a keras_resnet ResNet model"),
])
def test_refusals(build, kwargs, message):
    with pytest.raises(ValueError) as info:
        kr.deepen(build(), **kwargs)
    text = str(info.value)
    assert message in text and "accepted" in text and "\n" not in text


def test_init_from_sources_are_checked(tmp_path):
    from keras_resnet.growth import load_source

    (tmp_path / "empty_run").mkdir()
    (tmp_path / "weights.h5").write_bytes(b"")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(str(tmp_path / "other.keras"))
    cases = [(tmp_path / "empty_run", "is a directory without last.keras or best.keras"),
             (tmp_path / "weights.h5", "is not a run directory or an existing .keras file"),
             (tmp_path / "missing.keras", "is not a run directory or an existing .keras file"),
             (tmp_path / "broken.keras", "is not a valid .keras file"),
             (tmp_path / "other.keras", "holds a Sequential")]
    for path, message in cases:
        with pytest.raises(ValueError) as info:
            load_source(str(path))
        assert message in str(info.value) and "accepted" in str(info.value)
        assert "\n" not in str(info.value)
    source = kr.resnet_cifar(8, input_shape=(8, 8, 1))
    run = tmp_path / "run"
    run.mkdir()
    source.save(str(run / "best.keras"))
    model, path = load_source(str(run))
    assert path == str(run / "best.keras") and model.get_config() == source.get_config()


def test_deepened_model_fine_tunes(rng):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 8, 8, 1) / 16.0).astype("float32")[:512]
    y = y[:512]
    keras.utils.set_random_seed(0)
    source = kr.resnet_cifar(8, input_shape=(8, 8, 1), classifier_activation=None)
    deep = kr.deepen(source, depth=14)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before = float(loss(y, deep(x, training=False)))
    deep.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=loss)
    deep.fit(x, y, batch_size=64, epochs=4, verbose=0, shuffle=False)
    after = float(loss(y, deep(x, training=False)))
    # Untrained: about ln(10) = 2.3; a quarter of that after four epochs.
    assert after < 0.25 * before, (before, after)
    # The inserted blocks learned: their zeroed gamma moved away from zero.
    assert np.abs(deep.get_layer("stage1_block2_bn2").get_weights()[0]).max() > 1e-3


@pytest.mark.slow
def test_deepened_model_exports_and_runs_in_litert_and_onnx_runtime(tmp_path, rng):
    """A deepened model is an ordinary keras_resnet model: it exports, and the TFLite and
    ONNX files compute what the shallow source computes (within float32 rounding)."""
    from keras_resnet.export import export_all

    source = randomize(kr.ResNet20CIFAR(input_shape=(8, 8, 1), classes=5), rng)
    deep = kr.deepen(source, depth=32)
    images = rng.uniform(0, 255, (16, 8, 8, 1)).astype("float32")
    report = export_all(deep, str(tmp_path), formats="tflite,onnx", tflite_precisions="fp32",
                        onnx_precisions="fp32", eval_data=(images, None), latency_runs=1, progress=None)
    assert report["passed"]
    ref = np.asarray(source(images, training=False))  # softmax probabilities
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime as ort

    runner = Interpreter(model_path=str(tmp_path / "tflite" / f"{deep.name}_fp32.tflite")
                         ).get_signature_runner("serving_default")
    session = ort.InferenceSession(str(tmp_path / "onnx" / f"{deep.name}_fp32.onnx"),
                                   providers=["CPUExecutionProvider"])
    for logits in (runner(images=images)["logits"], session.run(["logits"], {"images": images})[0]):
        # Softmax probabilities of the source vs the deep file's (1e-4: another runtime's kernels).
        np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), ref,
                                   atol=1e-4)
