#!/usr/bin/env python
"""Batch-1 latency and size of ResNet-50 exports: keras_resnet against keras.applications.

Both models (random weights, nothing downloaded; 224x224x3, 1000 classes) go through the
same :func:`keras_resnet.export.export_all` in one run: Keras, SavedModel, TFLite
fp32/fp16/int8 (full integer) and ONNX fp32/int8 (QDQ). Prints a Markdown table with
each format's latency for both models and their ratio, plus the two quantization targets
(TFLite int8 at most 0.40x its fp32 latency; ONNX int8 faster than ONNX fp32).

    python bench/bench_export.py --out /tmp/bench_export

Latency: after all exports, the two models' artifacts of each format are timed in
alternation for ``--rounds`` rounds of ``--runs`` batch-1 calls (after warm-up); the
figure is the best round's median, so a busy moment on a shared machine does not land on
one model only. Each runtime uses its default threading (LiteRT: one thread per CPU).
Compare ratios measured in the same run. Parity figures on random weights and random
images are reported but are not a quality measure (quantized agreement in particular).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_resnet.export import latency_ms  # noqa: E402

ROWS = [("keras", "fp32"), ("savedmodel", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"),
        ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")]


def _images(n, seed):
    """Smooth random 'photos' (low-frequency noise, pixels 0..255)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (n, 14, 14, 3)).astype("float32")
    return tf.image.resize(small, (224, 224), method="bilinear").numpy()


def run(out_dir, runs, rounds, calibration, overwrite):
    import keras

    import keras_resnet as kr
    from keras_resnet.data import IMAGENET_MEAN, IMAGENET_STD
    from keras_resnet.export import export_all
    from keras_resnet.export.report import machine

    keras.utils.set_random_seed(0)
    prep = {"scale": [1 / s for s in IMAGENET_STD], "offset": [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]}
    calib = _images(calibration, 1)
    evaluation = (_images(8, 2), None)
    models = {
        "keras_resnet": kr.ResNet50(weights=None, input_shape=(224, 224, 3)),
        # The same network as keras.applications (stride on the first 1x1, conv biases):
        # separates layout from implementation in the comparison.
        "keras_resnet v1": kr.ResNet50(weights=None, input_shape=(224, 224, 3), stride_on="1x1",
                                       use_bias=True, name="resnet50_v1"),
        "keras.applications": keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)),
    }
    names = {"keras_resnet": "keras_resnet_resnet50", "keras_resnet v1": "keras_resnet_resnet50_v1",
             "keras.applications": "applications_resnet50"}
    reports = {}
    for label, model in models.items():
        name = names[label]
        print(f"=== {label}: {model.count_params():,} parameters", flush=True)
        t = time.time()
        report = export_all(
            model, os.path.join(out_dir, name), tflite_precisions="fp32,fp16,int8",
            onnx_precisions="fp32,int8", qat_epochs=0, preprocessing=prep, calibration_images=calib,
            eval_data=evaluation, model_name=name, latency_runs=5, overwrite=overwrite, check=False,
            progress=lambda m: print("  " + m, flush=True) if not m.startswith("\n") else None,
        )
        print(f"  ({time.time() - t:.0f} s)", flush=True)
        reports[label] = {(a["format"], a["precision"]): a for a in report["artifacts"]}

    # Timing: both models' artifacts of one format alternate, round after round, so a busy
    # moment on a shared machine hits both; the figure is the best round's median.
    print(f"=== timing: {rounds} rounds x {runs} batch-1 calls per artifact", flush=True)
    x = _images(1, 3)
    callers = {label: _callers(model, reports[label], prep, x) for label, model in models.items()}
    for key in ROWS:
        medians = {label: [] for label in models}
        for _ in range(rounds):
            for label in models:
                medians[label].append(latency_ms(callers[label][key], runs=runs, warmup=3))
        for label in models:
            reports[label][key]["latency_ms"] = min(medians[label])
            reports[label][key]["latency_rounds_ms"] = medians[label]
        print(f"  {key[0]} {key[1]}: " + ", ".join(
            f"{label} {min(m):.1f} ms" for label, m in medians.items()), flush=True)
    return reports, machine()


