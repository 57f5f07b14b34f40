"""What a model looks at: Grad-CAM heatmaps (Selvaraju et al. 2017).

    import keras_resnet as kr
    from keras_resnet import explain
    heatmaps, classes = explain.grad_cam(model, images, return_classes=True)   # [N, h, w]
    explain.overlay(image, heatmaps[0])          # uint8 RGB, the heatmap over the photo

For a class ``c`` and a convolutional layer's output ``A`` (``h x w x K``), Grad-CAM weighs
each channel by the mean gradient of the class score over the map,
``alpha_k = mean_ij dy_c / dA_k(ij)``, and keeps the positive part of the weighted sum,
``ReLU(sum_k alpha_k A_k)``. The class score ``y_c`` is the logit: a classifier with a
softmax has it taken before the softmax. The default layer is the last stage's output
(``post_relu`` for pre-activation models), whose map feeds global average pooling and the
linear classifier; there Grad-CAM is the class activation map of Zhou et al. 2016
(``sum_k w_kc A_k``) divided by ``h * w``, up to the ReLU.

It runs on the three Keras backends: the gradient is taken with ``tf.GradientTape``
(TensorFlow), ``torch.autograd.grad`` (PyTorch) or ``jax.grad`` of the network after the
layer (JAX, which differentiates functions: there the layer must be one whose output alone
feeds the classifier, as a block's output or the default layer does).

Nothing here imports TensorFlow until a function is called, so the command
``keras-resnet-explain`` (:func:`main`) answers ``--help`` without it.
"""

import argparse
import os
import sys

import numpy as np

from .cli_util import add_version, setup_process


def default_layer(model):
    """The name of the layer Grad-CAM uses by default: the last stage's output (its
    normalised form ``post_relu`` in pre-activation models)."""
    names = {layer.name for layer in model.layers}
    if "post_relu" in names:
        return "post_relu"
    if hasattr(model, "stage_output_names"):
        return model.stage_output_names()[-1]
    for layer in reversed(model.layers):  # any other model: its last 4-D output
        shape = getattr(layer, "output", None) is not None and layer.output.shape
        if shape is not None and shape is not False and len(shape) == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a 4-D output for Grad-CAM; pass layer=")


def _score_model(model, layer):
    """``(keras.Model images -> [feature map, pre-head tensor], head)``: ``head`` turns the
    second output into logits (the classifier's kernel and bias, without its softmax)."""
    _, pre, head, grad_model = _score_parts(model, layer)
    return grad_model, head


def _score_parts(model, layer):
    """``(feature tensor, pre-head tensor, head, keras.Model images -> [both])``."""
    from ._compat import keras

    try:
        target = model.get_layer(layer)
    except ValueError:
        raise ValueError(f"layer={layer!r} is not a layer of {model.name!r}; "
                         f"e.g. {default_layer(model)!r} (the default)") from None
    if len(target.output.shape) != 4:
        raise ValueError(f"layer={layer!r} outputs shape {tuple(target.output.shape)}; Grad-CAM "
                         "needs a convolutional feature map [batch, h, w, channels]")
    top = {lay.name: lay for lay in model.layers}.get("predictions")
    if isinstance(top, keras.layers.Dense) and top.get_config().get("activation") not in (None, "linear"):
        # Softmax classifier: differentiate the logit, not the probability.
        grad_model = keras.Model(model.inputs, [target.output, top.input])
        kernel, bias = top.kernel, top.bias

        def head(x):
            y = keras.ops.matmul(x, keras.ops.cast(kernel, x.dtype))
            return y + keras.ops.cast(bias, x.dtype) if bias is not None else y
        return target.output, top.input, head, grad_model
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(f"model {model.name!r} does not output class scores [batch, classes]; "
                         "Grad-CAM needs a classifier (include_top=True)")
    return (target.output, model.outputs[0], lambda x: x,
            keras.Model(model.inputs, [target.output, model.outputs[0]]))


def grad_cam(model, images, class_index=None, layer=None, return_classes=False):
    """Grad-CAM heatmaps of ``images`` (the model's input, a batch ``[N, H, W, C]``).

    Args:
        model: a Keras classifier (a keras_resnet model with ``include_top=True``, or any
            functional model whose output is ``[batch, classes]``).
        images: what the model takes (pixels for a model with its preprocessing inside).
        class_index: None (each image's top class), an int (that class for every image) or
            one int per image.
        layer: the name of the layer whose feature map is explained (default: the last
            stage's output, :func:`default_layer`).
        return_classes: also return the class explained for each image.

    Returns float32 ``[N, h, w]`` heatmaps at the layer's resolution (``>= 0``, not
    normalised), and with ``return_classes`` the ``[N]`` class indices. Runs on the
    TensorFlow, JAX and PyTorch backends (on JAX ``layer`` must be one whose output alone
    feeds the classifier: a block's output, ``post_relu``, the default).
    """
    cam, classes, _ = _grad_cam(model, images, class_index, layer)
    return (cam, classes) if return_classes else cam


