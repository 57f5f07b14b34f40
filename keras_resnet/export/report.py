"""The export report: one entry per artifact, as JSON and as a Markdown table."""

import datetime
import json
import os
import platform

from ._common import atomic_path


def machine():
    """A short description of this machine and the runtimes' versions."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for module, key in (("tensorflow", "tensorflow"), ("keras", "keras"), ("onnxruntime", "onnxruntime"),
                        ("tf2onnx", "tf2onnx"), ("ai_edge_litert", "ai_edge_litert")):
        try:
            mod = __import__(module)
            info[key] = getattr(mod, "__version__", "?")
        except Exception:  # noqa: BLE001 - optional runtimes
            pass
    return info


def _size(n):
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def parity_text(parity):
    if not parity:
        return "reference"
    if parity["kind"] == "float":
        return (f"max abs diff {parity['max_abs_diff']:.2g}, {parity['max_rel_diff']:.2g} of scale "
                f"(<= {parity['rtol']:g})")
    text = f"top-1 agreement {parity['agreement']:.2%} (>= {parity['min_agreement'] * 100:g}%)"
    if "accuracy" in parity:
        text += (f", accuracy {parity['accuracy']:.2%} ({parity['accuracy_change'] * 100:+.2f} pp"
                 f" vs {parity['keras_accuracy']:.2%}; allowed -{parity['max_accuracy_drop'] * 100:g} pp)")
    return text


def markdown(report):
    """The report's artifacts as a Markdown table."""
    lines = [
        f"Export of `{report['source'].get('path') or report['source'].get('model')}` "
        f"({report['source'].get('model')}), {report['created']}",
        "",
        "| format | precision | size | parity vs Keras | batch-1 latency (ms) | status | file |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for a in report["artifacts"]:
        status = "ok" if a["passed"] else "FAILED: " + a["parity"]["message"]
        lat = f"{a['latency_ms']:.2f}" if a.get("latency_ms") is not None else "-"
        path = os.path.relpath(a["path"], report["out_dir"]) if a.get("path") and report.get("out_dir") else "-"
        lines.append(f"| {a['format']} | {a['precision']} | {_size(a.get('size_bytes'))} | "
                     f"{parity_text(a['parity'])} | {lat} | {status} | {path} |")
    m = report.get("machine", {})
    lines += ["", f"Machine: {m.get('processor', '?')}, {m.get('cpu_count', '?')} CPUs; "
              f"TensorFlow {m.get('tensorflow', '?')}, ONNX Runtime {m.get('onnxruntime', '?')}, "
              f"LiteRT {m.get('ai_edge_litert', '?')}."]
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
    report["failures"] = [
        f"{a['format']} {a['precision']}: {a['parity']['message']}"
        for a in report["artifacts"] if not a["passed"]
    ]
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
