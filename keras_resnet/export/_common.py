"""Shared pieces of the exporters: errors, the format registry entry, the write-and-verify
skeleton every precision goes through, atomic writes, parity figures, timing."""

import contextlib
import errno
import os
import statistics
import tempfile
import time
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from .. import files
from . import evidence


class ExportError(ValueError):
    """Bad input to an export (the message says what was wrong and what is accepted)."""


class ParityError(RuntimeError):
    """One or more exports failed their parity threshold (artifacts and report are kept)."""

    def __init__(self, failures, report=None):
        self.failures = list(failures)
        self.report = report
        super().__init__("; ".join(self.failures))


# Thresholds (the documented guarantees).
#
# Float exports: max |logit difference| <= rtol * (max |Keras logit| + 1), i.e. relative to
# the logits' scale, with an absolute floor of rtol for logits near zero. float32's unit
# roundoff is u = 2**-24 ~ 6e-8; a dot product of K terms summed in another order (another
# runtime's kernels: Winograd, im2col + GEMM, XNNPack, MLAS) changes by about sqrt(K) * u of
# its scale, ~4e-6 for the K = 3*3*512 = 4,608 of a ResNet's widest 3x3 convolution, and
# such independent errors over the 20-200 layers of a ResNet add up to ~1e-5 of the logits'
# scale. TFLite (LiteRT), ONNX Runtime and OpenVINO run kernels of their own: 1e-4 leaves headroom for
# the deepest models. A SavedModel runs TensorFlow's own kernels (graph rewrites only): 1e-5.
# A real defect (a lost BatchNormalization, wrong preprocessing, a swapped channel) is off by
# 1e-2 or more of the scale.
FLOAT_RTOL = {"savedmodel": 1e-5, "tflite": 1e-4, "onnx": 1e-4, "openvino": 1e-4}
from .formats import MAX_ACCURACY_DROP, MIN_AGREEMENT  # noqa: E402,F401  (the quantized gate)


def float_threshold(fmt, ref_logits):
    """The float gate for ``fmt``: ``rtol * (max|ref_logits| + 1)``."""
    return FLOAT_RTOL[fmt] * (float(np.max(np.abs(ref_logits))) + 1.0)