def _grad_cam(model, images, class_index, layer):
    """``(heatmaps, class indices, logits)``."""
    from ._compat import keras

    layer = default_layer(model) if layer is None else layer
    x = np.asarray(images, "float32")
    if x.ndim != 4:
        raise ValueError(f"images has shape {tuple(x.shape)}; expected a batch [N, H, W, C]")
    backend = keras.backend.backend()
    gradients = {"tensorflow": _gradients_tf, "torch": _gradients_torch, "jax": _gradients_jax}
    if backend not in gradients:
        raise ValueError(f"grad_cam runs on the tensorflow, jax and torch backends; this process "
                         f"uses {backend!r}")
    features, grads, logits, classes = gradients[backend](model, layer, x, class_index)
    alpha = grads.mean(axis=(1, 2), keepdims=True, dtype="float32")   # [N, 1, 1, K]
    cam = np.maximum((alpha * features).sum(axis=-1, dtype="float32"), 0)   # [N, h, w]
    return cam.astype("float32"), classes, logits


def _gradients_tf(model, layer, x, class_index):
    """``(feature map, d score / d feature map, logits, classes)`` as NumPy, by a tape."""
    import tensorflow as tf

    grad_model, head = _score_model(model, layer)
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        features, pre = grad_model(x, training=False)
        logits = head(pre)
        classes = _class_indices(class_index, np.asarray(logits))
        chosen = tf.gather(logits, classes, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, features)
    return features.numpy(), grads.numpy(), np.asarray(logits, "float32"), classes


def _gradients_torch(model, layer, x, class_index):
    """The same by ``torch.autograd.grad`` to the feature map inside the graph."""
    import torch

    from ._compat import keras

    grad_model, head = _score_model(model, layer)
    with torch.enable_grad():
        features, pre = grad_model(keras.ops.convert_to_tensor(x), training=False)
        logits = head(pre)
        classes = _class_indices(class_index, keras.ops.convert_to_numpy(logits))
        index = torch.as_tensor(classes, device=logits.device)[:, None]
        chosen = torch.gather(logits, 1, index).sum()
        (grads,) = torch.autograd.grad(chosen, features)
    return (features.detach().cpu().numpy(), grads.detach().cpu().numpy(),
            logits.detach().cpu().numpy().astype("float32"), classes)


def _gradients_jax(model, layer, x, class_index):
    """The same by ``jax.grad`` of the network after the layer (a function of the map)."""
    import jax
    import jax.numpy as jnp

    from ._compat import keras

    feature_tensor, pre_tensor, head, _ = _score_parts(model, layer)
    before = keras.Model(model.inputs, feature_tensor)
    try:
        after = keras.Model(feature_tensor, pre_tensor)
    except ValueError:
        raise ValueError(f"layer={layer!r}: on the JAX backend Grad-CAM needs a layer whose output "
                         "alone feeds the classifier (a block's output such as "
                         f"{default_layer(model)!r}); this one's does not") from None
    trainable = [v.value for v in after.trainable_variables]
    non_trainable = [v.value for v in after.non_trainable_variables]

    def logits_of(features):
        pre, _ = after.stateless_call(trainable, non_trainable, features, training=False)
        return head(pre)

    features = before(x, training=False)
    logits = logits_of(features)
    classes = _class_indices(class_index, np.asarray(logits))
    index = jnp.asarray(classes)[:, None]
    grads = jax.grad(lambda f: jnp.take_along_axis(logits_of(f), index, axis=1).sum())(features)
    return np.asarray(features), np.asarray(grads), np.asarray(logits, "float32"), classes


def _class_indices(class_index, logits):
    n, classes = logits.shape
    if class_index is None:
        return np.argmax(logits, axis=1).astype("int64")
    idx = np.broadcast_to(np.asarray(class_index), (n,)) if np.ndim(class_index) == 0 else np.asarray(class_index)
    if idx.shape != (n,) or idx.dtype.kind not in "iu" or (idx < 0).any() or (idx >= classes).any():
        raise ValueError(f"class_index={class_index!r} is not supported; expected None, an integer "
                         f"in 0..{classes - 1} or one per image ({n})")
    return idx.astype("int64")


def upsample(heatmap, size):
    """``heatmap`` ``[h, w]`` resized (bilinear) to ``size`` ``(H, W)`` and scaled to 0..1
    (an all-zero map stays zero)."""
    from ._compat import keras

    h = np.asarray(heatmap, "float32")
    top = float(h.max()) if h.size else 0.0
    h = h / top if top > 0 else np.zeros_like(h)
    resized = keras.ops.image.resize(h[None, ..., None], tuple(size), interpolation="bilinear")
    return keras.ops.convert_to_numpy(resized)[0, ..., 0].clip(0, 1)


