"""Exponential moving average of the model weights (validated and saved instead of the raw model).

`decay(updates) = decay * (1 - exp(-updates / tau))` ramps the average in over the first
few thousand optimizer steps, as in YOLOv5 (decay 0.9999, tau 2000). Floating-point
parameters and buffers are averaged; integer buffers (BN `num_batches_tracked`) are copied.

YOLOv5's setting is sized for COCO (thousands of steps per epoch). A short fine-tuning on a few
hundred images (32 steps per epoch, 512 in a run) ends with an effective decay of 0.23: the
"average" is the raw model. `run_sized_ema` sizes both to the run instead.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


def run_sized_ema(steps_per_epoch: int) -> tuple[float, float]:
    """(decay, tau) for an average over about three epochs of optimizer steps, ramped in over one.

    On COCO-sized epochs (1800 steps at batch 16, nbs 64) this is close to YOLOv5's 0.9999 / 2000."""
    steps = max(int(steps_per_epoch), 1)
    return min(0.9999, 1 - 1 / (3 * steps)), float(min(2000, steps))


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(unwrap(model)).eval()
        self.updates = int(updates)
        self.decay_max, self.tau = float(decay), float(tau)
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def decay(self, updates: int | None = None) -> float:
        u = self.updates if updates is None else updates
        return self.decay_max * (1 - math.exp(-u / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay()
        msd = unwrap(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach().to(v.dtype), alpha=1 - d)
            else:
                v.copy_(msd[k])

    def update_attr(self, model: nn.Module) -> None:
        """Copy the non-tensor attributes that checkpoints carry (class names, metadata)."""
        m = unwrap(model)
        for attr in ("names", "meta"):
            if hasattr(m, attr):
                setattr(self.ema, attr, copy.deepcopy(getattr(m, attr)))
