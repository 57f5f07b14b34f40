#!/usr/bin/env python3
"""Training throughput of train.py's loop against peers on their own natural paths.

For each model, in one run, on the same synthetic batch (CPU or the first GPU):

- ``train.py loop``: keras_resnet's training step as ``keras_resnet.training.train`` runs it
  (``strategy.run`` in a one-step ``tf.function``, the sums read back every 16 steps, SGD
  momentum 0.9, weight decay 1e-4 as its gradient), with the kernels keras_resnet's commands
  choose: TensorFlow's oneDNN kernels on every x86-64 CPU (``TF_ENABLE_ONEDNN_OPTS=1`` unless
  set);
- ``Keras fit`` and ``Keras train_on_batch``: the same keras_resnet model under Keras's own
  loop (SGD momentum 0.9, ``weight_decay=1e-4``), with TensorFlow's default kernels (oneDNN
  only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; Eigen elsewhere); where that default
  is Eigen, also ``Keras fit, oneDNN on`` (the same with ``TF_ENABLE_ONEDNN_OPTS=1``);
- ``keras.applications fit``: ``keras.applications.ResNet50`` under ``model.fit`` (ResNet-50 only);
- ``PyTorch eager``: a torchvision-style network (ResNet-20 option A / ResNet-50 v1.5) in eager
  mode with ``torch.optim.SGD(momentum=0.9, weight_decay=1e-4)``; ``torch.compile`` with
  ``--compile``.

``--ablate`` adds variants of the loop that locate its costs: the sums read back after every
step, and no weight-decay term. Each measurement runs in its own
process (TensorFlow and PyTorch do not share thread pools); rounds alternate the peers and
the best round of each is kept. ``--precision mixed_bfloat16`` is measured only where the CPU
has native bf16 (avx512_bf16 or amx_bf16): emulated bf16 is many times slower than float32.
The machine line names the CPU flags and the oneDNN settings. ``--as-avx2-only`` runs every
peer as it would run on an AVX2-only CPU (many AMD EPYC): TensorFlow's peers on Eigen (its
default there), keras_resnet's loop and ``Keras fit, oneDNN on`` on oneDNN restricted to AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2``), PyTorch restricted to AVX2 (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``).

    python3 bench/bench_train.py --models resnet20 --steps 20 --rounds 3
    python3 bench/bench_train.py --as-avx2-only --models resnet20
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = {"resnet20": (32, 10, 128), "resnet50": (224, 1000, 16)}


def _data(size, classes, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, size, size, 3)).astype("float32"),
            rng.integers(0, classes, batch).astype("int64"))


def _keras_resnet(model, classes, size):
    import keras_resnet as kr

    if model == "resnet20":
        return kr.ResNet20CIFAR(input_shape=(size, size, 3), classes=classes, classifier_activation=None)
    return kr.ResNet50(input_shape=(size, size, 3), classes=classes, classifier_activation=None)


LOOP = "train.py loop"
ABLATIONS = ("train.py loop, 1 step/call", "train.py loop, no weight decay")
FIT_ONEDNN = "Keras fit, oneDNN on"
NN_FEATURES = ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def onednn_by_default():
    """Whether TensorFlow turns its oneDNN kernels on by itself on this CPU."""
    return any(f in cpu_flags(every=True) for f in NN_FEATURES)


def peer_env(peer, as_avx2_only):
    """The environment a peer's process runs in: its own natural path on this CPU, or with
    ``as_avx2_only`` the path it would take on an AVX2-only CPU."""
    env = dict(os.environ)
    ours = peer.startswith(LOOP) or peer == FIT_ONEDNN
    torch_peer = peer in ("PyTorch eager", "torch.compile")
    if as_avx2_only:
        if torch_peer:
            env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
        elif ours:
            env.update(TF_ENABLE_ONEDNN_OPTS="1", ONEDNN_MAX_CPU_ISA="AVX2")
        else:
            env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    elif peer == FIT_ONEDNN:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    elif ours and platform.machine().lower() in ("x86_64", "amd64"):
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # what keras_resnet's commands do
    return env


def worker(peer, model, steps, precision="float32"):
    """Images/s of ``steps`` training steps of ``peer`` (after a warm-up)."""
    size, classes, batch = SETUPS[model]
    x, y = _data(size, classes, batch)
    if peer in ("PyTorch eager", "torch.compile"):
        import torch

        torch.set_num_threads(os.cpu_count())
        net = _torch_model(model, classes)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        xt, yt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
        loss_fn = torch.nn.CrossEntropyLoss()
        forward = torch.compile(net) if peer == "torch.compile" else net
        bf16 = precision == "mixed_bfloat16"

        def run(n):
            for _ in range(n):
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(forward(xt), yt)
                loss.backward()
                opt.step()
            return float(loss)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.path.insert(0, ROOT)
        import keras
        import tensorflow as tf

        keras.mixed_precision.set_dtype_policy(precision)
        if peer.startswith(LOOP):
            from keras_resnet import training as kt

            strategy = tf.distribute.OneDeviceStrategy(
                "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
            with strategy.scope():
                net = _keras_resnet(model, classes, size)
                cfg = kt.TrainConfig(optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-4,
                                     label_smoothing=0.0, precision=precision)
                opt = kt.make_optimizer(cfg, 0.1, net)
                opt.build(net.trainable_variables)
            ds = tf.data.Dataset.from_tensors((x, y.astype("int32"))).repeat()
            it = iter(strategy.experimental_distribute_dataset(ds))
            decayed = [] if peer.endswith("no weight decay") else kt.decayed_variables(net)
            chunk = kt.make_train_chunk(strategy, net, opt, it, cfg, batch, decayed, classes)
            per_call = 1 if peer.endswith("1 step/call") else 16
            chunk(per_call)  # traced before the timing, as in a run's first call

            def run(n):
                for _ in range(n // per_call):
                    loss = chunk(per_call)[0]
                if n % per_call:
                    loss = chunk(n % per_call)[0]
                return float(loss)
        else:
            net = (keras.applications.ResNet50(weights=None, classes=classes, classifier_activation=None)
                   if peer == "keras.applications fit" else _keras_resnet(model, classes, size))
            net.compile(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            if peer == "Keras train_on_batch":
                def run(n):
                    for _ in range(n):
                        loss = net.train_on_batch(x, y)
                    return float(loss)
            else:
                ds = tf.data.Dataset.from_tensors((x, y)).repeat()

                def run(n):
                    return net.fit(ds, steps_per_epoch=n, epochs=1, verbose=0).history["loss"][-1]
    run(2)
    t0 = time.perf_counter()
    run(steps)
    return batch * steps / (time.perf_counter() - t0)


def cpu_flags(every=False):
    """The CPU's vector-unit flags that matter for training throughput."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return []
    if every:
        return sorted(flags)
    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))


