"""What an export starts from: a trained Keras model plus its data facts.

A training run directory holds ``best.keras`` (or ``last.keras``) and ``run.json``::

    {"dataset": "digits", "input_shape": [8, 8, 1], "num_classes": 10,
     "class_names": [...], "preprocessing": {"scale": [...], "offset": [...]},
     "outputs": "probabilities" | "logits", "test_accuracy": 0.97}

The model takes *preprocessed* input (``pixels * scale + offset``); every export bakes
that preprocessing in, so exported models take pixels in 0..255.  A bare ``.keras`` file
may also be exported: a ``run.json`` beside it is used when present, otherwise pass the
preprocessing (default: identity) and calibration data yourself.
"""

import re

import numpy as np
import tensorflow as tf

from .. import data, rundir
from .._compat import keras
from ..keras_file import load_model as _load_model
from ..preprocessing import apply_preprocessing, identity_preprocessing
from ._common import ExportError, latency_ms

OUTPUT_KINDS = ("probabilities", "logits")


def resolve_model_path(path):
    """``(model file, run.json or None)`` for a run directory (its ``best.keras``, else
    ``last.keras``) or a ``.keras`` file, as :mod:`keras_resnet.rundir` resolves them."""
    try:
        path = rundir.model_file(path, prefer=rundir.BEST)
    except rundir.RunDirError as e:
        raise ExportError(str(e)) from None
    return path, rundir.run_json_beside(path)


def load_keras_model(path):
    try:
        return _load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any loader failure is bad input here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"could not load Keras model {path}: {first[:300]}") from e


def _is_float32(model):
    for layer in model.layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and getattr(policy, "compute_dtype", "float32") != "float32":
            return False
    return all(str(getattr(w.dtype, "name", w.dtype)) == "float32" for w in model.weights)


def _policy_name(model):
    """The model's mixed-precision policy name, or "float32"."""
    for layer in model.layers:
        name = str(getattr(getattr(layer, "dtype_policy", None), "name", "float32"))
        if name != "float32":
            return name
    return "float32"


def _float32_config(obj):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "dtype" and (isinstance(v, dict) or v in ("mixed_float16", "mixed_bfloat16",
                                                                 "float16", "bfloat16")):
                out[k] = "float32"
            else:
                out[k] = _float32_config(v)
        return out
    if isinstance(obj, list):
        return [_float32_config(v) for v in obj]
    return obj


def as_float32(model):
    """The model itself when it computes in float32; otherwise a float32 rebuild.

    Models trained under a mixed-precision policy (``mixed_float16``/``mixed_bfloat16``)
    are rebuilt from their config under the ``float32`` policy and get the same weights,
    so every export is a float32 graph.
    """
    if _is_float32(model):
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        config = _float32_config(keras.saving.serialize_keras_object(model))
        rebuilt = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(previous)
    rebuilt.set_weights([np.asarray(w, dtype="float32") for w in model.get_weights()])
    if not _is_float32(rebuilt):
        raise ExportError(f"could not rebuild model {model.name!r} as a float32 graph")
    return rebuilt


def model_outputs(model):
    """What ``model``'s last layer says its output is: ``"probabilities"`` (a softmax
    activation, or a Softmax layer), ``"logits"`` (a layer whose activation is linear), or
    None when the last layer does not say (another kind of layer)."""
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return "probabilities"
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    if activation == "softmax":
        return "probabilities"
    if activation == "linear":
        return "logits"
    return None


def _check_preprocessing(prep, channels):
    if not isinstance(prep, dict) or "scale" not in prep or "offset" not in prep:
        raise ExportError(f"preprocessing={prep!r} is not supported; expected {{'scale': [...], 'offset': [...]}}")
    out = {}
    for key in ("scale", "offset"):
        values = np.asarray(prep[key], dtype="float64").reshape(-1)
        if values.size == 1:
            values = np.repeat(values, channels)
        if values.size != channels or not np.all(np.isfinite(values)):
            raise ExportError(
                f"preprocessing[{key!r}] has {values.size} values; expected 1 or one per input channel ({channels})"
            )
        out[key] = [float(v) for v in values]
    return out


