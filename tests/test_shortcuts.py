"""keras-resnet-experiment shortcuts (He et al. 2015, Table 3) and --bottleneck: the table
holds what the runs measured, and the parameter and multiply-add counts of options A, B and
C equal counts computed here from the widths alone; ResNet-50's multiply-adds agree with
TensorFlow's profiler and with the published figures."""

import csv
import json
import statistics
import subprocess
import sys

import matplotlib.colors
import matplotlib.image
import pytest
from conftest import train_env

import keras_resnet as kr
from keras_resnet import experiments

WIDTHS = (16, 32, 64)  # CIFAR ResNet stage widths (He et al. 2015, section 4.2)


def experiment(args, cwd, timeout=900):
    return subprocess.run([sys.executable, "-m", "keras_resnet.experiments", *args], cwd=cwd,
                          env=train_env(), capture_output=True, text=True, timeout=timeout)


def cifar_blocks(depth, size):
    """``[(in channels, out channels, output side)]`` of every block of a CIFAR network."""
    n, side, cin, out = (depth - 2) // 6, size, WIDTHS[0], []
    for s, w in enumerate(WIDTHS):
        for b in range(n):
            if s > 0 and b == 0:
                side = (side + 1) // 2
            out.append((cin, w, side))
            cin = w
    return out


def cifar_counts(depth, size, channels, classes, option):
    """(parameters, multiply-adds) of the CIFAR network from its widths: 3x3 convolutions
    without bias, BN with 4 numbers per channel, a dense classifier; option A's zero-padding
    is free, a projection is a 1x1 convolution with BN."""
    params = 9 * channels * WIDTHS[0] + 4 * WIDTHS[0] + WIDTHS[-1] * classes + classes
    macs = size * size * 9 * channels * WIDTHS[0] + WIDTHS[-1] * classes
    for cin, w, side in cifar_blocks(depth, size):
        params += 9 * cin * w + 4 * w + 9 * w * w + 4 * w
        macs += side * side * (9 * cin * w + 9 * w * w)
        if option == "C" or (option == "B" and cin != w):
            params += cin * w + 4 * w
            macs += side * side * cin * w
    return params, macs


def test_shortcut_names_build_their_option():
    for option in "ABC":
        model = kr.resolve_model(f"resnet8-shortcut-{option.lower()}")(
            input_shape=(8, 8, 1), classes=10)
        assert model.get_config()["shortcut"] == option
    assert kr.resolve_model("ResNet50_shortcutC").keywords == {"shortcut": "C"}
    with pytest.raises(ValueError, match="a plain network has no shortcuts"):
        kr.resolve_model("plain20-shortcut-b")


