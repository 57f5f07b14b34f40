"""The package's imports run one way: a walk of every ``import`` statement (at module level
and inside functions) and of the lazy package faces finds no cycle."""

import ast
import importlib
import importlib.util
import os

import keras_resnet

PACKAGE = os.path.dirname(keras_resnet.__file__)


def _modules():
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def _resolve(module, is_package, level, target):
    """The absolute name of a relative import in ``module``."""
    if level == 0:
        return target
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph():
    """``{module: {modules it imports}}`` among keras_resnet's modules."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                # "from . import x" / "from .pkg import mod": the submodule when it is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in modules and t != module}
        if is_package:  # the lazy face's table: name -> submodule, imported on first use
            table = getattr(importlib.import_module(module), "_NAMES", {})
            graph[module] |= {importlib.util.resolve_name(sub, module) for sub in table.values()}
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walk_sees_the_imports():
    graph = import_graph()
    assert "keras_resnet.layers" in graph["keras_resnet.models"]
    assert "keras_resnet.models" in graph["keras_resnet.registry"]
    assert "keras_resnet.models" in graph["keras_resnet"]  # through the lazy face
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_a_lazy_name_that_is_also_a_submodule_stays_the_name():
    """training.evaluate is the function, although training/evaluate.py is a submodule that
    its first use imports (and the import binds the submodule on the package)."""
    import inspect

    from keras_resnet import training

    first = training.evaluate
    import keras_resnet.training.evaluate  # noqa: F401

    assert inspect.isfunction(first) and training.evaluate is first
