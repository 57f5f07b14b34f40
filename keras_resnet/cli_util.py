"""What every keras_resnet command line shares: help text, list and number flags, the
process set-up (quiet TensorFlow, oneDNN) its ``main()`` does after parsing, one-line
errors. Nothing here imports TensorFlow at import time."""

import argparse
import contextlib
import math
import os
import platform
import sys

class HelpFormatter(argparse.HelpFormatter):
    """Help that shows a flag's default only when it has one worth showing (no
    "(default: None)" or "(default: False)"), and keeps line breaks in descriptions."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or action.default in (None, False, argparse.SUPPRESS)
                or action.option_strings == [] or isinstance(action.default, (list, tuple))
                or (action.nargs == 0 and action.default is True)):  # --no-X: "(default: True)" misleads
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def list_of(kind=str):
    """An argparse ``type`` for lists given with commas, spaces (``nargs="+"``) or both:
    ``--tflite fp32,int8``, ``--tflite fp32 int8``. Each argument becomes a list; join the
    lists with :func:`flatten`."""

    def parse(text):
        try:
            return [kind(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}; expected {kind.__name__} values separated by commas or spaces")

    parse.__name__ = f"list of {kind.__name__}"
    return parse


def number(kind=int, low=None, high=None, *, low_open=False, high_open=False):
    """An argparse ``type`` for a finite ``kind`` (int or float) in a range: ``low``/``high``
    are inclusive unless ``low_open``/``high_open``. A value out of range is refused at
    parse time with the range in the message, never clamped or replaced by a default."""
    noun = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        wanted = (f"{noun} in {'(' if low_open else '['}{low}, {high}"
                  f"{')' if high_open else ']'}")
    elif low is not None:
        wanted = f"{noun} {'>' if low_open else '>='} {low}"
    else:
        wanted = noun

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected {wanted}") from None
        if (not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low)))
                or (high is not None and (value > high or (high_open and value == high)))):
            raise argparse.ArgumentTypeError(f"{text} is not accepted; expected {wanted}")
        return value

    parse.__name__ = wanted
    return parse


def given_flags(parser, argv):
    """The ``dest`` of every option that ``argv`` names explicitly (``--flag``,
    ``--flag=value``, ``--no-flag``), whatever its value; positional values are skipped."""
    by_option = {o: a.dest for a in parser._actions for o in a.option_strings}
    given = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            dest = by_option.get(token.split("=", 1)[0])
            if dest is not None:
                given.add(dest)
    return given


def add_version(parser):
    """``--version``: print the command's name and keras_resnet's version, exit 0."""
    version = getattr(sys.modules[__name__.rpartition(".")[0]], "__version__", "?")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")


def flag_error(prog, message):
    """Print ``prog: error: message`` (one line) to stderr; returns exit status 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


@contextlib.contextmanager
def exit_on_os_error(prog):
    """Around a command's work: an operating-system error that reaches it (a full disk, a
    read-only filesystem, no permission, a file where a directory should be, ...) ends the
    command with one line naming the path and what to do, and exit status 2, instead of a
    traceback. Used by every keras_resnet command line::

        with exit_on_os_error(prog):
            ...
    """
    from .files import FileWriteError, describe_os_error

    try:
        yield
    except FileWriteError as e:
        raise SystemExit(flag_error(prog, e)) from None
    except OSError as e:
        path = e.filename if e.filename is not None else "a file"
        if e.filename2 is not None:
            path = f"{path} -> {e.filename2}"
        raise SystemExit(flag_error(prog, describe_os_error(e, path, "use"))) from None


def flatten(lists):
    """The items of ``nargs="+"`` :func:`list_of` arguments, in order (None stays None)."""
    if lists is None:
        return None
    return [item for part in lists for item in (part if isinstance(part, list) else [part])]


_quiet = {"native": False}


def quiet_tensorflow_logs(verbose=False):
    """Hide TensorFlow's and LiteRT's C++ log lines unless ``verbose`` (call before importing
    TensorFlow; a TF_CPP_MIN_LOG_LEVEL the user set is kept)."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _quiet["native"] = not verbose


@contextlib.contextmanager
def native_logs_quieted():
    """In a keras_resnet command without ``--verbose``: hide what native code writes to
    stderr inside the block (TensorFlow's start-up lines, which TF_CPP_MIN_LOG_LEVEL does not
    reach, and LiteRT's delegate notices). Python exceptions still propagate and print."""
    if not _quiet["native"]:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def use_onednn(environ=None):
    """In keras_resnet's commands on x86-64: TensorFlow's oneDNN kernels, unless the user
    chose (``TF_ENABLE_ONEDNN_OPTS`` set either way). TensorFlow turns them on by itself
    only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; elsewhere (AVX2-only CPUs such as
    many AMD EPYC) it runs its Eigen kernels, which train a ResNet about half as fast.
    Takes effect only before TensorFlow is imported."""
    environ = os.environ if environ is None else environ
    if platform.machine().lower() in ("x86_64", "amd64") and "tensorflow" not in sys.modules:
        environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def setup_process(verbose=False):
    """A keras_resnet command's process set-up, called by its ``main()`` after parsing the
    arguments and before TensorFlow is imported: oneDNN kernels on x86-64
    (:func:`use_onednn`), TensorFlow's C++ log lines hidden unless ``verbose``, and
    TensorFlow imported with its start-up lines hidden. A library import never does this."""
    use_onednn()
    quiet_tensorflow_logs(verbose)
    with native_logs_quieted():
        import keras  # noqa: F401  (imports TensorFlow; its start-up lines stay hidden)

        if keras.backend.backend() == "tensorflow":  # device start-up notices (cuInit, ...)
            import tensorflow as tf

            tf.config.list_physical_devices()


DISTRIBUTION = "keras-residual"


def check_distribution():
    """Exit with a clear error when the ``keras_resnet`` package Python imports is not this
    project's: the unrelated 2019 PyPI package "keras-resnet" uses the same import name and,
    installed after this one, replaces its ``__init__``."""
    keras_resnet = sys.modules[__name__.rpartition(".")[0]]  # the package this module is in
    if getattr(keras_resnet, "__distribution__", None) != DISTRIBUTION:
        where = os.path.dirname(getattr(keras_resnet, "__file__", None) or "?")
        raise SystemExit(
            f"error: the keras_resnet package imported from {where} is not {DISTRIBUTION}'s "
            f"(version {getattr(keras_resnet, '__version__', '?')}; the unrelated 'keras-resnet' "
            f"package uses the same import name); run: pip uninstall -y keras-resnet && "
            f"pip install --force-reinstall {DISTRIBUTION}")
