"""ONNX through tf2onnx, int8 through ONNX Runtime's static quantization.

The graph takes ``images``: float32 ``[batch, H, W, C]`` pixels in 0..255 (NHWC,
preprocessing baked in; ``batch`` is a dynamic dimension) and returns ``logits`` and
``probabilities``: float32 ``[batch, classes]``. ``metadata_props`` carries the class
names (``labels``), the preprocessing and the evaluation transform (:func:`metadata_props`).

Precisions:

``fp32``  tf2onnx conversion at the chosen opset (default 17).
``int8``  ``onnxruntime.quantization.quantize_static``: QDQ format, per-channel int8
          weights, uint8 activations (ONNX Runtime's fast x86 combination; int8 on
          request), MinMax calibration on representative images.

Each file is run in ONNX Runtime and compared with the Keras model: fp32 logits within
1e-4 of the logits' scale; int8 by top-1 agreement (>= 95% by default) and accuracy change
(at most 1 pp lower by default).
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from ._common import check_precisions as _check_precisions
from ._common import (MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError, ExportFormat, batch_timing,
                      check_gate,
                      latency_ms, parity_vs_keras, precision_paths, say, split_list, write_and_verify)

from .formats import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET,  # noqa: E402,F401
                      ONNX_DEFAULT_PRECISIONS, TITLES)

PRECISIONS = ("fp32", "int8")


def check_precisions(precisions):
    return _check_precisions("ONNX", precisions, PRECISIONS)


def check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset={opset!r} is not supported; accepted: {MIN_OPSET}..{MAX_OPSET}")
    return opset


def convert_fp32(source, path, opset=DEFAULT_OPSET):
    """tf2onnx conversion of the pixel serving function; writes ``path``."""
    import onnx  # the [export] extra
    import tf2onnx

    check_opset(opset)
    fn = tf.function(source.serving_outputs)
    spec = [tf.TensorSpec((None, *source.input_shape), tf.float32, name="images")]
    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset)
    graph = model_proto.graph
    names = [i.name for i in graph.input]
    if names != ["images"]:
        raise RuntimeError(f"unexpected ONNX inputs {names}; expected ['images']")
    # Name the dynamic batch dimension "batch" (tf2onnx leaves "unk__N").
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        for d, size in zip(dims[1:], source.input_shape):
            if size is not None:
                d.dim_value = int(size)
    model_proto.doc_string = (
        "keras_resnet export: images float32 [batch, H, W, C] pixels 0..255 -> "
        "logits, probabilities float32 [batch, classes]"
    )
    set_metadata(model_proto, metadata_props(source))
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, path)


def metadata_props(source):
    """What a client needs besides the graph, as ``metadata_props`` (read with ONNX Runtime's
    ``InferenceSession.get_modelmeta().custom_metadata_map``): ``labels`` (JSON list of the
    class names, in output order), ``preprocessing`` (JSON: the input is pixels 0..255, the
    scale/offset the graph applies inside, the colour space and layout; a client does not
    normalise) and ``keras_resnet.eval_transform`` (JSON: how to resize/crop an image to the
    input)."""
    import json

    from .saved_model import class_names

    color = {1: "GRAYSCALE", 3: "RGB"}.get(source.channels, f"{source.channels} channels")
    preprocessing = {"input": "pixels 0..255, float32", "layout": "NHWC", "color_space": color,
                     "inside_model": True, "normalize": None,
                     "model_applies": {"scale": source.preprocessing["scale"],
                                       "offset": source.preprocessing["offset"],
                                       "formula": "pixels * scale + offset"}}
    return {"labels": json.dumps(class_names(source)), "preprocessing": json.dumps(preprocessing),
            "keras_resnet.eval_transform": json.dumps(source.eval_transform_doc()),
            "keras_resnet.input": f"{color} pixels 0..255, float32 NHWC, preprocessing inside",
            "model_name": source.name}


def set_metadata(model_proto, props):
    """Replace ``props``' keys in ``model_proto.metadata_props``."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    for key, value in keep + list(props.items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


ACTIVATION_TYPES = ("uint8", "int8")


def quantize_int8(fp32_path, path, calibration_images, activation_type="uint8"):
    """QDQ int8 quantization with ONNX Runtime (see :func:`.onnx_int8.quantize_int8`)."""
    if activation_type not in ACTIVATION_TYPES:
        raise ExportError(f"activation_type={activation_type!r} is not supported; accepted: "
                          f"{', '.join(ACTIVATION_TYPES)}")
    from . import onnx_int8  # onnxruntime, the [export] extra

    onnx_int8.quantize_int8(fp32_path, path, calibration_images, activation_type)


