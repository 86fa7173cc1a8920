"""Helpers for tests and benchmarks: make a randomly initialised model prunable non-trivially.

A fresh model has every BatchNorm gamma = 1 and beta = 0, so `bn` importance ties
everywhere and masks are trivial; `randomize_bn` gives every channel distinct statistics.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0, beta_scale: float = 0.5) -> nn.Module:
    """Distinct random gamma (in [0.05, 1.05)), beta, running mean and var for every BN; in place."""
    g = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.weight.copy_(0.05 + torch.rand(n, generator=g))
        bn.bias.copy_(beta_scale * torch.randn(n, generator=g))
        bn.running_mean.copy_(0.2 * torch.randn(n, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model