def native_bf16():
    return any(f in cpu_flags() for f in ("avx512_bf16", "amx_bf16"))


def _torch_model(model, classes):
    """torchvision's ResNet-50 (v1.5) or the CIFAR ResNet-20 (option A), written out."""
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            out = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            short = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
            if self.pad:
                short = nn.functional.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            return torch.relu(out + short)

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.down(x))

    if model == "resnet20":
        layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
        for stage, cout in enumerate((16, 32, 64)):
            for b in range(3):
                layers.append(Basic(cin, cout, 2 if stage and not b else 1))
                cin = cout
    else:
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, (width, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            for b in range(n):
                layers.append(Bottleneck(cin, width, 2 if stage and not b else 1))
                cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers).train()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=sorted(SETUPS), default=["resnet20", "resnet50"],
                   help="models to measure (default: both)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round (default: 10)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept (default: 3)")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    p.add_argument("--ablate", action="store_true",
                   help="also the loop with one step per call, and without weight decay")
    p.add_argument("--compile", action="store_true", help="also torch.compile")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="leave PyTorch out")
    p.add_argument("--as-avx2-only", action="store_true",
                   help="run every peer as on an AVX2-only CPU (see the module docstring)")
    p.add_argument("--worker", nargs=4, metavar=("PEER", "MODEL", "STEPS", "PRECISION"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        peer, model, steps, precision = args.worker
        print(json.dumps({"images_per_second": worker(peer, model, int(steps), precision)}))
        return 0
    onednn = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")
              if k in os.environ}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"flags {' '.join(cpu_flags())}; {onednn or 'oneDNN defaults'}"
          f"{'; peers run as on an AVX2-only CPU' if args.as_avx2_only else ''}; {args.precision}",
          flush=True)
    if args.precision == "mixed_bfloat16" and (args.as_avx2_only or not native_bf16()):
        print("this CPU has no native bf16 (avx512_bf16/amx_bf16): bf16 would be emulated, many "
              "times slower than float32; not measured")
        return 0
    rows = []
    for model in args.models:
        peers = [LOOP, *(ABLATIONS if args.ablate else ()), "Keras fit", "Keras train_on_batch"]
        if args.as_avx2_only or not (onednn_by_default() or "TF_ENABLE_ONEDNN_OPTS" in os.environ):
            peers.append(FIT_ONEDNN)
        if model == "resnet50":
            peers.append("keras.applications fit")
        peers += (["PyTorch eager"] if args.torch else []) + (["torch.compile"] if args.compile else [])
        best = {}
        for r in range(args.rounds):
            for peer in (peers if r % 2 == 0 else peers[::-1]):
                out = subprocess.run([sys.executable, __file__, "--worker", peer, model,
                                      str(args.steps), args.precision],
                                     env=peer_env(peer, args.as_avx2_only),
                                     capture_output=True, text=True, timeout=3600)
                if out.returncode != 0:
                    raise SystemExit(f"{peer} failed:\n{out.stderr[-3000:]}")
                ips = json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]
                best[peer] = max(best.get(peer, 0.0), ips)
                print(f"  {model} round {r + 1} {peer}: {ips:.1f} images/s", flush=True)
        for peer in peers[1:]:
            rows.append((model, SETUPS[model][2], best[LOOP], peer, best[peer],
                         best[LOOP] / best[peer]))
    print(f"\n| model | batch | {LOOP} images/s | peer | peer images/s | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for model, batch, ours, peer, theirs, ratio in rows:
        print(f"| {model} | {batch} | {ours:.1f} | {peer} | {theirs:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
