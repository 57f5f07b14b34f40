"""OpenVINO IR for Intel's runtime (what many CPU servers run), through OpenVINO's own
converter (``openvino.convert_model``) from the pixel SavedModel the TFLite export also
converts from (one ``serving_default`` signature, preprocessing inside).

Layout: ``openvino/<model_name>_<precision>/<model_name>.xml`` + ``.bin`` (+ ``labels.txt``);
point OpenVINO Model Server or ``openvino.Core().read_model`` at the ``.xml``.

The graph takes ``images``: float32 ``[batch, H, W, C]`` pixels 0..255 (NHWC, dynamic batch)
and returns ``logits`` and ``probabilities``: float32 ``[batch, classes]``. The class names
are in the model's runtime information as the OpenVINO Model API reads them
(``model_info/model_type`` = ``Classification``, ``model_info/labels``: space-separated,
spaces inside a name written as ``_``), and as JSON under ``keras_resnet/labels``.

Precisions:

``fp32``  float32 weights.
``fp16``  float16 weights (``compress_to_fp16``), half the size; computed in float32.

Both are checked in OpenVINO's CPU runtime compiled with ``INFERENCE_PRECISION_HINT = f32``
(without it, CPUs with bfloat16 or AMX units compute in bfloat16): fp32 within 1e-4 of the
logits' scale, fp16 by the quantized gate.
"""

import json
import os
import tempfile

import numpy as np

from ._common import (MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError, ExportFormat, batch_timing,
                      check_gate, latency_ms, parity_vs_keras, say, split_list, write_and_verify)
from ._common import check_precisions as _check_precisions
from .formats import OPENVINO_DEFAULT_PRECISIONS, TITLES
from .saved_model import class_names

PRECISIONS = ("fp32", "fp16")
DEFAULT_PRECISIONS = OPENVINO_DEFAULT_PRECISIONS
CPU_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def check_precisions(precisions):
    return _check_precisions("OpenVINO", precisions, PRECISIONS)


def _openvino():
    try:
        import openvino
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ExportError("the openvino format needs OpenVINO: pip install 'keras-residual[export]'") from e
    return openvino