class ORTModel:
    """An ONNX file in ONNX Runtime (CPU): pixels in, logits out."""

    def __init__(self, path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(os.fspath(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_shape = self.session.get_inputs()[0].shape

    def __call__(self, images, output="logits"):
        return self.session.run([output], {"images": np.asarray(images, "float32")})[0]

    def logits(self, images, batch_size=64):
        return np.concatenate([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    def latency(self, runs=50, example=None):
        """Median batch-1 time on ``example`` (one image; needed when the input's height or
        width is dynamic), else on random pixels of the input's fixed shape."""
        if example is None:
            shape = [1] + [int(d) for d in self.input_shape[1:]]
            example = np.random.default_rng(0).uniform(0, 255, shape)
        x = np.asarray(example, "float32")[:1]
        return latency_ms(lambda: self.session.run(["logits"], {"images": x}), runs=runs)


def verify(source, path, precision, eval_images, eval_labels=None, latency_runs=50,
           min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP):
    import onnx

    model = ORTModel(path)
    parity = parity_vs_keras(source, "onnx", precision, model.logits(eval_images), eval_images,
                             eval_labels, min_agreement=min_agreement,
                             max_accuracy_drop=max_accuracy_drop)
    proto = onnx.load(os.fspath(path), load_external_data=False)
    info = {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output],
        "quantize_ops": sum(n.op_type == "QuantizeLinear" for n in proto.graph.node),
        "quantized_op_types": sorted({n.op_type for n in proto.graph.node
                                      if any(i.endswith("_DequantizeLinear_Output") for i in n.input)}),
    }
    info.update(batch_timing(lambda x: model.session.run(["logits"], {"images": x}),
                             np.asarray(eval_images, "float32"), latency_runs))
    return parity, model.latency(latency_runs, eval_images[:1]), info


def onnx_path(out_dir, model_name, precision):
    return os.path.join(out_dir, f"{model_name}_{precision}.onnx")


def check_options(precisions, opset=DEFAULT_OPSET, calibration_images=None, activation_type="uint8",
                  min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP,
                  calibration_given=None):
    """The precisions, checked with the other ONNX options (ExportError on bad input)."""
    precisions = check_precisions(split_list(precisions))
    check_opset(opset)
    check_gate(min_agreement, max_accuracy_drop)
    if activation_type not in ACTIVATION_TYPES:
        raise ExportError(f"activation_type={activation_type!r} is not supported; accepted: "
                          f"{', '.join(ACTIVATION_TYPES)}")
    if calibration_given is None:
        calibration_given = calibration_images is not None
    if "int8" in precisions and not calibration_given:
        raise ExportError("int8 ONNX export needs calibration images (representative data)")
    return precisions


def export_onnx(source, out_dir, precisions=PRECISIONS, opset=DEFAULT_OPSET, calibration_images=None,
                eval_images=None, eval_labels=None, model_name=None, overwrite=False, latency_runs=50,
                activation_type="uint8", min_agreement=MIN_AGREEMENT,
                max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Write ``<out_dir>/<model_name>_<precision>.onnx`` for each precision, verify each in
    ONNX Runtime, and return the report entries (``min_agreement``, ``max_accuracy_drop``:
    the quantized gate, as fractions)."""
    precisions = check_options(precisions, opset, calibration_images, activation_type,
                               min_agreement, max_accuracy_drop)
    paths = precision_paths(out_dir, model_name or source.name, precisions, ".onnx", overwrite)
    if eval_images is None:
        eval_images = source.sample_input(8)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        say(progress, f"[onnx] converting with tf2onnx (opset {opset})")
        convert_fp32(source, fp32, opset)

        def write(precision, path):
            if precision == "fp32":
                shutil.copyfile(fp32, path)
            else:
                import onnx

                quantize_int8(fp32, path, calibration_images, activation_type)
                proto = onnx.load(path)  # the quantizer keeps the graph, not always the metadata
                set_metadata(proto, metadata_props(source))
                onnx.save(proto, path)

        return write_and_verify("onnx", "ONNX Runtime", source, paths, write, verify, eval_images,
                                eval_labels, overwrite, latency_runs, progress,
                                min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)


# ----------------------------------------------------------------------------------------
# Registry entry (keras_resnet.export.export_all)

DEFAULT_PRECISIONS = ONNX_DEFAULT_PRECISIONS


def _export(source, out_dir, options, run):
    return export_onnx(
        source, out_dir, options["onnx_precisions"], opset=options["opset"],
        calibration_images=run["calibration_images"], eval_images=run["eval_images"],
        eval_labels=run["eval_labels"], model_name=run["model_name"], overwrite=run["overwrite"],
        latency_runs=run["latency_runs"], progress=run["progress"], **run["gate"])


FORMAT = ExportFormat(
    name="onnx", directory="onnx", title=TITLES["onnx"],
    options=dict(onnx_precisions=DEFAULT_PRECISIONS, opset=DEFAULT_OPSET),
    check=lambda options: dict(options, onnx_precisions=check_options(
        options["onnx_precisions"], options["opset"], calibration_given=True)),
    outputs=lambda out_dir, model_name, options: [
        onnx_path(out_dir, model_name, p) for p in options["onnx_precisions"]],
    needs_calibration=lambda options: "int8" in options["onnx_precisions"],
    export=_export,
)
