"""The export report: one entry per artifact, as JSON and as a Markdown table."""

import datetime
import json
import os
import platform
import sys

from ._common import atomic_path


def cpu_flags():
    """The CPU's vector-instruction flags that change kernels' speed and rounding (AVX2,
    AVX-512, VNNI, BF16, AMX), from /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(flag for flag in line.split(":", 1)[1].split()
                                  if flag in ("avx2", "fma") or flag.startswith(("avx512", "amx")))
    except OSError:
        pass
    return []


def machine():
    """A short description of this machine and the runtimes' versions."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "cpu_flags": cpu_flags()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import importlib.metadata

    for dist, key in (("tensorflow", "tensorflow"), ("keras", "keras"), ("onnxruntime", "onnxruntime"),
                      ("tf2onnx", "tf2onnx"), ("ai-edge-litert", "ai_edge_litert"),
                      ("openvino", "openvino")):
        try:
            info[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # optional runtimes
            pass
    return info


def _size(n):
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def _pp(x):
    return f"{x * 100:+.2f}"


def parity_text(parity):
    if not parity:
        return "reference"
    if parity["kind"] == "float":
        return (f"max abs diff {parity['max_abs_diff']:.2g}, {parity['max_rel_diff']:.2g} of scale "
                f"(<= {parity['rtol']:g})")
    low, high = parity.get("agreement_ci", (parity["agreement"], parity["agreement"]))
    text = (f"top-1 agreement {parity['agreement']:.2%} [{low:.1%}, {high:.1%}] of {parity.get('n', '?')}"
            + (f" (>= {parity['min_agreement'] * 100:g}%)" if parity.get("gate") != "accuracy"
               or "accuracy" not in parity else " (not gated: retrained)"))
    if "accuracy_change" in parity:
        low, high = parity["accuracy_change_ci"]
        text += (f", accuracy {_pp(parity['accuracy_change'])} pp [{_pp(low)}, {_pp(high)}] vs "
                 f"{parity['keras_accuracy']:.2%} (allowed -{parity['max_accuracy_drop'] * 100:g} pp; "
                 f"{parity['lost']} lost, {parity['gained']} gained, McNemar p {parity['mcnemar_p']:.2g})")
    return text


def _ms(value):
    return f"{value:.2f}" if value is not None else "-"


def status_text(artifact):
    if not artifact["passed"]:
        return "FAILED: " + artifact["parity"]["message"]
    warnings = (artifact.get("parity") or {}).get("warnings") or []
    return "warning: " + "; ".join(warnings) if warnings else "ok"


def markdown(report):
    """The report's runtime matrix: every artifact's accuracy on the labelled held-out data,
    agreement with Keras, parity, batch-1 and batch-32 latency, throughput, size and status."""
    lines = [
        f"Export of `{report['source'].get('path') or report['source'].get('model')}` "
        f"({report['source'].get('model')}), {report['created']}",
        "",
    ]
    lines += [f"Warning: {w}" for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    lines += [
        "| format | precision | accuracy | agreement | parity vs Keras | batch-1 ms | batch-32 ms "
        "| images/s | size | status | file |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for a in report["artifacts"]:
        p = a.get("parity") or {}
        acc = a.get("accuracy", p.get("accuracy"))
        agreement = "reference" if a["format"] == "keras" else (
            f"{p['agreement']:.2%}" if "agreement" in p else "-")
        path = os.path.relpath(a["path"], report["out_dir"]) if a.get("path") and report.get("out_dir") else "-"
        ips = a.get("throughput_ips")
        lines.append(f"| {a['format']} | {a['precision']} | {f'{acc:.2%}' if acc is not None else '-'} | "
                     f"{agreement} | {parity_text(a['parity'])} | {_ms(a.get('latency_ms'))} | "
                     f"{_ms(a.get('latency_b32_ms'))} | {f'{ips:.0f}' if ips else '-'} | "
                     f"{_size(a.get('size_bytes'))} | {status_text(a)} | {path} |")
    m = report.get("machine", {})
    flags = " ".join(m.get("cpu_flags") or []) or "?"
    n = report.get("evaluation", {}).get("n")
    lines += ["", (f"Accuracy and agreement on {n} held-out images" + (
        f" ({report['evaluation']['what']})" if report.get("evaluation", {}).get("what") else "")
        + "; intervals are 95%. " if n else "")
        + f"Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} CPUs ({flags}); "
        f"TensorFlow {m.get('tensorflow', '?')}, ONNX Runtime {m.get('onnxruntime', '?')}, "
        f"LiteRT {m.get('ai_edge_litert', '?')}, OpenVINO {m.get('openvino', '-')}."]
    if report.get("serving"):
        lines += ["", f"Serve the SavedModel with: `{report['serving']['command']}`"]
    return "\n".join(lines) + "\n"


def new_report(source, out_dir):
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "out_dir": os.path.abspath(out_dir),
        "source": source.describe(),
        "machine": machine(),
        "artifacts": [],
    }


def finish(report):
    """Collect the failures and the warnings (a float model at chance first, once)."""
    report["failures"] = [
        f"{a['format']} {a['precision']}: {a['parity']['message']}"
        for a in report["artifacts"] if not a["passed"]
    ]
    first, warnings = [], []
    for a in report["artifacts"]:
        for w in (a.get("parity") or {}).get("warnings") or []:
            if (a.get("parity") or {}).get("float_at_chance"):
                if w not in first:
                    first.append(w)
            else:
                warnings.append(f"{a['format']} {a['precision']}: {w}")
    if report.get("float_at_chance") and report["float_at_chance"] not in first:
        first.insert(0, report["float_at_chance"])
    report["warnings"] = first + warnings
    report["passed"] = not report["failures"]
    return report


def write(report, out_dir, name="report", overwrite=True):
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir`` (atomically)."""
    paths = {"json": os.path.join(out_dir, name + ".json"), "markdown": os.path.join(out_dir, name + ".md")}
    with atomic_path(paths["json"], overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2, default=str)
    with atomic_path(paths["markdown"], overwrite=overwrite) as tmp:
        with open(tmp, "w") as f:
            f.write(markdown(report))
    return paths


def print_outcome(report, quiet):
    """What an export command prints when the export passed: the table when its progress
    lines were quiet, then each warning (what the evaluation could not tell; exit 0) on
    standard error."""
    if quiet:
        print(markdown(report))
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
