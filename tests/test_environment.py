"""The processes the suite and the commands start run in the environment the user installed
into (a virtual environment's own interpreter, not the base Python its link points to)."""

import os
import subprocess
import sys

import faults


def test_child_processes_import_what_only_this_environment_has():
    import pytest  # installed by the test extra, into this environment only

    code = "import sys, pytest; print(sys.prefix); print(pytest.__file__)"
    proc = subprocess.run([faults.PYTHON, "-I", "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(__file__))
    assert proc.returncode == 0, proc.stderr[-2000:]
    prefix, pytest_file = proc.stdout.split()
    assert prefix == sys.prefix
    assert pytest_file == pytest.__file__


def test_the_base_interpreter_is_not_this_environment():
    """What the check above guards against, where it can be shown: in a virtual environment
    the real path of the interpreter is the base Python, whose prefix is not this one."""
    if sys.prefix == sys.base_prefix:
        import pytest

        pytest.skip("not running in a virtual environment")
    proc = subprocess.run([os.path.realpath(sys.executable), "-I", "-c",
                           "import sys; print(sys.prefix)"], capture_output=True, text=True)
    assert proc.stdout.strip() != sys.prefix
