"""timm and torchvision weight names (keras_resnet.create_model and its data table).

The table in the package (``keras_resnet/pretrained_cfgs.json``) is compared field by
field with what the installed libraries say: timm's ``get_pretrained_cfg`` (the configs
are in timm's code, nothing is downloaded) and torchvision's weights enums
(``.transforms()`` and ``.meta``). ``create_model`` is checked against the real timm and
torchvision networks with random weights.

Run as a script (``python tests/test_pretrained.py``) to regenerate the table from the
installed libraries.
"""

import json
import math
import os
import sys
import tempfile

import numpy as np
import pytest
from torch_libraries import libraries

torch = pytest.importorskip("torch")
torchvision, timm = libraries()

import keras_resnet as kr  # noqa: E402
from keras_resnet import pretrained  # noqa: E402

# keras_resnet constructor (and options) of each architecture the table covers.
ARCHITECTURES = {
    "resnet18": ("ResNet18", {}), "resnet34": ("ResNet34", {}), "resnet50": ("ResNet50", {}),
    "resnet101": ("ResNet101", {}), "resnet152": ("ResNet152", {}),
    "resnet18d": ("ResNet18D", {}), "resnet34d": ("ResNet34D", {}), "resnet50d": ("ResNet50D", {}),
    "resnet101d": ("ResNet101D", {}), "resnet152d": ("ResNet152D", {}), "resnet200d": ("ResNet200D", {}),
    "resnet50c": ("ResNet50", {"stem": "deep"}),
    "resnext50_32x4d": ("ResNeXt50_32x4d", {}), "resnext101_32x8d": ("ResNeXt101_32x8d", {}),
    "resnext101_64x4d": ("ResNeXt101_64x4d", {}),
    "resnext101_32x16d": ("ResNeXt101_32x8d", {"width_per_group": 16}),
    "resnext101_32x32d": ("ResNeXt101_32x8d", {"width_per_group": 32}),
    "resnext50d_32x4d": ("ResNeXt50_32x4d", {"stem": "deep", "avg_down": True}),
    "wide_resnet50_2": ("WideResNet50_2", {}), "wide_resnet101_2": ("WideResNet101_2", {}),
    "seresnet50": ("SEResNet50", {}), "seresnet101": ("SEResNet101", {}),
    "seresnet152d": ("ResNet152D", {"attention": "se"}),
    "seresnext50_32x4d": ("ResNeXt50_32x4d", {"attention": "se"}),
    "seresnext101_32x8d": ("ResNeXt101_32x8d", {"attention": "se"}),
    "seresnext101d_32x8d": ("ResNeXt101_32x8d", {"attention": "se", "stem": "deep", "avg_down": True}),
    "seresnext101_32x4d": ("ResNeXt101_64x4d", {"attention": "se", "groups": 32}),
    "ecaresnet50d": ("ECAResNet50D", {}), "ecaresnet101d": ("ResNet101D", {"attention": "eca"}),
}
TIMM_FIELDS = ("num_classes", "input_size", "test_input_size", "interpolation", "crop_pct",
               "test_crop_pct", "crop_mode", "mean", "std")
TORCHVISION_ENUMS = {
    "resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights", "resnet152": "ResNet152_Weights",
    "resnext50_32x4d": "ResNeXt50_32X4D_Weights", "resnext101_32x8d": "ResNeXt101_32X8D_Weights",
    "resnext101_64x4d": "ResNeXt101_64X4D_Weights", "wide_resnet50_2": "Wide_ResNet50_2_Weights",
    "wide_resnet101_2": "Wide_ResNet101_2_Weights",
}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def timm_entry(name):
    """The table entry of a timm name, from timm's pretrained_cfg."""
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    entry = {"library": "timm"}
    for field in TIMM_FIELDS:
        if cfg.get(field) is not None:
            entry[field] = _plain(cfg[field])
    return entry