class ExportSource:
    """A float32 Keras model, its preprocessing and where its data comes from.

    Args:
        model: a Keras model with one image input ``[batch, H, W, C]`` and one output
            ``[batch, classes]`` (class probabilities or logits).
        preprocessing: ``{"scale": [...], "offset": [...]}`` (default: identity).
        outputs: ``"probabilities"`` or ``"logits"`` (default: read from the model). A value
            that contradicts the model's own last layer (a softmax, or a Dense without
            activation: :func:`model_outputs`) is refused; the model decides.
        outputs_from: where ``outputs`` came from, named in that refusal (``"run.json"``).
        dataset: dataset name for calibration and evaluation data (see
            :mod:`keras_resnet.data`); None when you pass arrays yourself.
        dataset_kwargs: extra arguments for :func:`keras_resnet.data.get_dataset`.
        class_names, path, run: recorded in reports.
        pretrained_cfg: the input configuration of the model's weights (run.json's), used
            when the model carries none (``model.pretrained_cfg``).
        eval_augment: the augmentation preset the model was trained with (run.json's); its
            evaluation transform is what the JPEG/PNG signature applies to decoded images
            (``imagenet``: aspect-preserving resize and 87.5% centre crop; otherwise, and
            when None, a resize to the input size).
    """

    def __init__(self, model, preprocessing=None, outputs=None, dataset=None,
                 dataset_kwargs=None, class_names=None, path=None, run=None, name=None,
                 eval_augment=None, outputs_from=None, pretrained_cfg=None):
        if not isinstance(model, keras.Model):
            raise ExportError(f"expected a Keras model; got {type(model).__name__}")
        if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
            raise ExportError(
                f"model {model.name!r} has inputs {[tuple(i.shape) for i in model.inputs]}; "
                "expected one image input [batch, height, width, channels]"
            )
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            raise ExportError(
                f"model {model.name!r} has outputs {[tuple(o.shape) for o in model.outputs]}; "
                "expected one [batch, classes] output"
            )
        self.original_dtype_policy = _policy_name(model)
        # The weights' own input configuration (keras_resnet.create_model, from_preset),
        # recorded with the evaluation transform in every export's metadata.
        self.pretrained_cfg = getattr(model, "pretrained_cfg", None) or pretrained_cfg
        self.model = as_float32(model)
        self.input_shape = tuple(self.model.inputs[0].shape[1:])
        if self.input_shape[-1] is None:
            raise ExportError("the model's input channel count is unknown; expected [batch, H, W, C] with C fixed")
        self.channels = int(self.input_shape[-1])
        self.num_classes = int(self.model.outputs[0].shape[-1])
        self.preprocessing = _check_preprocessing(
            identity_preprocessing(self.channels) if preprocessing is None else preprocessing,
            self.channels,
        )
        last = self.model.layers[-1]
        own = model_outputs(self.model)
        detected = own or "logits"
        if outputs is None:
            outputs = detected
        if outputs not in OUTPUT_KINDS:
            raise ExportError(f"outputs={outputs!r} is not supported; accepted: {', '.join(OUTPUT_KINDS)}")
        if own is not None and outputs != own:
            # The model decides: a softmax of probabilities (or a log of logits) would be
            # exported as the model's answer, and parity against itself would still pass.
            raise ExportError(
                f"outputs={outputs!r}{f' (from {outputs_from})' if outputs_from else ''} contradicts the "
                f"model {self.model.name!r}: its last layer {last.name!r} "
                f"{'applies softmax' if own == 'probabilities' else 'has no activation'}, so it "
                f"outputs {own}; correct or remove that outputs entry")
        self.outputs = outputs
        # Logits of a softmax classifier: its features times its kernel, plus bias.
        self._dense = last if (outputs == "probabilities" and detected == "probabilities"
                               and hasattr(last, "kernel")) else None
        if self._dense is not None:
            self._features = keras.Model(self.model.inputs[0], last.input, name=f"{self.model.name}_features")
        self.dataset = dataset
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.class_names = list(class_names) if class_names else None
        self.path = path
        self.run = run
        self.eval_augment = eval_augment if eval_augment in data.AUGMENTATIONS else "none"
        self.name = re.sub(r"[^A-Za-z0-9_.-]", "_", name or self.model.name or "model")

    # -- graph functions (used inside tf.function by every exporter) ---------------------
    def logits_tensor(self, images):
        """Pixels (float32 tensor) -> logits tensor, preprocessing included."""
        x = apply_preprocessing(images, self.preprocessing)
        if self._dense is not None:
            features = self._features(x, training=False)
            return tf.matmul(features, self._dense.kernel) + self._dense.bias
        y = self.model(x, training=False)
        if self.outputs == "logits":
            return y
        return tf.math.log(tf.maximum(y, 1e-30))

    def serving_outputs(self, images):
        logits = self.logits_tensor(images)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    def trackables(self):
        return [self._features] if self._dense is not None else [self.model]

    def eval_transform(self, image):
        """One decoded image (float32 ``[h, w, C]`` pixels, any size) -> the model's input
        pixels, as the run's evaluation does (:func:`keras_resnet.data.transform`)."""
        return data.transform(image, self.input_shape, self.eval_augment, training=False)

    def eval_transform_doc(self):
        """The evaluation transform in words and numbers (for signature.json and metadata)."""
        doc = self._eval_transform_doc()
        if self.pretrained_cfg:
            doc["pretrained_cfg"] = dict(self.pretrained_cfg)
        return doc

    def _eval_transform_doc(self):
        h, w, _ = self.input_shape
        if self.eval_augment == "imagenet":
            from ..data.augment import CENTER_CROP_FRACTION

            return {"resize": f"shorter side to round({h} / {CENTER_CROP_FRACTION}), aspect "
                              "ratio kept", "interpolation": "bilinear (half-pixel centres, "
                              "no antialiasing; tf.image.resize)",
                    "crop": f"centre {h}x{w}", "crop_fraction": CENTER_CROP_FRACTION,
                    "pixels": "float32 0..255 before and after"}
        return {"resize": f"to {h}x{w} (aspect ratio not kept) when the size differs",
                "interpolation": "bilinear (half-pixel centres, no antialiasing; tf.image.resize)",
                "crop": None, "pixels": "float32 0..255 before and after"}

    # -- reference outputs -------------------------------------------------------------
    def keras_logits(self, images, batch_size=64):
        """The Keras model's logits for ``images`` (pixels), float32 NumPy."""
        outs = []
        for i in range(0, len(images), batch_size):
            x = np.asarray(data.apply_preprocessing(np.asarray(images[i:i + batch_size], "float32"),
                                                    self.preprocessing), "float32")
            if self._dense is not None:
                f = np.asarray(self._features(x, training=False))
                kernel = np.asarray(self._dense.kernel)
                bias = np.asarray(self._dense.bias)
                outs.append((f @ kernel + bias).astype("float32"))
            else:
                y = np.asarray(self.model(x, training=False))
                outs.append(y if self.outputs == "logits" else np.log(np.maximum(y, 1e-30)))
        return np.concatenate(outs, axis=0)

    def keras_latency(self, runs=50):
        fn = tf.function(self.serving_outputs, jit_compile=False)
        x = tf.constant(self.sample_input(1))
        return latency_ms(lambda: fn(x)["logits"].numpy(), runs=runs)

    # -- data ----------------------------------------------------------------------------
    def sample_input(self, batch=1, seed=0):
        h, w, c = (d if d is not None else 224 for d in self.input_shape)
        return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, c)).astype("float32")

    def check_images(self, images, what):
        """``images`` as float32 [N, H, W, C] pixels matching the model's input shape."""
        images = np.asarray(images)
        expected = "[N, " + ", ".join(str(d) for d in self.input_shape) + "]"
        ok = images.ndim == 4 and len(images) > 0 and all(
            d is None or d == s for d, s in zip(self.input_shape, images.shape[1:])
        )
        if not ok:
            raise ExportError(
                f"{what} has shape {tuple(images.shape)}; the model expects {expected} pixels"
            )
        if not np.issubdtype(images.dtype, np.number):
            raise ExportError(f"{what} has dtype {images.dtype}; expected numeric pixels in 0..255")
        return images.astype("float32")

    def calibration_images(self, num_samples=200, seed=0, images=None):
        """Representative pixels for quantization: ``images`` if given, else a seeded draw of
        ``num_samples`` training images of the source's dataset."""
        if images is None:
            if self.dataset is None:
                raise ExportError(
                    "no calibration data: the source names no dataset; pass a dataset name "
                    "(--dataset) or calibration images (--calibration-data images.npy)"
                )
            images = data.representative_images(self.dataset, num_samples=num_samples, seed=seed,
                                                **self.dataset_kwargs)
        return self.check_images(images, "calibration data")

    def eval_arrays(self, arrays=None):
        """Held-out ``(pixels, labels)`` for parity and accuracy; ``(None, None)`` when the
        source names no dataset and none are given."""
        if arrays is None:
            if self.dataset is None:
                return None, None
            arrays = data.test_arrays(self.dataset, **self.dataset_kwargs)
        images, labels = arrays
        images = self.check_images(images, "evaluation data")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != len(images):
                raise ExportError(
                    f"evaluation data has {len(images)} images but {len(labels)} labels"
                )
        return images, labels

    def describe(self):
        return {
            "model": self.model.name, "path": self.path, "input_shape": list(self.input_shape),
            "num_classes": self.num_classes, "outputs": self.outputs,
            "preprocessing": self.preprocessing, "dataset": self.dataset,
            "trained_dtype_policy": self.original_dtype_policy,
        }


