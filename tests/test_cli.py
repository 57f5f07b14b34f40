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
    parser = build_parser(["savedmodel", "tflite", "onnx"])
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


def test_commands_hide_tensorflow_native_logs_unless_verbose():
    env = train_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")
    quiet = _run([os.path.join(ROOT, "train.py"), "--help"], env)
    assert quiet.returncode == 0 and quiet.stdout.startswith("usage: train.py")
    assert quiet.stderr.strip() == "", quiet.stderr[-2000:]
    loud = _run(["-m", "keras_resnet.train", "--help", "--verbose"], env)
    assert loud.returncode == 0 and "usage: python -m keras_resnet.train" in loud.stdout
    assert loud.stderr.strip(), "TensorFlow printed nothing at start-up with --verbose"


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

    from keras_resnet.training import _curves_figure

    history = [dict(epoch=e, loss=1.0 / e, accuracy=0.5 + e / 10, test_loss=1.2 / e,
                    test_accuracy=0.4 + e / 10) for e in (1, 2, 3)]
    fig = _curves_figure(history)
    try:
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)