def torchvision_entry(arch, member):
    weights = getattr(torchvision.models, TORCHVISION_ENUMS[arch])[member]
    t = weights.transforms()
    crop, resize = list(t.crop_size), list(t.resize_size)
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    return {
        "library": "torchvision", "num_classes": len(weights.meta["categories"]),
        "input_size": [3, crop[0], crop[0]], "resize_size": resize[0],
        "crop_pct": crop[0] / resize[0], "crop_mode": "center",
        "interpolation": t.interpolation.value, "mean": list(t.mean), "std": list(t.std),
        "acc@1": metrics["acc@1"], "acc@5": metrics["acc@5"], "num_params": weights.meta["num_params"],
    }


def generated_table():
    weights, defaults = {}, {}
    for arch in ARCHITECTURES:
        tags = timm.list_pretrained(f"{arch}.*")
        for name in tags:
            weights[name] = timm_entry(name)
        if tags:
            defaults[arch] = f"{arch}.{timm.models.get_pretrained_cfg(arch).tag}"
    for arch, enum in TORCHVISION_ENUMS.items():
        for member in getattr(torchvision.models, enum).__members__:
            if member != "DEFAULT":
                weights[f"{arch}.{member}"] = torchvision_entry(arch, member)
    return {
        "about": ("timm and torchvision weight names -> keras_resnet constructor and input "
                  f"preprocessing; from timm {timm.__version__}'s pretrained_cfg and torchvision "
                  f"{torchvision.__version__.split('+')[0]}'s weights enums (regenerate: python "
                  "tests/test_pretrained.py)"),
        "architectures": {a: {"constructor": c, "options": o} for a, (c, o) in ARCHITECTURES.items()
                          if any(n.split(".")[0] == a for n in weights)},
        "defaults": defaults,
        "weights": dict(sorted(weights.items())),
    }


def test_table_equals_timm_and_torchvision_field_by_field():
    table = pretrained.table()
    for name, entry in table["weights"].items():
        arch, tag = name.split(".", 1)
        want = timm_entry(name) if entry["library"] == "timm" else torchvision_entry(arch, tag)
        assert _same(entry, want), (name, entry, want)
        assert arch in table["architectures"], name
    for arch, name in table["defaults"].items():
        assert name == f"{arch}.{timm.models.get_pretrained_cfg(arch).tag}"
    # Every timm tag of a covered architecture is in the table, and every torchvision one.
    assert set(table["weights"]) == set(generated_table()["weights"])


def _same(a, b):
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("name", ["resnet50d.ra2_in1k", "resnet50.a1_in1k", "resnet50.IMAGENET1K_V2",
                                  "seresnext50_32x4d.racm_in1k"])
def test_create_model_preprocessing_is_the_pretrained_cfg(name):
    model = kr.create_model(name, input_shape=(32, 32, 3))
    cfg = model.pretrained_cfg
    arch, tag = name.split(".", 1)
    if cfg["library"] == "timm":
        want = timm.models.get_pretrained_cfg(name).to_dict()
        for field in ("mean", "std", "interpolation", "crop_pct", "input_size", "num_classes", "crop_mode"):
            assert _plain(want[field]) == cfg[field], field
    else:
        weights = getattr(torchvision.models, TORCHVISION_ENUMS[arch])[tag]
        t = weights.transforms()
        assert (cfg["mean"], cfg["std"]) == (list(t.mean), list(t.std))
        assert cfg["interpolation"] == t.interpolation.value == "bilinear"
        assert (cfg["resize_size"], cfg["input_size"][1:]) == (t.resize_size[0], list(t.crop_size) * 2)
    # The normalisation is inside the model: pixels * scale + offset == (pixels / 255 - mean) / std.
    config = model.get_config()
    assert config["include_preprocessing"] and config["classes"] == cfg["num_classes"]
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    got = np.asarray(model.get_layer("preprocessing")(pixels))
    want = (pixels / 255.0 - np.asarray(cfg["mean"])) / np.asarray(cfg["std"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,library_model", [
    ("resnet50d.ra2_in1k", lambda: timm.create_model("resnet50d", pretrained=False)),
    ("resnet50.IMAGENET1K_V2", lambda: torchvision.models.resnet50(weights=None)),
])
def test_create_model_with_a_checkpoint_computes_what_the_library_does(name, library_model, tmp_path):
    """Pixels in: keras_resnet normalises inside the model; the library's network is given
    the normalised images, as its transforms would."""
    from safetensors.torch import save_file
    from torch_reference import randomized_eval, rel_error, torch_logits

    torch.manual_seed(0)
    net = randomized_eval(library_model(), 64)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = kr.create_model(name, checkpoint_path=path, classifier_activation=None)
    cfg = model.pretrained_cfg
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    normalised = ((pixels / 255.0 - np.asarray(cfg["mean"])) / np.asarray(cfg["std"])).astype("float32")
    want = torch_logits(net, normalised)
    assert rel_error(model(pixels, training=False), want) <= 1e-4