def overlay(image, heatmap, alpha=0.45, colormap="jet"):
    """uint8 RGB ``[H, W, 3]``: ``image`` (pixels 0..255, 1 or 3 channels) with ``heatmap``
    (any resolution) drawn over it in ``colormap`` with opacity ``alpha``."""
    from matplotlib import colormaps

    img = np.asarray(image, "float32")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    heat = upsample(heatmap, img.shape[:2])
    colors = colormaps[colormap](heat)[..., :3] * 255.0
    mixed = (1 - alpha * heat[..., None]) * img[..., :3] + alpha * heat[..., None] * colors
    return np.clip(np.round(mixed), 0, 255).astype("uint8")


# ----------------------------------------------------------------------------------------
# keras-resnet-explain


def _labels(path, classes):
    if path is None:
        return [str(i) for i in range(classes)]
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != classes:
        raise ValueError(f"--labels {path}: {len(names)} labels for a model with {classes} classes")
    return names


def _load(source, preprocessing):
    """``(model, preprocessing dict or None, class names or None)`` for a run directory or a
    ``.keras`` file (its run.json beside it, when there is one)."""
    from . import models  # noqa: F401 - registers keras_resnet's classes for loading
    from .export.source import load_source

    src = load_source(source, preprocessing=preprocessing)
    return src.model, src.preprocessing, src.class_names


def _read_image(path, size, channels):
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        original = np.asarray(im, "float32")
        if size is not None and None not in size and tuple(im.size[::-1]) != tuple(size):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        resized = np.asarray(im, "float32")
    if channels == 1:
        original, resized = original[..., None], resized[..., None]
    return original, resized


def explain_files(source, images, out, preprocessing=None, labels=None, layer=None, top=5,
                  log=print):
    """Write ``<out>/<image name>_gradcam.png`` for each image: the Grad-CAM of its top class
    over the image, and its ``top`` classes with their probabilities. Returns the paths."""
    from matplotlib.figure import Figure

    from . import files
    from .preprocessing import apply_preprocessing

    model, prep, class_names = _load(source, preprocessing)
    h, w, c = model.inputs[0].shape[1:]
    classes = int(model.outputs[0].shape[-1])
    names = _labels(labels, classes) if labels or not class_names else list(class_names)
    os.makedirs(out, exist_ok=True)
    written = []
    for path in images:
        original, x = _read_image(path, (h, w) if h and w else None, c)
        batch = x[None]
        if prep is not None:
            batch = np.asarray(apply_preprocessing(batch, prep), "float32")
        heat, idx, logits = _grad_cam(model, batch, None, layer)
        logits = logits[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)[:top]
        fig = Figure(figsize=(original.shape[1] / 100 + 2.6, original.shape[0] / 100), dpi=100)
        ax = fig.add_axes([0, 0, original.shape[1] / (original.shape[1] + 260), 1])
        ax.imshow(overlay(original, heat[0]))
        ax.axis("off")
        text = "\n".join(f"{probs[i]:6.1%}  {names[i]}" for i in order)
        fig.text(original.shape[1] / (original.shape[1] + 260) + 0.01, 0.5,
                 f"Grad-CAM: {names[idx[0]]}\n\ntop-{len(order)}\n{text}", va="center",
                 family="monospace", fontsize=9)
        target = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + "_gradcam.png")
        with files.atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
        log(f"wrote {target} (top class {names[idx[0]]}, {probs[idx[0]]:.1%})")
        written.append(target)
    return written


def main(argv=None):
    """``keras-resnet-explain RUN_OR_KERAS IMAGE... --out DIR``: Grad-CAM overlays."""
    parser = argparse.ArgumentParser(
        prog="keras-resnet-explain", allow_abbrev=False,
        description="Draw what a classifier looks at: for each image, the Grad-CAM heatmap of "
                    "its top class over the image, with the top-5 classes, written as "
                    "<OUT>/<image name>_gradcam.png.")
    parser.add_argument("model", metavar="RUN_OR_KERAS",
                        help="a training run directory (best.keras, run.json) or a .keras file")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument("--preprocessing", choices=("torch", "tf", "none"), default=None,
                        help="input preprocessing of a .keras file with none inside and no "
                             "run.json beside it")
    parser.add_argument("--labels", default=None, metavar="FILE",
                        help="class names, one per line (default: the run's, else numbers)")
    parser.add_argument("--layer", default=None, help="layer to explain (default: the last stage)")
    add_version(parser)
    args = parser.parse_args(argv)
    for path in args.images:
        if not os.path.isfile(path):
            parser.error(f"image {path} does not exist")
    setup_process()
    try:
        explain_files(args.model, args.images, args.out, preprocessing=args.preprocessing,
                      labels=args.labels, layer=args.layer)
    except (ValueError, OSError) as e:
        print(f"keras-resnet-explain: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
