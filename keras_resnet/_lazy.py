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