@pytest.mark.slow
def test_shortcuts_tiny_budget_table_counts_and_resume(tmp_path):
    out = tmp_path / "exp"
    args = ["shortcuts", "--depth", "8", "--seeds", "2", "--iterations", "20", "--out", str(out)]
    proc = experiment(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[8/8] ResNet-8 C, seed 1: 20 iterations" in proc.stdout

    with open(out / "shortcuts.csv") as f:
        rows = list(csv.DictReader(f))
    options = ["plain", "A", "B", "C"]
    assert [(r["option"], int(r["seed"])) for r in rows] == [(o, s) for s in (0, 1) for o in options]
    for r in rows:  # the errors are each run directory's own last epoch (metrics.csv)
        with open(f"{r['run_dir']}/metrics.csv") as f:
            last = list(csv.DictReader(f))[-1]
        assert abs(float(r["train_error"]) - (1 - float(last["accuracy"]))) < 1e-9
        assert abs(float(r["test_error"]) - (1 - float(last["test_accuracy"]))) < 1e-9
        with open(f"{r['run_dir']}/run.json") as f:
            run = json.load(f)
        assert run["config"]["model"] == r["model"] and run["config"]["seed"] == int(r["seed"])

    summary = json.loads((out / "shortcuts.json").read_text())
    size, _, channels = summary["input_shape"]
    table = (out / "shortcuts.md").read_text().splitlines()
    body = [line for line in table if line.startswith("| ") and "---" not in line][1:]
    assert len(body) == 4
    for option, line in zip(options, body):
        entry = summary["options"][option]
        params, macs = cifar_counts(8, size, channels, 10, option)
        assert (entry["parameters"], entry["multiply_adds"]) == (params, macs), option
        for what in ("train_error", "test_error"):
            values = [float(r[what]) for r in rows if r["option"] == option]
            assert entry[what]["mean"] == pytest.approx(statistics.mean(values), abs=1e-12)
            assert entry[what]["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        cells = [c.strip() for c in line.strip("|").split("|")]
        label = "plain-8" if option == "plain" else f"ResNet-8 {option}"
        assert cells[0] == label
        assert cells[2] == (f"{100 * entry['train_error']['mean']:.2f} ± "
                            f"{100 * entry['train_error']['std']:.2f}")
        assert cells[4] == f"{params:,}"
    a, b, c, plain = (summary["options"][k]["parameters"] for k in ("A", "B", "C", "plain"))
    assert a == plain < b < c  # A adds nothing; B two projections; C one per block

    # The figure: a real PNG that matplotlib reads back, with every model's curves drawn in
    # its own colour (plain in one panel, A, B and C in the other). 20 iterations are two
    # epochs of digits, so each curve is a line across its panel: some hundred pixels of
    # its colour, where its two legend entries alone make about 40.
    png = (out / "shortcuts.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    image = matplotlib.image.imread(out / "shortcuts.png")[..., :3]
    assert image.shape[0] >= 200 and image.shape[1] >= 400
    for option, color in experiments.SHORTCUT_COLORS.items():
        near = (abs(image - matplotlib.colors.to_rgb(color)).max(axis=-1) < 0.02).sum()
        assert near > 100, (option, color, near)

    # Rerunning resumes: the finished runs are not trained again (metrics.csv, which
    # records each epoch's seconds, is unchanged); one seed is enough to see it.
    seed0 = [r["run_dir"] for r in rows if r["seed"] == "0"]
    before = {d: (tmp_path / d / "metrics.csv").read_bytes() for d in seed0}
    proc = experiment(args[:3] + ["--seeds", "1"] + args[5:], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {d: (tmp_path / d / "metrics.csv").read_bytes() for d in seed0} == before
    assert json.loads((out / "shortcuts.json").read_text())["seeds"] == [0]


def bottleneck_projection_counts(size):
    """Extra (parameters, multiply-adds) of ResNet-50 C over B: a 1x1 projection with BN on
    every block that B leaves with an identity shortcut (all but each stage's first)."""
    params = macs = 0
    side = size // 4  # after the 7x7/2 stem convolution and the 3x3/2 max-pool
    for s, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        if s > 0:
            side //= 2
        c = 4 * width
        params += (blocks - 1) * (c * c + 4 * c)
        macs += (blocks - 1) * side * side * c * c
    return params, macs


@pytest.mark.slow
def test_resnet50_multiply_adds_profiler_paper_and_c_over_b():
    from keras_resnet import complexity

    counts = {}
    for option, stride_on in (("B", "1x1"), ("C", "1x1"), ("B", "3x3")):
        model = kr.resolve_model(f"resnet50-shortcut-{option.lower()}")(
            input_shape=(224, 224, 3), stride_on=stride_on)
        analytic = complexity.multiply_adds(model)
        profiled, by_op = complexity.profiler_multiply_adds(model)
        assert analytic == profiled, (option, stride_on, by_op)
        counts[option, stride_on] = (model.count_params(), analytic)
    # He et al. 2015, Table 1: 3.8 x 10^9 for the paper's layout (stride on the first 1x1),
    # printed with one decimal; torchvision publishes 4.09 GFLOPS (multiply-adds) for its
    # layout (stride on the 3x3), printed with two.
    assert 3.8e9 <= counts["B", "1x1"][1] < 3.9e9
    assert round(counts["B", "3x3"][1] / 1e9, 2) == 4.09
    assert counts["B", "1x1"][0] == 25_557_032 + 53_120  # torchvision's trainable + BN statistics
    extra = bottleneck_projection_counts(224)
    assert (counts["C", "1x1"][0] - counts["B", "1x1"][0],
            counts["C", "1x1"][1] - counts["B", "1x1"][1]) == extra


def test_multiply_adds_match_profiler_on_a_small_model():
    from keras_resnet import complexity

    model = kr.resolve_model("resnet8-shortcut-c")(input_shape=(16, 16, 3), classes=7)
    assert complexity.multiply_adds(model) == cifar_counts(8, 16, 3, 7, "C")[1]
    assert complexity.profiler_multiply_adds(model)[0] == cifar_counts(8, 16, 3, 7, "C")[1]
    assert model.count_params() == cifar_counts(8, 16, 3, 7, "C")[0]


@pytest.mark.slow
def test_bottleneck_command_writes_ratios(tmp_path):
    out = tmp_path / "bn"
    proc = experiment(["shortcuts", "--bottleneck", "--image-size", "32", "--batch-size", "2",
                       "--steps", "2", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "bottleneck.json").read_text())
    b, c = summary["options"]["B"], summary["options"]["C"]
    extra = bottleneck_projection_counts(32)
    assert (c["parameters"] - b["parameters"], c["multiply_adds"] - b["multiply_adds"]) == extra
    assert b["profiler_multiply_adds"] == b["multiply_adds"]
    assert c["profiler_multiply_adds"] == c["multiply_adds"]
    # One 1024-channel bottleneck block: 1x1 1024->256, 3x3 256->256, 1x1 256->1024, three BNs;
    # option C adds a 1024->1024 projection with BN.
    block = 1024 * 256 + 9 * 256 * 256 + 256 * 1024 + 4 * (256 + 256 + 1024)
    assert (b["block_parameters"], c["block_parameters"]) == (block, block + 1024 * 1024 + 4096)
    for key, ratio in summary["c_over_b"].items():
        assert ratio == pytest.approx(c[key] / b[key])
        assert b[key] > 0
    assert b["train_steps"] == 2 and b["inference_steps"] == 2
    table = (out / "bottleneck.md").read_text()
    assert f"| parameters | {b['parameters']:,} | {c['parameters']:,} | " \
           f"{summary['c_over_b']['parameters']:.2f} |" in table
    assert "doubles" in table  # the paper's claim, beside the measured ratios


def test_shortcuts_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiments.main(["shortcuts", "--help"])
    assert exit_info.value.code == 0
    assert "--bottleneck" in capsys.readouterr().out
    for args, message in (
            (["--depth", "21"], "--depth 21: expected a CIFAR depth 6n+2"),
            (["--bottleneck", "--seeds", "2"], "--seeds applies to the training form"),
            (["--steps", "3"], "--steps applies to --bottleneck"),
            (["--seeds", "0"], "argument --seeds: 0 is not accepted; expected an integer in [1, 100]")):
        with pytest.raises(SystemExit) as exit_info:
            experiments.main(["shortcuts", *args, "--out", str(tmp_path / "x")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