def convert(source, saved_model_dir, out_dir, precision, model_name):
    """Write ``<out_dir>/<model_name>.xml`` / ``.bin`` / ``labels.txt`` from the pixel SavedModel."""
    ov = _openvino()
    model = ov.convert_model(saved_model_dir)
    names = [sorted(o.get_names()) for o in model.outputs]
    if not any("logits" in n for n in names):
        raise RuntimeError(f"unexpected OpenVINO outputs {names}; expected logits and probabilities")
    for o in model.outputs:  # the signature's keys as the outputs' only names
        o.get_tensor().set_names({n for n in o.get_names() if n in ("logits", "probabilities")} or o.get_names())
    model.inputs[0].get_tensor().set_names({"images"})
    labels = class_names(source)
    model.set_rt_info("Classification", ["model_info", "model_type"])
    model.set_rt_info(" ".join(label.replace(" ", "_") for label in labels), ["model_info", "labels"])
    model.set_rt_info("False", ["model_info", "reverse_input_channels"])
    model.set_rt_info(json.dumps(labels), ["keras_resnet", "labels"])
    model.set_rt_info(json.dumps({"input": "pixels 0..255, float32 NHWC, preprocessing inside",
                                  **source.preprocessing}), ["keras_resnet", "preprocessing"])
    model.set_rt_info(json.dumps(source.eval_transform_doc()), ["keras_resnet", "eval_transform"])
    os.makedirs(out_dir, exist_ok=True)
    ov.save_model(model, os.path.join(out_dir, model_name + ".xml"),
                  compress_to_fp16=precision == "fp16")
    with open(os.path.join(out_dir, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{label}\n" for label in labels))


class OpenVINOModel:
    """An OpenVINO IR in OpenVINO's CPU runtime (float32 inference): pixels in, logits out."""

    def __init__(self, path, config=None):
        ov = _openvino()
        xml = path if str(path).endswith(".xml") else _xml_in(path)
        self.core = ov.Core()
        self.model = self.core.read_model(xml)
        self.compiled = self.core.compile_model(self.model, "CPU", dict(CPU_CONFIG, **(config or {})))
        self.request = self.compiled.create_infer_request()

    def __call__(self, images, output="logits"):
        result = self.request.infer({"images": np.asarray(images, "float32")})
        return np.array(result[self.compiled.output(output)])

    def logits(self, images, batch_size=64):
        return np.concatenate([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    def labels(self):
        return json.loads(self.model.get_rt_info(["keras_resnet", "labels"]).astype(str))

    def latency(self, runs=50, example=None):
        x = np.asarray(example, "float32")[:1]
        return latency_ms(lambda: self.request.infer({"images": x}), runs=runs)


def _xml_in(directory):
    found = sorted(f for f in os.listdir(directory) if f.endswith(".xml"))
    if len(found) != 1:
        raise ExportError(f"{directory} holds {found}; expected one OpenVINO .xml file")
    return os.path.join(directory, found[0])


def verify(source, path, precision, eval_images, eval_labels=None, latency_runs=50,
           min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP):
    """Run ``path`` in OpenVINO's CPU runtime against the Keras model."""
    model = OpenVINOModel(path)
    parity = parity_vs_keras(source, "openvino", precision, model.logits(eval_images), eval_images,
                             eval_labels, min_agreement=min_agreement,
                             max_accuracy_drop=max_accuracy_drop)
    info = {"inference_precision": CPU_CONFIG["INFERENCE_PRECISION_HINT"],
            "labels_in_model": model.labels() == class_names(source),
            **batch_timing(lambda x: model.request.infer({"images": x}),
                           np.asarray(eval_images, "float32"), latency_runs)}
    if not info["labels_in_model"]:
        parity["passed"] = False
        parity["message"] = (parity["message"] + "; " if parity["message"] else "") + "labels missing"
    return parity, model.latency(latency_runs, eval_images[:1]), info


def openvino_path(out_dir, model_name, precision):
    return os.path.join(out_dir, f"{model_name}_{precision}")


def export_openvino(source, out_dir, precisions=PRECISIONS, eval_images=None, eval_labels=None,
                    model_name=None, overwrite=False, latency_runs=50, min_agreement=MIN_AGREEMENT,
                    max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Write ``<out_dir>/<model_name>_<precision>/`` (OpenVINO IR) for each precision, verify
    each in OpenVINO's runtime, and return the report entries."""
    from .tflite import write_pixel_saved_model

    precisions = check_precisions(split_list(precisions))
    check_gate(min_agreement, max_accuracy_drop)
    model_name = model_name or source.name
    paths = {p: openvino_path(out_dir, model_name, p) for p in precisions}
    if eval_images is None:
        eval_images = source.sample_input(8)
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        say(progress, "[openvino] writing the conversion SavedModel")
        write_pixel_saved_model(source, saved)

        def write(precision, path):
            convert(source, saved, path, precision, model_name)

        return write_and_verify("openvino", "OpenVINO", source, paths, write, verify, eval_images,
                                eval_labels, overwrite, latency_runs, progress, directory=True,
                                min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)


# ----------------------------------------------------------------------------------------
# Registry entry (keras_resnet.export.export_all)


def _export(source, out_dir, options, run):
    return export_openvino(
        source, out_dir, options["openvino_precisions"], eval_images=run["eval_images"],
        eval_labels=run["eval_labels"], model_name=run["model_name"], overwrite=run["overwrite"],
        latency_runs=run["latency_runs"], progress=run["progress"], **run["gate"])


FORMAT = ExportFormat(
    name="openvino", directory="openvino", title=TITLES["openvino"],
    options=dict(openvino_precisions=DEFAULT_PRECISIONS),
    check=lambda options: dict(options, openvino_precisions=check_precisions(
        split_list(options["openvino_precisions"]))),
    outputs=lambda out_dir, model_name, options: [
        openvino_path(out_dir, model_name, p) for p in options["openvino_precisions"]],
    needs_calibration=lambda options: False,
    export=_export,
)