def test_the_pretrained_cfg_travels_into_export_metadata():
    """What SavedModel's assets.extra/signature.json holds (and the ONNX metadata's
    keras_resnet.eval_transform entry) carries the name's configuration."""
    from keras_resnet.export.saved_model import signature_doc
    from keras_resnet.export.source import load_source

    model = kr.create_model("resnet18.IMAGENET1K_V1", input_shape=(32, 32, 3))
    doc = signature_doc(load_source(model))
    cfg = doc["eval_transform"]["pretrained_cfg"]
    assert cfg == model.pretrained_cfg and cfg["resize_size"] == 256 and cfg["crop_pct"] == 224 / 256
    # The normalisation is inside the model: the export adds none of its own.
    assert doc["preprocessing"] == {"scale": [1.0] * 3, "offset": [0.0] * 3}


def test_the_pretrained_cfg_survives_a_keras_file():
    """Saved in the model's config: a .keras file loaded again (safe mode) has it, and a model
    without one saves no such entry."""
    import keras

    model = kr.create_model("resnet50d.ra2_in1k", input_shape=(32, 32, 3))
    want = pretrained.pretrained_cfg("resnet50d.ra2_in1k")
    assert model.pretrained_cfg == want and want["interpolation"] == "bicubic"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    assert loaded.pretrained_cfg == want
    assert kr.ResNet.from_config(loaded.get_config()).pretrained_cfg == want
    assert "pretrained_cfg" not in kr.ResNet18(input_shape=(32, 32, 3)).get_config()


def _tiny_with_cfg(name):
    """A small model carrying ``name``'s configuration (the exports read it, not the size)."""
    import keras

    keras.utils.set_random_seed(0)
    model = kr.ResNet([1, 1], [8, 16], stem="cifar", input_shape=(16, 16, 3), classes=3,
                      include_preprocessing=True,
                      preprocessing=pretrained.preprocessing_of_cfg(pretrained.pretrained_cfg(name)),
                      name="tiny")
    model.pretrained_cfg = pretrained.pretrained_cfg(name)
    return model


def _exported_cfgs(report):
    """The pretrained_cfg in each written file: SavedModel's signature.json, the ONNX
    metadata (read with ONNX Runtime) and the TFLite file's eval_transform.json (the zip
    archive the LiteRT metadata appends)."""
    import zipfile

    import onnxruntime as ort

    found = {}
    for a in report["artifacts"]:
        assert a["passed"], a
        if a["format"] == "savedmodel":
            with open(os.path.join(a["path"], "assets.extra", "signature.json")) as f:
                found["savedmodel"] = json.load(f)["eval_transform"]["pretrained_cfg"]
        elif a["format"] == "onnx":
            meta = ort.InferenceSession(a["path"]).get_modelmeta().custom_metadata_map
            found["onnx"] = json.loads(meta["keras_resnet.eval_transform"])["pretrained_cfg"]
        elif a["format"] == "tflite":
            with zipfile.ZipFile(a["path"]) as z:
                found["tflite"] = json.loads(z.read("eval_transform.json"))["pretrained_cfg"]
    return found


