"""The command lines as a user meets them: help, list flags, quiet logs, the package's name."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, train_env

from keras_resnet.export.cli import build_parser
from keras_resnet.train import _parser as train_parser


def _experiment_parser():
    from keras_resnet.experiments import _parser

    return _parser()._subparsers._group_actions[0].choices["degradation"]


@pytest.mark.parametrize("parser", [train_parser(), build_parser(["savedmodel", "tflite", "onnx"]),
                                    _experiment_parser()], ids=["train", "export", "experiment"])
def test_every_flag_has_help_and_no_default_none(parser):
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "%(" not in text


def test_list_flags_take_commas_or_spaces():
    from keras_resnet.export.formats import FORMATS

    parser = build_parser(list(FORMATS))  # --formats is offered where every format is
    a = parser.parse_args(["run", "--tflite", "fp32", "int8", "--formats", "tflite,onnx", "--onnx", "fp32"])
    b = parser.parse_args(["run", "--tflite", "fp32,int8", "--formats", "tflite", "onnx", "--onnx", "fp32"])
    from keras_resnet.cli_util import flatten

    for args in (a, b):
        assert flatten(args.tflite) == ["fp32", "int8"] and flatten(args.formats) == ["tflite", "onnx"]
    t = train_parser().parse_args(["--step-boundaries", "0.3", "0.6,0.9"])
    assert flatten(t.step_boundaries) == [0.3, 0.6, 0.9]
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--step-boundaries", "half"])


def _run(args, env, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


@pytest.mark.slow  # starts a Python process that imports TensorFlow
def test_commands_hide_tensorflow_native_logs_unless_verbose():
    """--help answers before TensorFlow loads; a run that loads it (here one refused after
    start-up: an unknown model is found when the run is set up) shows TensorFlow's native
    start-up lines only with --verbose."""
    env = train_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    helped = _run([os.path.join(ROOT, "train.py"), "--help"], env)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: train.py")
    assert helped.stderr.strip() == "", helped.stderr[-2000:]
    quiet = _run([os.path.join(ROOT, "train.py"), "--model", "resnet9", "--epochs", "1"], env)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [
        line for line in quiet.stderr.strip().splitlines() if "model='resnet9'" in line], quiet.stderr[-2000:]
    loud = _run(["-m", "keras_resnet.train", "--model", "resnet9", "--epochs", "1", "--verbose"], env)
    assert loud.returncode == 2 and "model='resnet9'" in loud.stderr.strip().splitlines()[-1]
    assert len(loud.stderr.strip().splitlines()) > 1, "TensorFlow printed nothing at start-up with --verbose"


def test_a_foreign_keras_resnet_package_is_named_clearly(tmp_path):
    """The 2019 'keras-resnet' package installs the same import name; installed over this
    one it replaces keras_resnet/__init__.py. The commands say so instead of failing oddly."""
    shutil.copytree(os.path.join(ROOT, "keras_resnet"), tmp_path / "keras_resnet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "keras_resnet" / "__init__.py").write_text('__version__ = "0.2.0"\n')
    env = train_env(PYTHONPATH=str(tmp_path))
    r = _run(["-m", "keras_resnet.train", "--epochs", "1"], env, cwd=tmp_path)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    assert "is not keras-residual's" in err and "pip uninstall -y keras-resnet" in err, err
    assert "version 0.2.0" in err and str(tmp_path / "keras_resnet") in err


@pytest.mark.parametrize("main", ["keras_resnet.weights:main", "keras_resnet.data:make_tfrecords_main"])
def test_other_commands_help_has_no_default_none(main, capsys):
    import importlib

    module, name = main.split(":")
    with pytest.raises(SystemExit) as exit_:
        getattr(importlib.import_module(module), name)(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: ") and "(default: None)" not in text


def test_training_curves_have_whole_epoch_ticks():
    import matplotlib.pyplot as plt

    from keras_resnet.training import curves_figure

    history = [dict(epoch=e, loss=1.0 / e, accuracy=0.5 + e / 10, test_loss=1.2 / e,
                    test_accuracy=0.4 + e / 10) for e in (1, 2, 3)]
    fig = curves_figure(history)
    try:
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)


@pytest.mark.parametrize("args, message", [
    # ranges, checked when the flags are parsed: never clamped or replaced by a default
    (["--epochs", "0"], "argument --epochs: 0 is not accepted; expected an integer in [1, 100000]"),
    (["--iterations", "-5"], "argument --iterations: -5 is not accepted; expected an integer in [1, 1000000000]"),
    (["--steps-per-epoch", "0"], "argument --steps-per-epoch: 0 is not accepted"),
    (["--batch-size", "2.5"], "argument --batch-size: invalid value '2.5'; expected an integer in [1, 65536]"),
    (["--dataset", "synthetic", "--image-size", "0"], "argument --image-size: 0 is not accepted; expected an integer in [8, 4096]"),
    (["--dataset", "synthetic", "--num-classes", "1"], "argument --num-classes: 1 is not accepted; expected an integer in [2, 100000]"),
    (["--lr", "0"], "argument --lr: 0 is not accepted; expected a number in (0, 100]"),
    (["--lr", "inf"], "argument --lr: inf is not accepted"),
    (["--momentum", "1"], "argument --momentum: 1 is not accepted; expected a number in [0, 1)"),
    (["--weight-decay", "nan"], "argument --weight-decay: nan is not accepted; expected a number in [0, 1]"),
    (["--warmup-epochs", "-1"], "argument --warmup-epochs: -1 is not accepted"),
    (["--label-smoothing", "1"], "argument --label-smoothing: 1 is not accepted; expected a number in [0, 1)"),
    (["--val-split", "1"], "argument --val-split: 1 is not accepted; expected a number in [0, 1)"),
    (["--step-boundaries", "0.5,1.5"], "argument --step-boundaries: 1.5 is not accepted; expected a number in (0, 1)"),
    (["--seed", "-1"], "argument --seed: -1 is not accepted; expected an integer in [0, 4294967295]"),
    (["--cpu-replicas", "0"], "argument --cpu-replicas: 0 is not accepted"),
    (["--steps-per-execution", "0"], "argument --steps-per-execution: 0 is not accepted"),
    (["--checkpoint-steps", "0"], "argument --checkpoint-steps: 0 is not accepted"),
    # consistency: a flag the rest of the command would silently ignore or override
    (["--num-classes", "3"], "--num-classes does not apply to --dataset digits; it is used by --dataset tfrecord / synthetic"),
    (["--dataset", "cifar10", "--data-dir", "x"], "--data-dir does not apply to --dataset cifar10"),
    (["--image-size", "32"], "--image-size does not apply to --dataset digits"),
    (["--dataset", "folder", "--data-dir", "x", "--label-offset", "1"], "--label-offset does not apply to --dataset folder"),
    (["--on-corrupt", "skip"], "--on-corrupt does not apply to --dataset digits"),
    (["--epochs", "2", "--iterations", "100"], "--epochs and --iterations both set the length of training; give one of them"),
    (["--epochs", "2", "--warmup-epochs", "3"], "--warmup-epochs 3 is longer than --epochs 2"),
    (["--step-boundaries", "0.75", "0.5"], "--step-boundaries 0.75,0.5: expected increasing fractions"),
    (["--schedule", "cosine", "--step-boundaries", "0.5"], "--step-boundaries applies to --schedule step, not --schedule cosine"),
    (["--optimizer", "adamw", "--nesterov"], "--nesterov applies to --optimizer sgd or lars, not adamw"),
    (["--evaluate", "runs/x", "--epochs", "3"], "--epochs does not apply to --evaluate"),
])
def test_every_training_flag_is_checked_against_what_it_can_mean(args, message, capsys, tmp_path,
                                                                   monkeypatch):
    from keras_resnet.train import main

    monkeypatch.chdir(tmp_path)
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and message in err[-1], err
    assert os.listdir(tmp_path) == []  # refused before anything is written


def test_a_file_that_is_not_a_keras_archive_is_named_as_such(tmp_path, capsys):
    from keras_resnet.train import main

    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    for flag in ("--evaluate", "--init-from"):
        assert main([flag, str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"{bad} is not a valid .keras file" in err and "not found" not in err, err


@pytest.mark.parametrize("make, advice", [
    (lambda p: PermissionError(13, "Permission denied", str(p)), "permission denied"),
    (lambda p: OSError(30, "Read-only file system", str(p)), "the filesystem is read-only"),
    (lambda p: OSError(28, "No space left on device", str(p)), "no space left on the device"),
])
def test_os_errors_reaching_a_command_are_one_line_and_exit_2(make, advice, tmp_path, capsys):
    """The wrapper every command runs its work in (keras_resnet.cli_util.exit_on_os_error)."""
    from keras_resnet.cli_util import exit_on_os_error

    with pytest.raises(SystemExit) as exit_:
        with exit_on_os_error("prog"):
            raise make(tmp_path / "out")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"prog: error: cannot use {tmp_path / 'out'}: {advice}")


_ONEDNN_PROBE = """
import os, sys
role, sys.argv = sys.argv[1], [sys.argv[2]]
if role == "command":  # what every keras_resnet command's main() does after parsing
    from keras_resnet.cli_util import setup_process
    setup_process()
