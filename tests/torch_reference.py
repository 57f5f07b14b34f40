"""Helpers for the PyTorch reference networks of the checkpoint tests."""

import numpy as np
import torch
from torch import nn


def randomized_eval(net, size):
    """``net`` with non-trivial BatchNorm: random gamma/beta, running statistics from a real
    batch of ``size``x``size`` inputs (so activations keep a sane scale) then perturbed, and
    a random classifier bias; returned in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.2)
            m.momentum = 1.0
        net.train()
        net(torch.rand(4, 3, size, size) * 2 - 1)
        for m in bns:
            m.running_mean.add_(torch.randn_like(m.running_mean) * 0.05)
            m.running_var.mul_(torch.rand_like(m.running_var) * 0.5 + 0.75)
            m.momentum = 0.1
        net.fc.bias.normal_(0, 0.5)
    return net.eval()


def torch_logits(net, x):
    """Logits of ``net`` for NHWC float images ``x``."""
    with torch.no_grad():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


def rel_error(got, want):
    """Max abs difference relative to the reference logits' scale."""
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))