def check_gate(min_agreement=MIN_AGREEMENT, max_accuracy_drop=MAX_ACCURACY_DROP):
    """Validate the quantized gate's settings (fractions in [0, 1])."""
    for name, value in (("min_agreement", min_agreement), ("max_accuracy_drop", max_accuracy_drop)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ExportError(f"{name}={value!r} is not supported; expected a fraction between 0 "
                              "and 1 (0.01 = 1 percentage point)")
    return float(min_agreement), float(max_accuracy_drop)


def check_precisions(kind, precisions, accepted):
    """``precisions`` as a list, or an ExportError naming the first bad one and ``accepted``."""
    precisions = list(precisions)
    bad = [p for p in precisions if p not in accepted]
    if bad or not precisions:
        raise ExportError(f"{kind} precision {bad[0] if bad else precisions!r} is not supported; "
                          f"accepted: {', '.join(accepted)}")
    return precisions


def say(progress, message):
    if progress:
        progress(message)


def check_new_path(path, overwrite):
    """Refuse an existing output path unless ``overwrite``."""
    if os.path.lexists(path) and not overwrite:
        raise ExportError(f"output path {path} already exists; pass overwrite=True (--overwrite) to replace it")


# TensorFlow reports a failed file write as an OpError whose message carries the OS's words.
_TF_OS_ERRORS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                 "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}


@contextlib.contextmanager
def atomic_path(path, overwrite=False, directory=False):
    """:func:`keras_resnet.files.atomic_path`, refusing an existing ``path`` unless ``overwrite``;
    a TensorFlow write that the OS refused is a :class:`keras_resnet.files.FileWriteError`
    naming ``path``, as any other OS error there."""
    check_new_path(path, overwrite)
    with files.atomic_path(path, directory=directory) as tmp:
        try:
            yield tmp
        except tf.errors.OpError as exc:
            code = next((c for text, c in _TF_OS_ERRORS.items() if text in str(exc)), None)
            if code is None:
                raise
            raise files.file_write_error(OSError(code, os.strerror(code)), path) from exc


remove = files.remove


def size_bytes(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
        )
    return os.path.getsize(path)


def latency_ms(fn, runs=50, warmup=5):
    """Median wall time of ``fn()`` in milliseconds (after ``warmup`` calls)."""
    for _ in range(max(warmup, 1)):
        fn()
    times = []
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def batch_of(images, size=32):
    """``size`` images: ``images`` repeated as needed (a batch for timing)."""
    images = np.asarray(images)
    reps = -(-size // max(len(images), 1))
    return np.concatenate([images] * reps)[:size]


def batch_timing(call, images, runs=50, size=32):
    """Median time of ``call(batch)`` on a batch of ``size`` of ``images`` (``latency_b32_ms``)
    and the images per second it makes (``throughput_ips``)."""
    x = batch_of(images, size)
    ms = latency_ms(lambda: call(x), runs=max(2, runs // 5), warmup=2)
    return {f"latency_b{size}_ms": ms, "throughput_ips": size * 1e3 / ms if ms > 0 else None}


def float_parity(fmt, ref_logits, logits):
    """Float32 logits against the Keras model's, judged relative to the logits' scale."""
    ref = np.asarray(ref_logits, "float64")
    diff = float(np.max(np.abs(np.asarray(logits, "float64") - ref)))
    scale = float(np.max(np.abs(ref)))
    threshold = float_threshold(fmt, ref)
    passed = bool(diff <= threshold)
    message = "" if passed else (
        f"max abs logit difference {diff:.3g} ({diff / (scale + 1.0):.3g} of the logits' scale "
        f"{scale:.3g}) exceeds the threshold {threshold:.3g} = {FLOAT_RTOL[fmt]:g} x (scale + 1)"
    )
    return {"kind": "float", "max_abs_diff": diff, "max_rel_diff": diff / (scale + 1.0),
            "logit_scale": scale, "rtol": FLOAT_RTOL[fmt], "threshold": threshold,
            "passed": passed, "message": message}


def top2_margin(logits):
    """Per example: the top-1 logit minus the runner-up."""
    part = np.sort(np.asarray(logits, "float64"), axis=-1)
    return part[..., -1] - part[..., -2]


def top1_fields(ref_logits, logits, labels=None):
    """What every export's row of the runtime matrix shows: the number of evaluation
    images, top-1 agreement with the Keras model (with its Wilson 95% interval) and, with
    labels, the accuracy."""
    ref_top1 = np.argmax(np.asarray(ref_logits), axis=-1)
    top1 = np.argmax(np.asarray(logits), axis=-1)
    n = int(len(top1))
    agree = int(np.sum(ref_top1 == top1))
    out = {"n": n, "agreement": agree / n if n else 1.0,
           "agreement_ci": list(evidence.wilson_interval(agree, n))}
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        right = int(np.sum(top1 == labels))
        out.update(accuracy=right / n if n else 0.0,
                   accuracy_ci=list(evidence.wilson_interval(right, n)))
    return out


QUANTIZED_GATES = ("agreement", "accuracy")


def quantized_parity(ref_logits, logits, labels=None, min_agreement=MIN_AGREEMENT,
                     max_accuracy_drop=MAX_ACCURACY_DROP, gate_on="agreement"):
    """A quantized export's top-1 predictions against the Keras model's, judged by what the
    evaluation set can show (see :mod:`keras_resnet.export.evidence`).

    Reports the number of images ``n``; top-1 agreement with its Wilson 95% interval; with
    labels, the accuracy change with its exact 95% interval and McNemar's exact test on the
    discordant images (``lost``: the float model right and the export wrong; ``gained``:
    the reverse); and ``flip_margin``, the largest float top-1/top-2 margin among the changed
    predictions (relative to the logits' scale: near-ties are what rounding flips).

    ``gate_on="agreement"`` (post-training quantization) gates on agreement and, with
    labels, on the accuracy change; ``gate_on="accuracy"`` (quantization-aware training,
    which retrains, so agreement measures that it trained) on the accuracy change only.
    A gate fails only when the evidence shows a miss: the interval's bound, not the point
    estimate, lies beyond the threshold (``verdict`` "fail", ``passed`` False). A point
    estimate beyond the threshold that the interval does not confirm, an evaluation set too
    small to resolve the allowed drop, and a float model no better than chance on the
    labels (said first; no gate is applied) are warnings (``verdict`` "warn",
    ``warnings``), which do not fail the export.
    """
    min_agreement, max_accuracy_drop = check_gate(min_agreement, max_accuracy_drop)
    if gate_on not in QUANTIZED_GATES:
        raise ExportError(f"gate_on={gate_on!r} is not supported; accepted: {', '.join(QUANTIZED_GATES)}")
    ref_logits = np.asarray(ref_logits, "float64")
    ref_top1 = np.argmax(ref_logits, axis=-1)
    top1 = np.argmax(logits, axis=-1)
    flips = ref_top1 != top1
    n = len(top1)
    scale = float(np.max(np.abs(ref_logits))) or 1.0
    margins = top2_margin(ref_logits)[flips] if ref_logits.shape[-1] > 1 else np.zeros(0)
    out = {"kind": "quantized", **top1_fields(ref_logits, logits), "min_agreement": min_agreement,
           "disagreements": int(np.sum(flips)), "gate": gate_on,
           "flip_margin": float(np.max(margins) / scale) if margins.size else 0.0,
           "max_abs_diff": float(np.max(np.abs(np.asarray(logits, "float64") - ref_logits)))}
    agreement, (agree_low, agree_high) = out["agreement"], out["agreement_ci"]
    problems, warnings = [], []
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        ref_right, right = ref_top1 == labels, top1 == labels
        lost, gained = int(np.sum(ref_right & ~right)), int(np.sum(~ref_right & right))
        change, low, high = evidence.accuracy_change_interval(lost, gained, n)
        ref_acc, acc = float(np.mean(ref_right)), float(np.mean(right))
        chance = evidence.chance_rate(ref_logits.shape[-1])
        out.update(keras_accuracy=ref_acc, accuracy=acc, accuracy_ci=list(evidence.wilson_interval(
            int(np.sum(right)), n)), accuracy_change=acc - ref_acc, accuracy_change_ci=[low, high],
            lost=lost, gained=gained, mcnemar_p=evidence.mcnemar_exact(lost, gained),
            max_accuracy_drop=max_accuracy_drop, chance=chance,
            float_at_chance=bool(evidence.at_chance(int(np.sum(ref_right)), n, chance)))
        if out["float_at_chance"]:
            # Nothing to judge quantization against: say so first, gate nothing.
            warnings.append(evidence.at_chance_message(ref_acc, chance))
            out.update(verdict="warn", passed=True, warnings=warnings, message="")
            return out
        where = (f"on {n} images (95% interval of the change [{low * 100:+.2f}, {high * 100:+.2f}] pp; "
                 f"{lost} lost, {gained} gained; McNemar exact p = {out['mcnemar_p']:.2g})")
        drop = ref_acc - acc
        if -high > max_accuracy_drop + 1e-12:
            problems.append(
                f"accuracy {acc:.2%} is {drop * 100:.2f} pp below the Keras model's {ref_acc:.2%} "
                f"{where}: the loss exceeds the allowed {max_accuracy_drop * 100:g} pp")
        elif drop > max_accuracy_drop + 1e-12:
            warnings.append(
                f"accuracy {acc:.2%} is {drop * 100:.2f} pp below the Keras model's {ref_acc:.2%} "
                f"{where}, more than the allowed {max_accuracy_drop * 100:g} pp, but too few "
                "images to tell")
        elif n and 1.0 / n > max_accuracy_drop:
            warnings.append(
                f"{n} images cannot resolve a {max_accuracy_drop * 100:g} pp accuracy drop (one "
                f"image is {100.0 / n:.2f} pp); evaluate on more labelled images (--eval-data)")
    elif gate_on == "accuracy":
        warnings.append("no labels: judged by top-1 agreement with the float model, which "
                        "quantization-aware fine-tuning changes")
    if gate_on == "agreement" or labels is None:
        text = (f"top-1 agreement {agreement:.2%} (95% interval [{agree_low:.2%}, {agree_high:.2%}] "
                f"on {n} images) is below the {min_agreement:.2%} threshold")
        if agree_high < min_agreement:
            problems.append(text + f" by {(min_agreement - agreement) * 100:.2f} pp")
        elif agreement < min_agreement:
            warnings.append(text + ", but too few images to tell")
    out["passed"] = not problems
    out["verdict"] = "fail" if problems else "warn" if warnings else "pass"
    out["warnings"] = warnings
    out["message"] = "; ".join(problems)
    return out


def parity_vs_keras(source, fmt, precision, logits, eval_images, eval_labels=None, **gate):
    """Float exports: logit difference relative to their scale (plus the matrix's agreement
    and accuracy); quantized ones: :func:`quantized_parity` (``gate``: ``min_agreement``,
    ``max_accuracy_drop``; ``qat`` gates on accuracy against the labels)."""
    ref = source.keras_logits(eval_images)
    if precision == "fp32":
        return dict(float_parity(fmt, ref, logits), **top1_fields(ref, logits, eval_labels))
    return quantized_parity(ref, logits, eval_labels, gate_on="accuracy" if precision == "qat"
                            else "agreement", **gate)


def artifact(fmt, precision, path, parity, latency, **extra):
    return {
        "format": fmt,
        "precision": precision,
        "path": os.path.abspath(path) if path else None,
        "size_bytes": size_bytes(path) if path and os.path.exists(path) else None,
        "parity": parity,
        "passed": parity["passed"] if parity else True,
        "latency_ms": latency,
        **extra,
    }



# ----------------------------------------------------------------------------------------
# The format registry entry and the skeleton every format runs


class ExportFormat(NamedTuple):
    """One export format, as :func:`keras_resnet.export.export_all` sees it.

    ``options``: the ``export_all`` keyword options the format takes, with defaults.
    ``check(options)``: the options checked (ExportError on bad input), before any work.
    ``outputs(out_dir, model_name, options)``: paths that must not exist yet.
    ``needs_calibration(options)``: whether representative images are needed.
    ``export(source, out_dir, options, run)``: write and verify; returns report entries.
    ``pin(out_dir, model_name, options, interrupted)`` (optional): the options with every
    choice the export would make as it writes fixed beforehand (the SavedModel's next free
    version), so that ``outputs`` names every path it will write; ``interrupted`` is what
    an interrupted export of the same directory pinned (its rerun replaces those paths),
    or None. Pinned options are JSON values.
    ``run`` holds what every format shares: ``model_name``, ``overwrite``,
    ``calibration_images``, ``eval_images``, ``eval_labels``, ``latency_runs``, ``gate``
    (``min_agreement``, ``max_accuracy_drop``), ``seed``, ``progress``.
    """

    name: str
    directory: str
    title: str
    options: dict
    check: Callable
    outputs: Callable
    needs_calibration: Callable
    export: Callable
    pin: Callable = None


def split_list(values):
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``."""
    if isinstance(values, str):
        return [v.strip() for v in values.split(",") if v.strip()]
    return list(values)


def precision_paths(out_dir, model_name, precisions, extension, overwrite):
    """``{precision: <out_dir>/<model_name>_<precision><extension>}``, refusing existing ones."""
    paths = {p: os.path.join(out_dir, f"{model_name}_{p}{extension}") for p in precisions}
    for path in paths.values():
        check_new_path(path, overwrite)
    return paths


def write_and_verify(fmt, runtime, source, paths, write, verify, eval_images, eval_labels=None,
                     overwrite=False, latency_runs=50, progress=print, directory=False, **gate):
    """For each ``{precision: path}``: ``write(precision, temporary path)`` (atomically renamed
    to ``path``, a file or with ``directory`` a folder; it may return extra report fields),
    then ``verify(...)`` in ``runtime``; returns the report entries."""
    entries = []
    for precision, path in paths.items():
        say(progress, f"[{fmt}] writing {precision} -> {path}")
        with atomic_path(path, overwrite=overwrite, directory=directory) as tmp_path:
            extra = write(precision, tmp_path) or {}
        say(progress, f"[{fmt}] verifying {precision} in {runtime}")
        parity, latency, info = verify(source, path, precision, eval_images, eval_labels,
                                       latency_runs, **gate)
        entries.append(artifact(fmt, precision, path, parity, latency, **info, **extra))
    return entries


def check_writable(directory):
    """Raise :class:`keras_resnet.files.FileWriteError` naming ``directory`` unless it (or,
    when it does not exist yet, the folder it would be created in) takes a new file.
    Creates nothing, so a refused export leaves nothing behind."""
    directory = os.path.abspath(os.fspath(directory))
    probe = directory
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    try:
        if not os.path.isdir(probe):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), probe)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise files.file_write_error(exc, directory) from exc
