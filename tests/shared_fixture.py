"""Build an expensive test fixture once per test session, across pytest-xdist workers.

``shared_once(tmp_path_factory, name, build)`` runs ``build(directory)`` in the first test
that needs it (any worker) under a file lock; the others wait and reuse the directory. If
the build fails, its cause is written beside the directory and every later caller, in any
worker, fails at once naming that cause instead of building again (pytest itself already
re-raises a session fixture's error within one worker without running it again).
"""

import contextlib
import fcntl
import os
import shutil
import traceback

import pytest


@contextlib.contextmanager
def file_lock(path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cause(error):
    lines = traceback.format_exception_only(type(error), error)
    return " ".join(" ".join(lines).split())[:2000]


def shared_once(tmp_path_factory, name, build):
    """The directory ``build`` filled, built at most once per session; see the module doc."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, shared by the workers
    root = base / name
    failed = base / (name + ".failed")
    with file_lock(str(root) + ".lock"):
        if failed.exists():
            pytest.fail(f"shared fixture {name!r} failed earlier in this session and is not "
                        f"rebuilt: {failed.read_text()}", pytrace=False)
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            try:
                build(root)
            except BaseException as e:  # record any failure, then let pytest report it
                failed.write_text(_cause(e))
                raise
            (root / "done").write_text("ok")
    return root