def _callers(model, report, prep, x):
    """Batch-1 call of each artifact, ``{(format, precision): fn}``."""
    import tensorflow as tf

    from keras_resnet.export import LiteRTModel, load_source
    from keras_resnet.export.onnx_export import ORTModel

    source = load_source(model, preprocessing=prep)
    keras_fn = tf.function(source.serving_outputs)
    tx = tf.constant(x)
    serving = tf.saved_model.load(report[("savedmodel", "fp32")]["path"]).signatures["serving_default"]
    out = {("keras", "fp32"): lambda: keras_fn(tx)["logits"].numpy(),
           ("savedmodel", "fp32"): lambda: serving(images=tx)["logits"].numpy()}
    for precision in ("fp32", "fp16", "int8"):
        lite = LiteRTModel(report[("tflite", precision)]["path"])
        xq = lite.quantize_input(x)
        out[("tflite", precision)] = (lambda m, v: lambda: m.runner(images=v))(lite, xq)
    for precision in ("fp32", "int8"):
        ort_model = ORTModel(report[("onnx", precision)]["path"])
        out[("onnx", precision)] = (lambda m: lambda: m.session.run(["logits"], {"images": x}))(ort_model)
    return out


def table(results, info):
    labels = list(results)
    peer = labels[-1]
    head = " | ".join(f"{label} ms" for label in labels)
    ratios = " | ".join(f"{label} / peer" for label in labels[:-1])
    sizes = " | ".join(f"{label} size" for label in labels)
    lines = [f"| format | precision | {head} | {ratios} | {sizes} |",
             "|---|---|" + "---:|" * (3 * len(labels) - 1)]
    for key in ROWS:
        row = [results[label].get(key) for label in labels]
        if not all(row):
            continue
        lines.append(
            f"| {key[0]} | {key[1]} | " + " | ".join(f"{a['latency_ms']:.1f}" for a in row) + " | "
            + " | ".join(f"{a['latency_ms'] / row[-1]['latency_ms']:.2f}x" for a in row[:-1]) + " | "
            + " | ".join(f"{a['size_bytes'] / 2**20:.1f} MB" if a.get("size_bytes") else "-" for a in row)
            + " |")
    lines.append("")
    for label, res in results.items():
        t8 = res[("tflite", "int8")]["latency_ms"] / res[("tflite", "fp32")]["latency_ms"]
        o8 = res[("onnx", "int8")]["latency_ms"] / res[("onnx", "fp32")]["latency_ms"]
        lines.append(f"{label}: TFLite int8/fp32 latency {t8:.2f}x (target <= 0.40x); "
                     f"ONNX int8/fp32 {o8:.2f}x (target < 1.00x)")
    lines.append("")
    lines.append(f"Peer: {peer}. Machine: {info.get('processor')}, {info.get('cpu_count')} CPUs, "
                 f"{info.get('platform')}; TensorFlow {info.get('tensorflow')}, Keras {info.get('keras')}, "
                 f"ONNX Runtime {info.get('onnxruntime')}, LiteRT {info.get('ai_edge_litert')}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_export_out", help="where the exports go (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=20, help="timed batch-1 calls per artifact and round")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (best round's median is reported)")
    parser.add_argument("--calibration", type=int, default=32, help="calibration images for int8")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results, info = run(args.out, args.runs, args.rounds, args.calibration, args.overwrite)
    text = table(results, info)
    print("\n" + text)
    with open(os.path.join(args.out, "bench_export.json"), "w") as f:
        json.dump({label: {f"{k[0]}/{k[1]}": v for k, v in r.items()} for label, r in results.items()},
                  f, indent=2, default=str)
    with open(os.path.join(args.out, "bench_export.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
