"""Child Python processes isolated from the working directory.

Python normally puts the working directory (``python -c``, ``python -m``) and every empty
``PYTHONPATH`` entry first on the import path, so a ``statistics.py`` or ``sitecustomize.py``
lying in the folder a command is run from would run inside the child. Every child process
keras_resnet starts is built here instead:

* Python 3.11+: ``python -P`` (no working directory on the path) with an explicit
  ``PYTHONPATH``: the folder keras_resnet itself was imported from (so a clone that is not
  pip-installed still works), then the absolute entries of the caller's ``PYTHONPATH``;
  empty and relative entries (which name the working directory) are dropped.
* Python 3.10: ``python -I`` (no working directory, no ``PYTHON*`` variables, no user site)
  with the same folders put on ``sys.path`` by a bootstrap line.

The interpreter is ``sys.executable``, the virtual environment's (never its real path,
which is the base interpreter outside the environment).
"""

import os
import site
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _site_dirs():
    dirs = list(getattr(site, "getsitepackages", lambda: [])())
    try:
        dirs.append(site.getusersitepackages())
    except Exception:  # pragma: no cover - a site module without user sites
        pass
    return {os.path.normcase(os.path.abspath(d)) for d in dirs}


def import_path(env=None):
    """The folders a child needs on its import path, in order: keras_resnet's own parent
    folder (left out when it is a site-packages folder, which the child has anyway), then the
    absolute, existing-or-not entries of ``env['PYTHONPATH']``. Never an empty or relative entry."""
    env = os.environ if env is None else env
    entries = []
    if os.path.normcase(_PACKAGE_PARENT) not in _site_dirs():
        entries.append(_PACKAGE_PARENT)
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry and os.path.isabs(entry) and entry not in entries:
            entries.append(entry)
    return entries


def python_command(args, env=None, module=None, code=None, mode=None):
    """``(argv, env)`` for running ``python -m module ARGS`` or ``python -c code ARGS``
    isolated from the working directory (see the module docstring). ``env`` (default: this
    process's environment) is copied, not changed. ``mode`` ``"P"`` or ``"I"`` chooses the
    isolation (default: ``"P"`` where Python has it, 3.11+)."""
    if (module is None) == (code is None):
        raise ValueError("give exactly one of module= or code=")
    env = dict(os.environ if env is None else env)
    path = import_path(env)
    mode = mode or ("P" if sys.version_info >= (3, 11) else "I")
    if path:  # also what the child's own children inherit
        env["PYTHONPATH"] = os.pathsep.join(path)
    else:
        env.pop("PYTHONPATH", None)
    if mode == "P":
        head = ["-m", module] if module is not None else ["-c", code]
        return [sys.executable, "-P", *head, *args], env
    if mode != "I":
        raise ValueError(f"mode={mode!r} is not supported; expected 'P' or 'I'")
    boot = f"import sys; sys.path[:0] = {path!r}\n"
    if module is not None:
        code = f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-I", "-c", boot + code, *args], env