def _dataset_kwargs(run, dataset, given):
    """The run's dataset arguments (data directory, image size, ...) when the export uses the
    run's dataset, overridden by ``given``."""
    base = rundir.dataset_kwargs(run) if run and dataset in (None, run.get("dataset")) else {}
    return {**base, **{k: v for k, v in (given or {}).items() if v is not None}}


EXPORT_PREPROCESSING = ("torch", "tf", "none")
IMAGE_SIZE_DATASETS = ("folder", "tfrecord", "synthetic")


def preprocessing_of(preprocessing, channels):
    """A ``{"scale", "offset"}`` dict for a mode name (``torch``, ``tf``, ``none``) or a dict."""
    if not isinstance(preprocessing, str):
        return preprocessing
    from ..preprocessing import preprocessing_spec

    if preprocessing not in EXPORT_PREPROCESSING:
        raise ExportError(
            f"preprocessing={preprocessing!r} is not supported; accepted: "
            f"{', '.join(EXPORT_PREPROCESSING)} (caffe reverses the channels: convert the "
            "weights with keras-resnet-convert --preprocessing caffe, whose model takes RGB pixels)")
    try:
        return preprocessing_spec(preprocessing, channels)[0]
    except ValueError as e:
        raise ExportError(str(e)) from None


def _model_takes_pixels(model):
    """Whether ``model`` records that it takes pixels: a keras_resnet model with its
    preprocessing inside (``include_preprocessing``, as keras-resnet-convert writes)."""
    get_config = getattr(model, "stage_output_names", None) and model.get_config
    return bool(get_config and get_config().get("include_preprocessing"))


