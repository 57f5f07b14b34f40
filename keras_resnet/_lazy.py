"""Lazy package faces (PEP 562), as ``lazy_loader.attach`` gives SciPy and scikit-image.

A package lists which submodule defines each public name; the submodule is imported the
first time one of its names is used, so importing the package (or a light submodule of
it, such as a command's argument parser) does not import TensorFlow.
"""

import importlib
import sys


def attach(package, names, submodules=()):
    """``(__getattr__, __dir__)`` for ``package`` (its ``__name__``): ``names`` maps each
    public name to the submodule (relative, e.g. ``"models"`` or ``"..preprocessing"``)
    that defines it; ``submodules`` are imported on attribute access too."""
    submodules = set(submodules)

    def __getattr__(name):
        if name in names:
            module = importlib.import_module(names[name], package)
            value = getattr(module, name)
            # Kept on the package: a name that is also a submodule's (training.evaluate, the
            # function, and training/evaluate.py) stays the name, not the submodule the
            # import just bound there.
            setattr(sys.modules[package], name, value)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return value

    def __dir__():
        return sorted(set(names) | submodules)

    return __getattr__, __dir__


def table(**modules):
    """``{name: submodule}`` from ``submodule=("name", ...)`` keyword arguments, with
    ``.``-relative submodule names (``table(models=("ResNet",))`` -> ``{"ResNet": ".models"}``)."""
    return {name: f".{module}" for module, names in modules.items() for name in names}


class _AfterImport:
    """A ``sys.meta_path`` finder that runs ``callback()`` once, right after the first of
    ``names`` (top-level modules) has been imported, then removes itself. It finds nothing
    itself: it asks the finders after it for the module's spec and wraps only the spec's
    loader, whose ``exec_module`` runs the real one and then the callback (the module keeps
    its real loader as ``__loader__`` and ``__spec__.loader``). This is the post-import hook
    of ``wrapt.register_post_import_hook``, in the few lines this package needs."""

    def __init__(self, names, callback):
        self.names, self.callback = frozenset(names), callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names or self not in sys.meta_path:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenCall(spec.loader, self)
        return spec

    def fire(self):
        if self in sys.meta_path:
            sys.meta_path.remove(self)
            self.callback()


class _ThenCall:
    """A loader that runs ``loader`` and then ``hook.fire()``."""

    def __init__(self, loader, hook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        if getattr(module.__spec__, "loader", None) is self:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.hook.fire()


def after_import(names, callback):
    """Runs ``callback()`` once: now, when one of the top-level modules ``names`` is
    imported already, else right after the first of them is imported. Until then one
    finder waits at the head of ``sys.meta_path``; it imports nothing itself."""
    if any(name in sys.modules for name in names):
        callback()
    elif not any(isinstance(f, _AfterImport) and f.callback is callback for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(names, callback))
