"""Input preprocessing conventions.

keras_resnet models take ``pixels * scale + offset`` (RGB pixels in 0..255, per-channel
``scale`` and ``offset``), the convention of training runs' ``run.json`` and of every
export. The conventions of the public weights, by the names ``keras.applications`` uses:

========  =======================================================  =========================
mode      model input                                              weights trained with it
========  =======================================================  =========================
``torch`` ``(pixels / 255 - mean) / std``, ImageNet mean and std    torchvision, timm
``tf``    ``pixels / 127.5 - 1``                                   keras.applications ResNetV2
``caffe`` BGR pixels minus the ImageNet mean (channels reversed)   keras.applications ResNet
``none``  pixels unchanged
========  =======================================================  =========================
"""

import numpy as np

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# By the source of the weights, in keras_resnet's {"scale", "offset"} convention (RGB).
PREPROCESSING = {
    # torchvision/timm: (pixels / 255 - mean) / std.
    "torchvision": {
        "scale": [1.0 / (255.0 * s) for s in _IMAGENET_STD],
        "offset": [-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD)],
    },
    # keras.applications ResNetV2 ("tf" mode): pixels / 127.5 - 1.
    "keras.applications.resnet_v2": {"scale": [1.0 / 127.5] * 3, "offset": [-1.0] * 3},
    # keras.applications ResNet ("caffe" mode) subtracts the ImageNet mean from **BGR**
    # pixels: reverse the channels (images[..., ::-1]) before applying this.
    "keras.applications.resnet": {"scale": [1.0] * 3, "offset": [-103.939, -116.779, -123.68]},
}
MODES = {"torch": "torchvision", "tf": "keras.applications.resnet_v2",
         "caffe": "keras.applications.resnet", "none": None}


def preprocessing_spec(mode, channels=3):
    """``({"scale": [...], "offset": [...]}, reverse_channels)`` for a mode name (see the
    module doc) or a ``{"scale", "offset"}`` dict (one value, or one per channel)."""
    if isinstance(mode, dict):
        if set(mode) - {"scale", "offset"} or not {"scale", "offset"} <= set(mode):
            raise ValueError(f"preprocessing={mode!r} is not supported; expected a mode "
                             f"({', '.join(MODES)}) or a dict with 'scale' and 'offset'")
        spec = {k: [float(v) for v in np.broadcast_to(np.asarray(mode[k], "float64").reshape(-1),
                                                      (channels,))] for k in ("scale", "offset")}
        return spec, False
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not supported; accepted: {', '.join(MODES)}, or a "
                         "dict with 'scale' and 'offset'")
    if MODES[mode] is None:
        return identity_preprocessing(channels), False
    if channels != 3:
        raise ValueError(f"mode={mode!r} is for RGB images; got {channels} channels")
    return dict(PREPROCESSING[MODES[mode]]), mode == "caffe"


def apply_preprocessing(images, preprocessing):
    """``images * scale + offset`` for a ``{"scale", "offset"}`` dict: the one place
    keras_resnet's input convention is computed (NumPy arrays and tensors alike)."""
    scale = np.asarray(preprocessing["scale"], dtype="float32")
    offset = np.asarray(preprocessing["offset"], dtype="float32")
    return images * scale + offset


def preprocess_input(x, mode=None, model=None):
    """RGB pixels in 0..255 (``[..., H, W, C]``, channels last) to a model's input.

    ``mode`` has no default: name it -- ``"torch"`` (torchvision/timm weights, the named
    ImageNet constructors' imported weights), ``"tf"``, ``"caffe"``, ``"none"``, or a
    training run's ``{"scale", "offset"}`` (its run.json ``preprocessing``) -- or give
    ``model=`` and the mode follows it: a keras_resnet model with its preprocessing inside
    (``include_preprocessing``: training runs' best.keras/last.keras, keras-resnet-convert's
    files) takes pixels, so they are returned as they are (float32).

    Not ``keras.applications.resnet.preprocess_input``, which is always ``"caffe"`` (BGR,
    ImageNet mean subtracted, no scaling); ``keras.applications.resnet_v2``'s is ``"tf"``.
    Returns a NumPy array for NumPy input, else a tensor of the Keras backend.
    """
    if mode is None:
        if model is None:
            raise TypeError(
                "preprocess_input() needs mode= (torch, tf, caffe, none, or a dict with "
                "'scale' and 'offset') or model=; it has no default (keras.applications.resnet."
                "preprocess_input is caffe, torchvision/timm weights expect torch)")
        mode = _mode_of(model)
    spec, reverse = preprocessing_spec(mode, int(np.shape(x)[-1]))
    if isinstance(x, (np.ndarray, list, tuple)) or np.isscalar(x):
        x = np.asarray(x, "float32")
        return apply_preprocessing(x[..., ::-1] if reverse else x, spec)
    from keras import ops  # the backend of the caller's tensor

    x = ops.cast(x, "float32")
    return apply_preprocessing(ops.flip(x, axis=-1) if reverse else x, spec)


def _mode_of(model):
    """The mode a model's input needs: ``"none"`` when its preprocessing is inside."""
    config = model.get_config() if hasattr(model, "stage_output_names") else {}
    if config.get("include_preprocessing"):
        return "none"
    raise ValueError(
        f"model {getattr(model, 'name', model)!r} has no preprocessing inside "
        "(include_preprocessing=False), so its input convention is not recorded; pass mode= "
        "(torch for torchvision/timm weights, caffe for keras.applications ResNet, tf for "
        "ResNetV2, or its run.json's preprocessing)")


def identity_preprocessing(channels):
    """``{"scale": [1, ...], "offset": [0, ...]}`` for ``channels`` channels: pixels as they are."""
    return {"scale": [1.0] * channels, "offset": [0.0] * channels}