def load_source(source, preprocessing=None, outputs=None, dataset=None, dataset_kwargs=None,
                name=None):
    """An :class:`ExportSource` from a run directory, a ``.keras`` path or a Keras model.

    Explicit arguments override what ``run.json`` says. A ``.keras`` file without a
    ``run.json`` must say its preprocessing: inside the model (``include_preprocessing``),
    or with ``preprocessing`` (``"torch"``, ``"tf"``, ``"none"`` or ``{"scale", "offset"}``);
    otherwise :class:`ExportError` (no guess). A Keras model object is taken to take pixels
    unless ``preprocessing`` says otherwise.
    """
    if isinstance(source, ExportSource):
        return source
    run, path = {}, None
    if isinstance(source, keras.Model):
        model = source
    else:
        path, run_path = resolve_model_path(source)
        if run_path:
            try:
                run = rundir.read_run_json(run_path)
            except rundir.RunDirError as e:
                raise ExportError(str(e)) from None
        model = load_keras_model(path)
        if (not run and preprocessing is None and not _model_takes_pixels(model)):
            raise ExportError(
                f"the input preprocessing of {path} is not known (no run.json beside it, and "
                "the model has none inside); pass --preprocessing torch, tf or none (none: the "
                "model takes pixels 0..255 as they are)")
    channels = model.inputs[0].shape[-1] if len(model.inputs) == 1 else None
    if preprocessing is not None:
        preprocessing = preprocessing_of(preprocessing, channels)
    kwargs = _dataset_kwargs(run, dataset, dataset_kwargs)
    size = tuple(model.inputs[0].shape[1:3]) if len(model.inputs) == 1 else (None, None)
    chosen = dataset if dataset is not None else run.get("dataset")
    if ("image_size" not in kwargs and size[0] is not None and size[0] == size[1]
            and (chosen or "").split(":")[0] in IMAGE_SIZE_DATASETS + ("tfds",)):
        kwargs["image_size"] = int(size[0])  # read the images at the model's own size
    src = ExportSource(
        model,
        preprocessing=preprocessing if preprocessing is not None else run.get("preprocessing"),
        outputs=outputs if outputs is not None else run.get("outputs"),
        outputs_from="run.json" if outputs is None and run.get("outputs") is not None else None,
        dataset=dataset if dataset is not None else run.get("dataset"),
        dataset_kwargs=kwargs,
        class_names=run.get("class_names"), path=path, run=run or None, name=name,
        eval_augment=(run.get("config") or {}).get("augment"),
        pretrained_cfg=run.get("pretrained_cfg"),
    )
    if run.get("input_shape") and tuple(run["input_shape"]) != tuple(
        d for d in src.input_shape
    ) and None not in src.input_shape:
        raise ExportError(
            f"run.json says input_shape={run['input_shape']} but the model takes {list(src.input_shape)}"
        )
    return src
