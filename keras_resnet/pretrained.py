"""timm and torchvision weight names: which keras_resnet model, which preprocessing.

    import keras_resnet as kr
    model = kr.create_model("resnet50d.ra2_in1k", checkpoint_path="resnet50d.safetensors")
    model = kr.create_model("resnet50.IMAGENET1K_V2", checkpoint_path="resnet50-11ad3fa6.pth")
    model.pretrained_cfg     # mean, std, interpolation, crop_pct, input_size of those weights
    kr.list_pretrained("resnet50*")

A timm name is ``architecture.tag`` (``resnet50.a1_in1k``); a bare architecture
(``resnet50d``) means timm's default tag. A torchvision name is ``architecture.WEIGHTS``
(``resnet50.IMAGENET1K_V2``, the member of ``ResNet50_Weights``). Each tag was trained with
its own preprocessing; using another costs accuracy without any error, so the model that
:func:`create_model` builds carries it: the normalisation (mean and std) inside the model
(``include_preprocessing``: it takes RGB pixels in 0..255), the rest (interpolation,
``crop_pct``, input size) in ``model.pretrained_cfg``, which exports record.

The names live in ``pretrained_cfgs.json`` beside this module, a data table taken from
timm's ``pretrained_cfg`` and torchvision's weights enums (``tests/test_pretrained.py``
compares them field by field with the installed libraries): ``architectures`` maps each
architecture to a keras_resnet constructor and its options, ``weights`` holds each name's
configuration. Nothing is downloaded: pass the checkpoint you have (``.safetensors``,
``.pth``, ``.bin``).
"""

import difflib
import fnmatch
import functools
import json
import os

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained_cfgs.json")
# The pretrained_cfg fields that describe the input (what create_model's models carry).
CFG_FIELDS = ("mean", "std", "interpolation", "crop_pct", "crop_mode", "input_size",
              "test_input_size", "num_classes", "resize_size")


class UnknownPretrainedError(ValueError):
    """A name with no entry in the table (a ``ValueError``)."""


@functools.lru_cache(maxsize=1)
def table():
    """The table (``architectures``, ``defaults``, ``weights``), read once."""
    with open(TABLE_PATH, encoding="utf-8") as f:
        return json.load(f)


def list_pretrained(filter=None):
    """The names :func:`create_model` knows, sorted; ``filter`` is an ``fnmatch`` pattern
    (``"resnet50*"``, ``"*IMAGENET1K*"``), as ``timm.list_pretrained``."""
    names = sorted(table()["weights"])
    if filter:
        names = [n for n in names if fnmatch.fnmatchcase(n.lower(), filter.lower())]
    return names


def resolve_name(name):
    """The full name of ``name`` (a bare timm architecture gets timm's default tag)."""
    t = table()
    if not isinstance(name, str):
        raise UnknownPretrainedError(f"name={name!r} is not supported; expected a string such as "
                                     "'resnet50d.ra2_in1k' or 'resnet50.IMAGENET1K_V2'")
    if name in t["weights"]:
        return name
    if name in t["defaults"]:
        return t["defaults"][name]
    known = list(t["weights"]) + list(t["defaults"])
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownPretrainedError(
        f"name={name!r} is not supported; {hint}accepted: a timm name 'architecture.tag' "
        "(resnet50.a1_in1k), a timm architecture (resnet50d) or a torchvision weights name "
        "(resnet50.IMAGENET1K_V2); keras_resnet.list_pretrained() lists them")


def pretrained_cfg(name):
    """The input configuration of ``name``: ``{"name", "architecture", "library", "mean",
    "std", "interpolation", "crop_pct", "input_size", "num_classes", ...}`` (sizes as timm
    gives them, channels first)."""
    full = resolve_name(name)
    entry = dict(table()["weights"][full])
    return {"name": full, "architecture": full.split(".", 1)[0], **entry}


def preprocessing_of_cfg(cfg):
    """keras_resnet's ``{"scale", "offset"}`` for ``(pixels / 255 - mean) / std``."""
    mean, std = cfg["mean"], cfg["std"]
    return {"scale": [1.0 / (255.0 * s) for s in std], "offset": [-m / s for m, s in zip(mean, std)]}


def create_model(name, checkpoint_path=None, num_classes=None, include_preprocessing=True, **kwargs):
    """The keras_resnet model of a timm or torchvision weights name, with its preprocessing.

    Args:
        name: ``"resnet50d.ra2_in1k"``, ``"resnet50d"`` (timm's default tag),
            ``"resnet50.IMAGENET1K_V2"``, ...; :func:`list_pretrained` lists them.
        checkpoint_path: the weights (``.safetensors``, ``.pth``, ``.pt``, ``.bin``, a
            ``state_dict`` with timm's/torchvision's names), or None for random weights.
        num_classes: classifier size (default: the weights'; with a checkpoint it must
            match, or pass ``include_top=False``).
        include_preprocessing: put the weights' normalisation inside the model, which then
            takes RGB pixels in 0..255 (default). False: the model takes normalised input.
        kwargs: other keyword arguments of the constructor (``input_shape``,
            ``classifier_activation``, ``include_top``, ``pooling``, ...).

    The model's ``pretrained_cfg`` attribute holds :func:`pretrained_cfg` of the name.
    Unknown names raise :class:`UnknownPretrainedError` with the close matches.
    """
    from .registry import resolve_model

    cfg = pretrained_cfg(name)
    arch = table()["architectures"][cfg["architecture"]]
    options = dict(arch.get("options", {}))
    options.update(kwargs)
    options.setdefault("classes", num_classes if num_classes is not None else cfg["num_classes"])
    if include_preprocessing:
        options.setdefault("include_preprocessing", True)
        options.setdefault("preprocessing", preprocessing_of_cfg(cfg))
    if checkpoint_path is not None:
        options["weights"] = os.fspath(checkpoint_path) if isinstance(checkpoint_path, os.PathLike) \
            else checkpoint_path
    model = resolve_model(arch["constructor"])(**options)
    model.pretrained_cfg = cfg
    return model


__all__ = ["create_model", "list_pretrained", "pretrained_cfg", "resolve_name",
           "preprocessing_of_cfg", "UnknownPretrainedError", "CFG_FIELDS"]
