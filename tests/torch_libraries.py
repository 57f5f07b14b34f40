"""The real torchvision and timm, importable next to the CPU build of PyTorch.

The torchvision wheel on the package index is built against PyTorch's CUDA libraries;
next to the CPU build its C operators (nms, roi_align, ...) do not load, which torchvision
supports, except that its import then registers fake kernels for two of them without
checking (``RuntimeError: operator torchvision::nms does not exist``), and timm imports
torchvision. The two schemas are declared first in that case: the operators stay without
any implementation (calling them fails), and ResNets use none of them.
"""

import importlib.util
import sys

import pytest

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_declared = []


def _import():
    import timm
    import torchvision

    return torchvision, timm


def libraries():
    """``(torchvision, timm)``, or the test is skipped when either is not installed."""
    torch = pytest.importorskip("torch")
    for name in ("torchvision", "timm"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed")
    try:
        return _import()
    except RuntimeError as e:
        if "torchvision::" not in str(e) or _declared:
            raise
    for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        lib.define(schema)
    _declared.append(lib)  # kept alive: dropping it would remove the schemas
    return _import()
