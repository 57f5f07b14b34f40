"""Export a trained model to every format at once, verify each, write the report."""

import contextlib
import functools
import json
import os

import numpy as np

from .. import files
from . import onnx_export, saved_model, tflite
from . import report as report_lib
from ._common import (MAX_ACCURACY_DROP, MIN_AGREEMENT, ExportError, ParityError, check_gate,
                      check_new_path, check_writable, say, split_list)
from .source import load_source
from . import formats

# The format registry: every format module plugs in with one ``FORMAT`` entry
# (:class:`keras_resnet.export._common.ExportFormat`); the order is the report's.
REGISTRY = {f.name: f for f in (saved_model.FORMAT, tflite.FORMAT, onnx_export.FORMAT)}
FORMATS = tuple(REGISTRY)
assert FORMATS == formats.FORMATS, "keras_resnet.export.formats lists the registry's formats"
DEFAULT_TFLITE = tflite.DEFAULT_PRECISIONS
DEFAULT_ONNX = onnx_export.DEFAULT_PRECISIONS
# Options every format shares (data, verification, timing), with defaults.
SHARED_OPTIONS = dict(num_samples=200, seed=0, calibration_images=None, eval_data=None,
                      latency_runs=50, min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP)


def check_formats(formats):
    formats = split_list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"format {bad[0] if bad else formats!r} is not supported; accepted: {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in formats]


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


def _split_options(formats, options):
    """``(shared options, {format: its options})`` with defaults; a name no format takes is
    a TypeError, as for any function."""
    known = dict(SHARED_OPTIONS)
    for f in REGISTRY.values():
        known.update(f.options)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"export_all() got an unexpected keyword argument {unknown[0]!r}")
    shared = {k: options.get(k, v) for k, v in SHARED_OPTIONS.items()}
    per_format = {name: REGISTRY[name].check({k: options.get(k, v) for k, v in REGISTRY[name].options.items()})
                  for name in formats}
    return shared, per_format


def _read_marker(marker):
    """The options an interrupted export pinned (``{format: options}``), from its marker;
    ``{}`` for a marker without them; None when there is no marker."""
    if not os.path.exists(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as f:
            pinned = json.load(f).get("pinned")
    except (OSError, ValueError, AttributeError):
        return {}
    return pinned if isinstance(pinned, dict) else {}


def _export_all(source, out_dir, formats=FORMATS, *, dataset=None, dataset_kwargs=None,
                preprocessing=None, model_name=None, overwrite=False, check=True, progress=print,
                **options):
    """Export ``source`` to every requested format, verify each export, write the report.

    Args:
        source: a training run directory (``best.keras`` + ``run.json``), a ``.keras``
            file, a Keras model or an :class:`ExportSource`.
        out_dir: where to write: ``saved_model/<model_name>/<version>/``,
            ``tflite/<model_name>_<precision>.tflite``, ``onnx/<model_name>_<precision>.onnx``
            and ``report.json`` / ``report.md`` (``report_<formats>.*`` for a subset).
        formats: any of ``"savedmodel"``, ``"tflite"``, ``"onnx"`` (:data:`REGISTRY`).

    Keyword options (each format checks its own; see :data:`SHARED_OPTIONS` and each
    format's ``FORMAT.options``):

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
            ``qat_options``: more arguments for :func:`keras_resnet.export.qat.qat_tflite`.
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
    shared, per_format = _split_options(formats, options)
    gate = dict(zip(("min_agreement", "max_accuracy_drop"),
                    check_gate(shared["min_agreement"], shared["max_accuracy_drop"])))
    num_samples, seed = shared["num_samples"], shared["seed"]
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ExportError(f"num_samples={num_samples!r} is not supported; expected a positive integer")
    calibration_images, eval_data = shared["calibration_images"], shared["eval_data"]
    if isinstance(calibration_images, (str, os.PathLike)):
        calibration_images, _ = load_images_file(os.fspath(calibration_images), "calibration data")
    if isinstance(eval_data, (str, os.PathLike)):
        eval_data = load_images_file(os.fspath(eval_data), "evaluation data")
    check_writable(out_dir)

    say(progress, f"loading {source if isinstance(source, (str, os.PathLike)) else 'model'}")
    src = load_source(source, preprocessing=preprocessing, dataset=dataset,
                      dataset_kwargs=dataset_kwargs, name=model_name)
    model_name = src.name
    dirs = {f: os.path.join(out_dir, REGISTRY[f].directory) for f in formats}
    # Refuse existing outputs before doing any work, unless they are what an interrupted
    # export of the same formats left: it marks the directory before its first artifact and
    # unmarks it once its report is written (or when it fails before writing anything), so
    # its rerun replaces them and completes.
    name = report_name(formats)
    marker = os.path.join(out_dir, f".{name}.incomplete")
    interrupted = _read_marker(marker)
    if interrupted is not None and not overwrite:
        say(progress, f"{out_dir} holds an interrupted export ({os.path.basename(marker)}); "
                      "replacing what it wrote")
        overwrite = True
    pinned = {}
    for f in formats:
        if REGISTRY[f].pin is not None:
            per_format[f] = pinned[f] = REGISTRY[f].pin(dirs[f], model_name, per_format[f],
                                                        (interrupted or {}).get(f))
    outputs = [os.path.join(out_dir, name + ".json"), os.path.join(out_dir, name + ".md")] + [
        p for f in formats for p in REGISTRY[f].outputs(dirs[f], model_name, per_format[f])]
    for path in outputs:
        check_new_path(path, overwrite)

    calib = None
    if any(REGISTRY[f].needs_calibration(per_format[f]) for f in formats):
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
        "latency_ms": src.keras_latency(shared["latency_runs"]),
    }
    if eval_labels is not None:
        keras_entry["accuracy"] = float(np.mean(np.argmax(ref, -1) == eval_labels))
    report["artifacts"].append(keras_entry)

    run = dict(model_name=model_name, overwrite=overwrite, calibration_images=calib,
               eval_images=eval_images, eval_labels=eval_labels, gate=gate, seed=seed,
               latency_runs=shared["latency_runs"], progress=progress)
    files.write_text(marker, json.dumps({
        "note": "an export to this directory started and has not finished", "pinned": pinned}))
    try:
        for f in formats:
            report["artifacts"].extend(REGISTRY[f].export(src, dirs[f], per_format[f], run))
        report_lib.finish(report)
        paths = report_lib.write(report, out_dir, name, overwrite=overwrite)
    except BaseException:
        if not any(os.path.lexists(p) for p in outputs):  # it failed before writing anything
            files.remove(marker)
        raise
    report["report_files"] = paths
    files.remove(marker)
    say(progress, "\n" + report_lib.markdown(report))
    say(progress, f"report: {paths['json']}, {paths['markdown']}")
    if check and not report["passed"]:
        raise ParityError(report["failures"], report)
    return report


@functools.wraps(_export_all, assigned=("__doc__",))  # its signature and docstring
def export_all(source, out_dir, *args, **kwargs):
    # One export at a time per output folder: the folder is locked (flock on the folder
    # itself, as training locks its run directory) before its marker is read, so a second
    # export is refused at once instead of taking the live one's marker for an interrupted
    # export's and replacing what it writes. The lock goes with the process.
    check_writable(out_dir)  # before the folder is made
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(files.lock_directory(out_dir))
        except files.DirectoryInUse:
            raise ExportError(f"{out_dir} is in use by another export (it holds the folder's lock); "
                              "wait for it to finish, or choose another --out") from None
        return _export_all(source, out_dir, *args, **kwargs)
