"""Export a trained model to every format at once, verify each, write the report."""

import os

import numpy as np

from . import onnx_export, report as report_lib, saved_model, tflite
from ._common import (MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError, ParityError, check_gate,
                      check_new_path, say)
from .source import load_source

FORMATS = ("savedmodel", "tflite", "onnx")
DEFAULT_TFLITE = ("fp32", "fp16", "dynamic", "int8", "qat")
DEFAULT_ONNX = ("fp32", "int8")


def check_formats(formats):
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"format {bad[0] if bad else formats!r} is not supported; accepted: {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in formats]


def _split(values):
    if isinstance(values, str):
        return [v.strip() for v in values.split(",") if v.strip()]
    return list(values)


def load_images_file(path, what):
    """Pixels from ``.npy`` (images) or ``.npz`` (``images`` [and ``labels``]) files."""
    if not os.path.isfile(path):
        raise ExportError(f"{what} file {path} does not exist; expected a .npy or .npz file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"could not read {what} file {path}: {e}; expected a .npy or .npz file") from e
    if isinstance(data, np.ndarray):
        return data, None
    if "images" not in data:
        raise ExportError(f"{what} file {path} has arrays {list(data.keys())}; expected 'images' (and 'labels')")
    return data["images"], (data["labels"] if "labels" in data else None)


def report_name(formats):
    return "report" if list(formats) == list(FORMATS) else "report_" + "_".join(formats)


def export_all(source, out_dir, formats=FORMATS, tflite_precisions=DEFAULT_TFLITE,
               onnx_precisions=DEFAULT_ONNX, int8_io="int8", dataset=None, dataset_kwargs=None,
               num_samples=200, seed=0, calibration_images=None, eval_data=None,
               opset=onnx_export.DEFAULT_OPSET, model_name=None, version=None, overwrite=False,
               qat_epochs=2, qat_options=None, preprocessing=None, latency_runs=50, check=True,
               min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP, progress=print):
    """Export ``source`` to every requested format, verify each export, write the report.

    Args:
        source: a training run directory (``best.keras`` + ``run.json``), a ``.keras``
            file, a Keras model or an :class:`ExportSource`.
        out_dir: where to write: ``saved_model/<model_name>/<version>/``,
            ``tflite/<model_name>_<precision>.tflite``, ``onnx/<model_name>_<precision>.onnx``
            and ``report.json`` / ``report.md`` (``report_<formats>.*`` for a subset).
        formats: any of ``"savedmodel"``, ``"tflite"``, ``"onnx"``.
        tflite_precisions: any of ``fp32, fp16, dynamic, int8, qat``.
        onnx_precisions: any of ``fp32, int8``.
        int8_io: input/output type of full-integer TFLite models: ``int8``, ``uint8``,
            ``float32``.
        dataset, dataset_kwargs: the dataset for calibration and evaluation data (default:
            the run's ``run.json``).
        num_samples, seed: size and seed of the representative (calibration) draw.
        calibration_images: pixels ``[N, H, W, C]`` to use instead of the dataset's.
        eval_data: ``(images, labels)`` to verify on instead of the dataset's test split.
        opset: ONNX opset.
        model_name, version: SavedModel name (default: the model's) and version (default:
            the next free one).
        overwrite: replace existing TFLite/ONNX files and reports (a SavedModel version is
            only replaced when ``version`` names it).
        qat_epochs: epochs of quantization-aware fine-tuning for ``qat`` (0 drops it);
            ``qat_options``: more arguments for :func:`keras_resnet.quantization.qat_tflite`.
        preprocessing: ``{"scale", "offset"}`` when the source has no ``run.json``.
        latency_runs: timed batch-1 calls per artifact (median reported).
        check: raise :class:`ParityError` (after writing the report) when an export misses
            its parity threshold.
        min_agreement, max_accuracy_drop: the quantized gate, as fractions: top-1 agreement
            with the Keras model (default 0.95) and the largest accuracy drop on labelled
            data (default 0.01, i.e. 1 pp). Float exports are held to their logits' scale
            (``keras_resnet.export.FLOAT_RTOL``).

    Returns the report (a dict; also written as JSON and Markdown).
    """
    formats = check_formats(formats)
    tflite_precisions = tflite.check_precisions(_split(tflite_precisions)) if "tflite" in formats else []
    onnx_precisions = onnx_export.check_precisions(_split(onnx_precisions)) if "onnx" in formats else []
    tflite.check_int8_io(int8_io)
    onnx_export.check_opset(opset)
    gate = dict(zip(("min_agreement", "max_accuracy_drop"), check_gate(min_agreement, max_accuracy_drop)))
    if isinstance(qat_epochs, bool) or not isinstance(qat_epochs, int) or qat_epochs < 0:
        raise ExportError(f"qat_epochs={qat_epochs!r} is not supported; expected an integer >= 0")
    if qat_epochs == 0:
        tflite_precisions = [p for p in tflite_precisions if p != "qat"]
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ExportError(f"num_samples={num_samples!r} is not supported; expected a positive integer")
    if isinstance(calibration_images, (str, os.PathLike)):
        calibration_images, _ = load_images_file(os.fspath(calibration_images), "calibration data")
    if isinstance(eval_data, (str, os.PathLike)):
        eval_data = load_images_file(os.fspath(eval_data), "evaluation data")

    say(progress, f"loading {source if isinstance(source, (str, os.PathLike)) else 'model'}")
    src = load_source(source, preprocessing=preprocessing, dataset=dataset,
                      dataset_kwargs=dataset_kwargs, name=model_name)
    model_name = src.name
    dirs = {f: os.path.join(out_dir, d) for f, d in
            (("savedmodel", "saved_model"), ("tflite", "tflite"), ("onnx", "onnx"))}
    # Refuse existing outputs before doing any work.
    name = report_name(formats)
    for path in [os.path.join(out_dir, name + ".json"), os.path.join(out_dir, name + ".md")] + \
            [tflite.tflite_path(dirs["tflite"], model_name, p) for p in tflite_precisions] + \
            [onnx_export.onnx_path(dirs["onnx"], model_name, p) for p in onnx_precisions]:
        check_new_path(path, overwrite)
    if version is not None:
        check_new_path(os.path.join(dirs["savedmodel"], model_name, str(version)), overwrite)

    needs_calibration = any(p in ("int8", "qat") for p in tflite_precisions) or "int8" in onnx_precisions
    calib = None
    if needs_calibration:
        calib = src.calibration_images(num_samples, seed, calibration_images)
        say(progress, f"calibration: {len(calib)} images from "
                      f"{'the given array' if calibration_images is not None else src.dataset}")
    eval_images, eval_labels = src.eval_arrays(eval_data)
    if eval_images is None:
        eval_images = calib if calib is not None else src.sample_input(16, seed)
    say(progress, f"verification: {len(eval_images)} images"
                  + (" with labels" if eval_labels is not None else " (no labels)"))

    report = report_lib.new_report(src, out_dir)
    ref = src.keras_logits(eval_images)
    keras_entry = {
        "format": "keras", "precision": "fp32", "path": os.path.abspath(src.path) if src.path else None,
        "size_bytes": os.path.getsize(src.path) if src.path else None, "parity": None, "passed": True,
        "latency_ms": src.keras_latency(latency_runs),
    }
    if eval_labels is not None:
        keras_entry["accuracy"] = float(np.mean(np.argmax(ref, -1) == eval_labels))
    report["artifacts"].append(keras_entry)

    common = dict(eval_images=eval_images, latency_runs=latency_runs, progress=progress)
    if "savedmodel" in formats:
        report["artifacts"].append(saved_model.export_saved_model(
            src, dirs["savedmodel"], model_name=model_name, version=version, overwrite=overwrite,
            warmup_images=calib if calib is not None else eval_images, **common))
    if "tflite" in formats:
        options = dict(qat_options or {})
        options.setdefault("epochs", qat_epochs)
        options.setdefault("seed", seed)
        report["artifacts"].extend(tflite.export_tflite(
            src, dirs["tflite"], tflite_precisions, int8_io=int8_io, calibration_images=calib,
            eval_labels=eval_labels, model_name=model_name, overwrite=overwrite,
            qat_options=options, **gate, **common))
    if "onnx" in formats:
        report["artifacts"].extend(onnx_export.export_onnx(
            src, dirs["onnx"], onnx_precisions, opset=opset, calibration_images=calib,
            eval_labels=eval_labels, model_name=model_name, overwrite=overwrite, **gate, **common))
    report_lib.finish(report)
    paths = report_lib.write(report, out_dir, name, overwrite=overwrite)
    report["report_files"] = paths
    say(progress, "\n" + report_lib.markdown(report))
    say(progress, f"report: {paths['json']}, {paths['markdown']}")
    if check and not report["passed"]:
        raise ParityError(report["failures"], report)
    return report
