"""keras-resnet-experiment degradation: runs at a tiny budget; its CSV, PNG and table hold
what the runs measured; --init-from records where the grown model came from."""

import configparser
import csv
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import train_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"shallow": "#1f77b4", "deep": "#d62728", "grown": "#2ca02c"}  # the plot's legend


def experiment(args, cwd):
    return subprocess.run([sys.executable, "-m", "keras_resnet.experiments", *args], cwd=cwd,
                          env=train_env(), capture_output=True, text=True, timeout=900)


def has_color(pixels, hex_color, tol=0.06):
    rgb = np.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(pixels[..., :3] - rgb).max(axis=-1) < tol).any())


@pytest.mark.slow
def test_degradation_tiny_budget_writes_png_csv_and_table(tmp_path):
    out = tmp_path / "exp"
    proc = experiment(["degradation", "--depths", "8,14", "--iterations", "20",
                       "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[5/5] ResNet-14 grown from ResNet-8" in proc.stdout  # progress, per model

    keys = ["plain8", "plain14", "resnet8", "resnet14", "resnet14_grown"]
    with open(out / "degradation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == [k for k in keys for _ in range(2)]  # 2 epochs x 10 steps
    for key in keys:
        # The errors are the run directory's own measurements (train.py's metrics.csv).
        with open(out / key / "metrics.csv") as f:
            metrics = list(csv.DictReader(f))
        mine = [r for r in rows if r["model"] == key]
        for r, m in zip(mine, metrics):
            assert abs(float(r["train_error"]) - (1 - float(m["accuracy"]))) < 1e-9
            assert abs(float(r["test_error"]) - (1 - float(m["test_accuracy"]))) < 1e-9
            assert 0 <= float(r["test_error"]) <= 1
        assert [int(r["iteration"]) for r in mine] == [10, 20]
        offset = 20 if key.endswith("grown") else 0  # the grown run continues ResNet-8's
        assert [int(r["total_iteration"]) for r in mine] == [offset + 10, offset + 20]
    with open(out / "resnet14_grown" / "run.json") as f:
        info = json.load(f)
    assert info["init_from"]["path"] == str(out / "resnet8" / "last.keras")
    assert info["init_from"]["depth"] == 8 and info["init_from"]["grown_to_depth"] == 14
    assert info["init_from"]["inserted_blocks"] == 3
    assert info["config"]["lr"] == 0.01  # a tenth of the recipe's rate
    # The default budget warms the four models trained from scratch up over 5 epochs, cut
    # to the run's length (20 iterations, 10 an epoch: 2); the grown model starts from a
    # trained network and has no warm-up.
    assert info["config"]["warmup_epochs"] == 0
    for key in keys[:4]:
        with open(out / key / "run.json") as f:
            assert json.load(f)["config"]["warmup_epochs"] == 2

    # train.py --init-from refuses a source of another family, naming the difference.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--model", "plain14",
                           "--init-from", str(out / "resnet8"), "--epochs", "1", "--run-dir",
                           str(tmp_path / "refused")], cwd=tmp_path, env=train_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"train.py: error: init_from='{out / 'resnet8'}': cannot grow into a different family "
        "(residual: True -> False); accepted:")
    assert not (tmp_path / "refused").exists()

    table = (out / "degradation.md").read_text()
    for key, label in zip(keys, ["plain-8", "plain-14", "ResNet-8", "ResNet-14",
                                 "ResNet-14 grown from ResNet-8"]):
        final = [r for r in rows if r["model"] == key][-1]
        assert f"| {label} | {100 * float(final['train_error']):.2f} | " \
               f"{100 * float(final['test_error']):.2f} |" in table

    import matplotlib.image

    png = matplotlib.image.imread(str(out / "degradation.png"))
    assert png.shape[0] > 200 and png.shape[1] > 3 * png.shape[0] / 2
    third = png.shape[1] // 3
    plain, residual, grown = png[:, :third], png[:, third:2 * third], png[:, 2 * third:]
    # Shallow (blue) and deep (red) curves in the plain and residual panels; the grown
    # (green) curve only in its own panel, next to the shallow run it continues.
    for panel in (plain, residual):
        assert has_color(panel, COLORS["shallow"]) and has_color(panel, COLORS["deep"])
        assert not has_color(panel, COLORS["grown"])
    assert has_color(grown, COLORS["grown"]) and has_color(grown, COLORS["shallow"])
    assert not has_color(grown, COLORS["deep"])


def test_help_bad_input_and_console_script(tmp_path, capsys):
    from keras_resnet import experiments

    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["degradation", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--iterations" in out and "--iterations 64000" in out
    assert "--budget {default,small}" in out
    assert experiments.main(["degradation", "--depths", "20,21", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "keras-resnet-experiment: error: depths=(20, 21) is not supported; expected two CIFAR "
        "depths (6n+2, 8 to 1202), shallow then deep, e.g. (20, 56)"]
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_info:  # one seed, or seeds 0 .. N-1: not both
        experiments.main(["degradation", "--seed", "1", "--seeds", "3", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: --seed and --seeds: --seed is the seed of a single run, --seeds N runs seeds "
        "0 .. N-1; give one of them")
    assert not (tmp_path / "x").exists()
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    scripts = dict(line.split(" = ") for line in
                   cfg["options.entry_points"]["console_scripts"].strip().splitlines())
    module, func = scripts["keras-resnet-experiment"].split(":")
    assert getattr(importlib.import_module(module), func) is experiments.main


def test_degradation_models_are_the_cifar_networks_of_their_depth():
    """The registry names the degradation experiment trains build the CIFAR network of the
    depth (6n+2: 3 stages of n basic blocks of 16/32/64 filters, 3x3 convolutions, option
    A, one dense layer: depth weighted layers), also at 50, an ImageNet depth whose plain
    name is ImageNet's bottleneck ResNet-50 (the slow test below trains it)."""
    from keras_resnet import experiments
    from keras_resnet.registry import resolve_model

    for family in ("plain", "resnet"):
        for depth in (20, 50):
            name = experiments.cifar_model_name(family, depth)
            model = resolve_model(name)(input_shape=(8, 8, 1), classes=10)
            convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
            dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
            assert len(convs) == depth - 1 and len(dense) == 1, name
            assert {tuple(c.kernel_size) for c in convs} == {(3, 3)}, name
            assert {c.filters for c in convs} == {16, 32, 64}, name


def _tree(root):
    """``{relative path: bytes}`` of every file under ``root``."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.mark.slow
def test_degradation_seeds_cifar_depth_50_and_an_out_of_the_other_budget(tmp_path, capsys):
    """--seeds 2: one run directory per model and seed, the table's mean ± sample standard
    deviation (min–max) is the runs' own last epochs; depth 50 (also an ImageNet depth) is
    built in its CIFAR form; an --out made with --budget small is refused by the default
    budget in one line naming the setting and the remedy, and left as it was."""
    import statistics

    from keras_resnet import experiments
    from keras_resnet.keras_file import load_model

    out = tmp_path / "exp"
    argv = ["degradation", "--depths", "8,50", "--iterations", "2", "--batch-size", "8",
            "--seeds", "2", "--out", str(out), "--quiet"]
    assert experiments.main(argv + ["--budget", "small"]) == 0, capsys.readouterr().err
    keys = ["plain8", "plain50", "resnet8", "resnet50", "resnet50_grown"]
    assert sorted(os.listdir(out)) == sorted(
        [f"{k}_seed{s}" for k in keys for s in (0, 1)]
        + ["degradation.csv", "degradation.md", "degradation.png"])

    # Depth 50 = 6n+2 with n = 8: the CIFAR network has 3 stages of 8 basic blocks (two 3x3
    # convolutions each) of 16/32/64 filters after a 3x3 stem, option-A shortcuts (no
    # projection), and one dense layer: 50 weighted layers, every convolution 3x3. ImageNet's
    # ResNet-50 has a 7x7 stem, 1x1 convolutions and up to 2,048 filters.
    for key, family in (("plain50", "plain"), ("resnet50", "resnet"), ("resnet50_grown", "resnet")):
        with open(out / f"{key}_seed0" / "run.json") as f:
            assert json.load(f)["config"]["model"] == f"{family}50cifar"
        model = load_model(str(out / f"{key}_seed0" / "last.keras"))
        convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
        dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
        assert len(convs) == 1 + 3 * 8 * 2 and len(dense) == 1
        assert {tuple(c.kernel_size) for c in convs} == {(3, 3)}
        assert {c.filters for c in convs} == {16, 32, 64}

    table = (out / "degradation.md").read_text()
    assert "mean ± sample standard deviation (min–max) over 2 seeds" in table
    with open(out / "degradation.csv") as f:
        rows = list(csv.DictReader(f))
    for key, label in zip(keys, ["plain-8", "plain-50", "ResNet-8", "ResNet-50",
                                 "ResNet-50 grown from ResNet-8"]):
        lasts = {}
        for seed in (0, 1):
            run = out / f"{key}_seed{seed}"
            with open(run / "run.json") as f:
                info = json.load(f)
            assert info["config"]["seed"] == seed
            assert info["config"]["warmup_epochs"] == 0  # --budget small
            if key.endswith("grown"):  # each seed's grown model continues that seed's ResNet-8
                assert info["init_from"]["path"] == str(out / f"resnet8_seed{seed}" / "last.keras")
            with open(run / "metrics.csv") as f:
                lasts[seed] = list(csv.DictReader(f))[-1]
            mine = [r for r in rows if r["model"] == key and r["seed"] == str(seed)]
            assert abs(float(mine[-1]["train_error"]) - (1 - float(lasts[seed]["accuracy"]))) < 1e-9
        cells = []
        for column in ("accuracy", "test_accuracy"):
            errors = [100 * (1 - float(lasts[s][column])) for s in (0, 1)]
            cells.append(f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} "
                         f"({min(errors):.2f}–{max(errors):.2f})")
        assert f"| {label} | {cells[0]} | {cells[1]} |" in table

    # The same --out rerun with the default budget (a 1-epoch warm-up at this length): refused
    # before anything trains, naming the setting and the remedies; nothing changes.
    before = _tree(out)
    capsys.readouterr()
    assert experiments.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"keras-resnet-experiment: error: {out / 'plain8_seed0'} was trained with a 0-epoch "
        "warm-up (warmup_epochs=0) and this command uses 1 (--budget default); rerun with "
        "--budget small to resume it (the earlier default), use another --out, or pass "
        "--overwrite to train it again"]
    assert _tree(out) == before
    # The same command as the first: resumed, nothing trained again, the same table.
    assert experiments.main(argv + ["--budget", "small"]) == 0
    assert (out / "degradation.md").read_text() == table
