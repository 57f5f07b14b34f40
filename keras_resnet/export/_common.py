"""Shared pieces of the exporters: errors, atomic writes, parity figures, timing."""

import contextlib
import os
import shutil
import statistics
import tempfile
import time

import numpy as np


class ExportError(ValueError):
    """Bad input to an export (the message says what was wrong and what is accepted)."""


class ParityError(RuntimeError):
    """One or more exports failed their parity threshold (artifacts and report are kept)."""

    def __init__(self, failures, report=None):
        self.failures = list(failures)
        self.report = report
        super().__init__("; ".join(self.failures))


# Thresholds (the documented guarantees).
FLOAT_TOLERANCE = {"savedmodel": 1e-5, "tflite": 1e-4, "onnx": 1e-4}
MIN_AGREEMENT = 0.99          # top-1 agreement with the Keras model, quantized exports
MAX_ACCURACY_DROP = 0.005     # 0.5 percentage points on held-out data

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


@contextlib.contextmanager
def atomic_path(path, overwrite=False, directory=False):
    """Yield a temporary sibling of ``path``; on success rename it to ``path``.

    Nothing is left at ``path`` (or at the temporary name) when the body raises.
    """
    check_new_path(path, overwrite)
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if directory:
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
        os.rmdir(tmp)  # the writer creates it
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", dir=parent)
        os.close(fd)
        os.remove(tmp)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise RuntimeError(f"the writer produced nothing for {path}")
        if os.path.lexists(path):
            check_new_path(path, overwrite)
            remove(path)
        os.rename(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


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


def float_parity(fmt, ref_logits, logits, tolerance=None):
    """Max abs difference of float32 logits against the Keras model's."""
    tolerance = FLOAT_TOLERANCE[fmt] if tolerance is None else tolerance
    diff = float(np.max(np.abs(np.asarray(logits, "float64") - np.asarray(ref_logits, "float64"))))
    scale = float(np.max(np.abs(ref_logits))) or 1.0
    passed = bool(diff <= tolerance)
    message = "" if passed else (
        f"max abs logit difference {diff:.3g} exceeds the {tolerance:g} threshold by {diff - tolerance:.3g}"
    )
    return {"kind": "float", "max_abs_diff": diff, "max_rel_diff": diff / scale,
            "threshold": tolerance, "passed": passed,
            "message": message}


def quantized_parity(ref_logits, logits, labels=None, min_agreement=MIN_AGREEMENT,
                     max_accuracy_drop=MAX_ACCURACY_DROP):
    """Top-1 agreement with the Keras model and (with labels) the accuracy change."""
    ref_top1 = np.argmax(ref_logits, axis=-1)
    top1 = np.argmax(logits, axis=-1)
    agreement = float(np.mean(ref_top1 == top1))
    out = {"kind": "quantized", "agreement": agreement, "min_agreement": min_agreement,
           "max_abs_diff": float(np.max(np.abs(np.asarray(logits, "float64") - ref_logits)))}
    problems = []
    if agreement < min_agreement:
        problems.append(
            f"top-1 agreement {agreement:.2%} is below the {min_agreement:.0%} threshold by "
            f"{(min_agreement - agreement) * 100:.2f} pp"
        )
    if labels is not None:
        labels = np.asarray(labels)
        ref_acc = float(np.mean(ref_top1 == labels))
        acc = float(np.mean(top1 == labels))
        out.update(keras_accuracy=ref_acc, accuracy=acc, accuracy_change=acc - ref_acc,
                   max_accuracy_drop=max_accuracy_drop)
        if ref_acc - acc > max_accuracy_drop + 1e-12:
            problems.append(
                f"accuracy {acc:.2%} is {(ref_acc - acc) * 100:.2f} pp below the Keras model's "
                f"{ref_acc:.2%} (allowed: {max_accuracy_drop * 100:.1f} pp), short by "
                f"{(ref_acc - acc - max_accuracy_drop) * 100:.2f} pp"
            )
    out["passed"] = not problems
    out["message"] = "; ".join(problems)
    return out


def parity_vs_keras(source, fmt, precision, logits, eval_images, eval_labels=None):
    """Float exports: max abs logit difference; quantized ones: top-1 agreement and accuracy."""
    ref = source.keras_logits(eval_images)
    if precision == "fp32":
        return float_parity(fmt, ref, logits)
    return quantized_parity(ref, logits, eval_labels)


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

