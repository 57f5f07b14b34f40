#!/usr/bin/env python3
"""ResNeXt-50 32x4d against ResNet-50: training and inference images/s in the same run.

Keras computes grouped convolutions on TensorFlow through an XLA-compiled function
(keras-team/keras#20471); keras_resnet's ``GroupedConv2D`` computes the same function
as one grouped ``tf.nn.conv2d`` ("native", what the default "auto" picks where oneDNN or a
GPU gives it a gradient) or as per-group convolutions ("split"). This script times ResNet-50 and ResNeXt-50 with each ``grouped_conv``
implementation on the same synthetic batch, alternating models between timing rounds and
keeping each model's best round, and reports images/s, the ratio to ResNet-50, and the
ratio per multiply-add (ResNeXt-50 has 4.23 GMACs at 224x224, ResNet-50 4.09).

    python3 bench/bench_variants.py                         # 128x128, batch 16
    python3 bench/bench_variants.py --size 224 --batch-size 32 --steps 10
    python3 bench/bench_variants.py --table                 # parameters and GMACs, no timing
"""

import argparse
import os
import platform
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Published figures (1000 classes, 224x224) as this repository found them: torchvision's
# model documentation ("Params", "GFLOPS", which torchvision counts as multiply-adds), the
# exact counts of timm's resnet50d and seresnet50, and timm's model tables (rounded
# "Params"/"GMACs"). "-" where no published figure was looked up.
PUBLISHED = {
    "ResNet50": ("torchvision resnet50", "25,557,032", "4.09"),
    "ResNeXt50_32x4d": ("torchvision resnext50_32x4d", "25,028,904", "4.23"),
    "ResNeXt101_32x8d": ("torchvision resnext101_32x8d", "88,791,336", "16.41"),
    "ResNeXt101_64x4d": ("torchvision resnext101_64x4d", "83,455,272", "15.46"),
    "WideResNet50_2": ("torchvision wide_resnet50_2", "68,883,240", "11.40"),
    "WideResNet101_2": ("torchvision wide_resnet101_2", "126,886,696", "22.75"),
    "ResNet18D": ("timm resnet18d", "-", "-"),
    "ResNet34D": ("timm resnet34d", "-", "-"),
    "ResNet50D": ("timm resnet50d", "25,576,264", "-"),
    "ResNet101D": ("timm resnet101d", "44.6M", "8.1"),
    "ResNet152D": ("timm resnet152d", "-", "-"),
    "ResNet200D": ("timm resnet200d", "64.7M", "20.1 at 256x256"),
    "SEResNet50": ("timm seresnet50", "28,088,024", "-"),
    "SEResNet101": ("timm seresnet101", "-", "-"),
    "ECAResNet50D": ("timm ecaresnet50d", "25.6M", "4.4"),
}


def macs(model):
    """Multiply-adds of one image: every convolution and dense layer (what torchvision and
    timm count), from the layers' own shapes."""
    import numpy as np

    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "GroupedConv2D", "Conv1D"):
            out = layer.output.shape[1:]
            kernel = layer.kernel.shape
            total += int(np.prod(out[:-1])) * out[-1] * int(np.prod(kernel[:-1]))
        elif kind == "Dense":
            total += int(np.prod(layer.kernel.shape))
    return total


def table():
    import numpy as np

    import keras_resnet as kr

    print("| model | parameters | GMACs (224x224) | published | published params | published GMACs |")
    print("|---|---:|---:|---|---:|---:|")
    for name, (source, params, gmacs) in PUBLISHED.items():
        model = getattr(kr, name)(input_shape=(224, 224, 3))
        count = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        print(f"| {name} | {count:,} | {macs(model) / 1e9:.2f} | {source} | {params} | {gmacs} |", flush=True)
        del model


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        flags = sorted(set(re.findall(r"avx512[a-z_0-9]*", info)))
        name = re.search(r"model name\s*:\s*(.*)", info)
        cpu = name.group(1) if name else platform.processor()
    except OSError:
        flags, cpu = [], platform.processor()
    return f"{cpu}; {os.cpu_count()} CPUs; AVX-512 flags: {' '.join(flags) or 'none'}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="image size (default 128)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds; the best is kept (default 2)")
    parser.add_argument("--implementations", default="split,native,keras",
                        help="grouped_conv implementations to time (default split,native,keras)")
    parser.add_argument("--table", action="store_true", help="print parameters and GMACs of every family and exit")
    args = parser.parse_args(argv)
    if args.size < 32 or args.batch_size < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--size must be at least 32; --batch-size, --steps and --rounds positive")
    impls = [i.strip() for i in args.implementations.split(",") if i.strip()]
    bad = [i for i in impls if i not in ("split", "native", "keras")]
    if bad:
        parser.error(f"--implementations: {bad[0]!r} is not one of split, native, keras")
    if args.table:
        table()
        return 0

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_resnet as kr

    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, 3)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (args.batch_size, *shape)).astype("float32"))
    y = tf.constant(np.random.default_rng(1).integers(0, 1000, args.batch_size))
    models = {"ResNet-50": kr.ResNet50(input_shape=shape, classifier_activation=None)}
    for impl in impls:
        models[f"ResNeXt-50 32x4d ({impl})"] = kr.ResNeXt50_32x4d(
            input_shape=shape, classifier_activation=None, grouped_conv=impl)
    gmacs = {name: macs(m) / 1e9 for name, m in models.items()}
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    steps = {}
    for name, model in models.items():
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

        def train(x, y, model=model, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        steps[name] = (tf.function(train), tf.function(lambda x, model=model: model(x, training=False)))
    best = {name: [0.0, 0.0] for name in models}
    print(f"machine: {machine()}", flush=True)
    print(f"{args.size}x{args.size}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds", flush=True)
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            train, infer = steps[name]
            for which, fn, call in ((0, train, lambda: train(x, y)), (1, infer, lambda: infer(x))):
                np.asarray(call())  # warm-up / trace
                start = time.perf_counter()
                for _ in range(args.steps):
                    out = call()
                np.asarray(out)
                rate = args.steps * args.batch_size / (time.perf_counter() - start)
                best[name][which] = max(best[name][which], rate)
            print(f"  round {r + 1}: {name} done", file=sys.stderr, flush=True)
    base = best["ResNet-50"]
    print("| model | GMACs (at this size) | train img/s | infer img/s | train vs ResNet-50 | "
          "train per GMAC vs ResNet-50 | infer per GMAC vs ResNet-50 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (tr, inf) in best.items():
        g = gmacs[name] / gmacs["ResNet-50"]
        print(f"| {name} | {gmacs[name]:.2f} | {tr:.1f} | {inf:.1f} | {tr / base[0]:.2f} | "
              f"{tr * g / base[0]:.2f} | {inf * g / base[1]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