@pytest.mark.slow  # ~30 s: three exports of a small model
def test_an_export_of_a_reloaded_keras_file_carries_the_pretrained_cfg(tmp_path):
    from keras_resnet.export import export_all

    model = _tiny_with_cfg("resnet50.IMAGENET1K_V2")
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    del model  # the export reads the file only
    images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    report = export_all(path, str(tmp_path / "out"), formats=["savedmodel", "onnx", "tflite"],
                        tflite_precisions=["fp32"], latency_runs=1, progress=None,
                        eval_data=(images, None), calibration_images=images)
    found = _exported_cfgs(report)
    want = pretrained.pretrained_cfg("resnet50.IMAGENET1K_V2")
    assert set(found) == {"savedmodel", "onnx", "tflite"}
    for fmt, cfg in found.items():
        assert cfg == want, fmt
        assert (cfg["interpolation"], cfg["resize_size"], cfg["crop_pct"]) == ("bilinear", 232, 224 / 232)


@pytest.mark.slow  # ~30 s: a four-step training run, then an export
def test_train_from_a_model_with_a_pretrained_cfg_carries_it_to_run_json_and_exports(tmp_path):
    """--init-from a .keras file with a pretrained_cfg: run.json, best.keras and the export
    of the run (SavedModel's signature.json) all carry it."""
    import keras

    from keras_resnet.export import export_all
    from keras_resnet.training import TrainConfig, train

    keras.utils.set_random_seed(0)
    source = kr.resolve_model("resnet20")(input_shape=(8, 8, 1), classes=10)
    want = pretrained.pretrained_cfg("resnet18.a1_in1k")
    source.pretrained_cfg = want
    source.save(str(tmp_path / "source.keras"))
    train(TrainConfig(dataset="digits", model="resnet20", init_from=str(tmp_path / "source.keras"),
                      epochs=1, steps_per_epoch=4, batch_size=32, run_dir=str(tmp_path / "run"),
                      tensorboard=False, plot=False, verbose=False))
    with open(tmp_path / "run" / "run.json") as f:
        info = json.load(f)
    assert info["pretrained_cfg"] == want and info["init_from"]["pretrained_cfg"] == want
    best = keras.saving.load_model(str(tmp_path / "run" / "best.keras"), compile=False)
    assert best.pretrained_cfg == want
    report = export_all(str(tmp_path / "run"), str(tmp_path / "out"), formats=["savedmodel"],
                        latency_runs=1, progress=None)
    assert _exported_cfgs(report) == {"savedmodel": want}


def test_unknown_names_offer_close_matches():
    with pytest.raises(ValueError, match=r"name='resnet50d.ra_in1k' is not supported; did you mean .*resnet50d.ra2_in1k"):
        kr.create_model("resnet50d.ra_in1k")
    with pytest.raises(ValueError, match=r"did you mean .*resnet50.IMAGENET1K_V2"):
        kr.create_model("resnet50.IMAGENET1K_V3")
    assert kr.create_model("resnet18d", input_shape=(32, 32, 3)).pretrained_cfg["name"] == \
        f"resnet18d.{timm.models.get_pretrained_cfg('resnet18d').tag}"
    assert "resnet50.IMAGENET1K_V2" in kr.list_pretrained("resnet50.*")


if __name__ == "__main__":
    with open(pretrained.TABLE_PATH, "w", encoding="utf-8") as f:
        json.dump(generated_table(), f, indent=1)
        f.write("\n")
    print(f"wrote {pretrained.TABLE_PATH}", file=sys.stderr)