import keras_resnet  # noqa: F401  (a library import configures nothing)
from tensorflow.python.util import _pywrap_util_port
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.slow  # starts a Python process that imports TensorFlow
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="oneDNN is turned on on x86-64 only")
@pytest.mark.parametrize("role,prog,given,expected", [
    ("command", "keras-resnet-train", None, "1 True"),  # on any x86-64 CPU, AVX-512 or AVX2 only
    ("command", "keras-resnet-train", "0", "0 False"),  # the user's choice stands
    ("library", "my_app.py", None, "None"),  # another program keeps TensorFlow's own default
    ("library", "keras-resnet-train", None, "None"),  # whatever the process is called
])
def test_commands_run_tensorflow_on_onednn_kernels_unless_told_otherwise(role, prog, given, expected):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    r = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE, role, prog], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = r.stdout.strip().splitlines()[-1].split()
    # another program: oneDNN is whatever TensorFlow chooses for this CPU
    assert got[:len(expected.split())] == expected.split(), r.stdout


@pytest.mark.parametrize("command,args,message", [
    ("export", ["--latency-runs", "0"], "argument --latency-runs: 0 is not accepted; expected an integer >= 1"),
    ("export", ["--qat-epochs", "-1"], "argument --qat-epochs: -1 is not accepted; expected an integer >= 0"),
    ("export", ["--num-samples", "nan"], "argument --num-samples: invalid value 'nan'; expected an integer >= 1"),
    ("tfrecords", ["--images-per-shard", "0"], "argument --images-per-shard: 0 is not accepted; expected an integer >= 1"),
    ("experiment", ["--lr", "-1"], "argument --lr: -1 is not accepted; expected a number > 0"),
    ("experiment", ["--iterations", "0"], "argument --iterations: 0 is not accepted; expected an integer in [1, 1000000000]"),
])
def test_other_commands_check_their_numeric_flags_at_parse_time(command, args, message, capsys):
    from keras_resnet.data import make_tfrecords_main
    from keras_resnet.experiments import main as experiment_main
    from keras_resnet.export.cli import main as export_main

    run = {"export": lambda: export_main(["run_dir", "--out", "out", *args]),
           "tfrecords": lambda: make_tfrecords_main(["photos", "out", *args]),
           "experiment": lambda: experiment_main(["degradation", *args])}[command]
    with pytest.raises(SystemExit) as exit_:
        run()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
