#!/usr/bin/env python3
"""Training throughput of train.py's loop against peers on their own natural paths.

For each model, in one run, on the same synthetic batch (float32, CPU or the first GPU):

- ``train.py loop``: keras_resnet's training step as ``keras_resnet.training.train`` runs it
  (``strategy.run`` in a ``tf.function``, several steps per call, SGD momentum 0.9, L2 1e-4);
- ``Keras fit``: the same keras_resnet model under ``model.fit`` (SGD momentum 0.9,
  ``weight_decay=1e-4``), Keras's own loop;
- ``keras.applications fit``: ``keras.applications.ResNet50`` under ``model.fit`` (ResNet-50 only);
- ``PyTorch eager``: a torchvision-style network (ResNet-20 option A / ResNet-50 v1.5) in eager
  mode with ``torch.optim.SGD(momentum=0.9, weight_decay=1e-4)``.

Each measurement runs in its own process (TensorFlow and PyTorch do not share thread pools);
rounds alternate the peers and the best round of each is kept.

    python3 bench/bench_train_peers.py --models resnet20 --steps 20 --rounds 3
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


def worker(peer, model, steps):
    """Images/s of ``steps`` training steps of ``peer`` (after a warm-up)."""
    size, classes, batch = SETUPS[model]
    x, y = _data(size, classes, batch)
    if peer == "pytorch":
        import torch

        torch.set_num_threads(os.cpu_count())
        net = _torch_model(model, classes)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        xt, yt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)
        loss_fn = torch.nn.CrossEntropyLoss()

        def run(n):
            for _ in range(n):
                opt.zero_grad()
                loss = loss_fn(net(xt), yt)
                loss.backward()
                opt.step()
            return float(loss)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        sys.path.insert(0, ROOT)
        import keras
        import tensorflow as tf

        if peer == "train.py loop":
            from keras_resnet import training as kt

            strategy = tf.distribute.OneDeviceStrategy(
                "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0")
            with strategy.scope():
                net = _keras_resnet(model, classes, size)
                cfg = kt.TrainConfig(optimizer="sgd", momentum=0.9, nesterov=False, weight_decay=1e-4,
                                     label_smoothing=0.0)
                opt = kt.make_optimizer(cfg, 0.1, net)
                opt.build(net.trainable_variables)
            ds = tf.data.Dataset.from_tensors((x, y.astype("int32"))).repeat()
            it = iter(strategy.experimental_distribute_dataset(ds))
            chunk = kt._make_train_chunk(strategy, net, opt, it, cfg, batch, kt.decayed_variables(net),
                                         classes)

            def run(n):
                return float(chunk(tf.constant(n))[0])
        else:
            net = (keras.applications.ResNet50(weights=None, classes=classes, classifier_activation=None)
                   if peer == "keras.applications fit" else _keras_resnet(model, classes, size))
            net.compile(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-4),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            ds = tf.data.Dataset.from_tensors((x, y)).repeat()

            def run(n):
                return net.fit(ds, steps_per_epoch=n, epochs=1, verbose=0).history["loss"][-1]
    run(2)
    t0 = time.perf_counter()
    run(steps)
    return batch * steps / (time.perf_counter() - t0)


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
    p.add_argument("--worker", nargs=3, metavar=("PEER", "MODEL", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        peer, model, steps = args.worker
        print(json.dumps({"images_per_second": worker(peer, model, int(steps))}))
        return 0
    flags = sorted(set(open("/proc/cpuinfo").read().split()) & {"avx512f", "avx512_vnni", "avx512_bf16", "avx2"})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"flags {' '.join(flags)}", flush=True)
    rows = []
    for model in args.models:
        peers = ["train.py loop", "Keras fit", "PyTorch eager"]
        if model == "resnet50":
            peers.insert(2, "keras.applications fit")
        best = {}
        for r in range(args.rounds):
            for peer in (peers if r % 2 == 0 else peers[::-1]):
                out = subprocess.run([sys.executable, __file__, "--worker", peer.replace("PyTorch eager", "pytorch"),
                                      model, str(args.steps)], capture_output=True, text=True, timeout=3600)
                if out.returncode != 0:
                    raise SystemExit(f"{peer} failed:\n{out.stderr[-3000:]}")
                ips = json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]
                best[peer] = max(best.get(peer, 0.0), ips)
                print(f"  {model} round {r + 1} {peer}: {ips:.1f} images/s", flush=True)
        for peer in peers[1:]:
            rows.append((model, SETUPS[model][2], best["train.py loop"], peer, best[peer],
                         best["train.py loop"] / best[peer]))
    print("\n| model | batch | train.py loop images/s | peer | peer images/s | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for model, batch, ours, peer, theirs, ratio in rows:
        print(f"| {model} | {batch} | {ours:.1f} | {peer} | {theirs:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
