"""Optimizer, learning-rate schedule and warm-up (the YOLOv5 recipe).

Parameter groups (their order is fixed; `results.csv` logs `lr0`, `lr1`, `lr2`):

0. conv / linear weights (every weight with more than one dimension): weight decay;
1. BatchNorm weights (gamma): no decay;
2. biases (BatchNorm beta and the Detect conv biases): no decay.

Warm-up over the first `nw` iterations: lr of groups 0 and 1 ramps from 0, lr of the bias
group from `warmup_bias_lr` down, all to `lr0 * lf(epoch)`; momentum ramps from
`warmup_momentum` to `momentum`; gradient accumulation ramps from 1 to `nbs / batch`.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn, optim

GROUP_NAMES = ("weights", "bn", "biases")


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """(decayed weights, BatchNorm weights, biases) of `model`, each parameter exactly once."""
    decay, bn, bias = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if name == "bias":
                bias.append(p)
            elif isinstance(module, nn.modules.batchnorm._NormBase) or p.ndim <= 1:
                bn.append(p)
            else:
                decay.append(p)
    return decay, bn, bias


def build_optimizer(
    model: nn.Module,
    lr0: float,
    momentum: float,
    weight_decay: float,
    name: str = "SGD",
    bn_lr_mult: float = 1.0,
) -> optim.Optimizer:
    """SGD with Nesterov momentum (or Adam/AdamW) over the three parameter groups.

    `bn_lr_mult` scales the lr of the BatchNorm weights only: short sparsity-training runs use
    it to move the gammas (the L1 target) faster than the rest of a pretrained network.
    """
    decay, bn, bias = param_groups(model)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": GROUP_NAMES[0]},
        {"params": bn, "weight_decay": 0.0, "name": GROUP_NAMES[1], "lr": lr0 * bn_lr_mult},
        {"params": bias, "weight_decay": 0.0, "name": GROUP_NAMES[2]},
    ]
    if name == "SGD":
        return optim.SGD(groups, lr=lr0, momentum=momentum, nesterov=True)
    if name == "Adam":
        return optim.Adam(groups, lr=lr0, betas=(momentum, 0.999))
    if name == "AdamW":
        return optim.AdamW(groups, lr=lr0, betas=(momentum, 0.999))
    raise ValueError(f"unknown optimizer {name}")


class LrLambda:
    """Multiplier of lr0 at an epoch: cosine or linear from 1 to `lrf` over `epochs`.

    A small class rather than a lambda so that the schedule's state is plain data.
    """

    def __init__(self, kind: str, lrf: float, epochs: int):
        if kind not in ("cos", "linear"):
            raise ValueError(f"unknown lr schedule {kind}")
        self.kind, self.lrf, self.epochs = kind, float(lrf), int(epochs)

    def __call__(self, epoch: int) -> float:
        if self.kind == "cos":
            return ((1 - math.cos(epoch * math.pi / self.epochs)) / 2) * (self.lrf - 1) + 1
        return (1 - epoch / self.epochs) * (1.0 - self.lrf) + self.lrf


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int, total_iterations: int) -> int:
    """YOLOv5's max(warmup_epochs * nb, 100) iterations, capped at half the run (short runs)."""
    if warmup_epochs <= 0:
        return 0
    return int(min(max(round(warmup_epochs * batches_per_epoch), 100), total_iterations // 2))


def warmup_step(
    optimizer: optim.Optimizer, ni: int, nw: int, epoch_lr: float, hyp: dict, nominal_batch: int, batch: int
) -> int:
    """Set lr/momentum of every group for iteration `ni` < `nw`; returns the accumulation."""
    xi = [0, nw]
    accumulate = max(1, int(np.interp(ni, xi, [1, nominal_batch / batch]).round()))
    for j, group in enumerate(optimizer.param_groups):
        start = float(hyp.get("warmup_bias_lr", 0.1)) if j == 2 else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * epoch_lr]))
        if "momentum" in group:
            group["momentum"] = float(
                np.interp(ni, xi, [float(hyp.get("warmup_momentum", 0.8)), float(hyp["momentum"])])
            )
    return accumulate
