"""A deterministic stand-in for the ONNX Runtime timer, for the latency planner's tests."""

from __future__ import annotations

import torch
from torch import nn

from pruned_yolo.pruning import Probe

SIZE = 128  # the image size the fake timer's whole-model probes use


@torch.no_grad()
def conv_cost(probe: Probe) -> tuple[float, int]:
    """(GFLOPs, number of convs) of a probe, by a forward with hooks."""
    flops, convs = [0], [0]

    def hook(mod, args, out):
        flops[0] += 2 * mod.weight.numel() * out.shape[2] * out.shape[3]
        convs[0] += 1

    hooks = [c.register_forward_hook(hook) for c in probe.module.modules() if isinstance(c, nn.Conv2d)]
    xs = [torch.zeros(s) for s in probe.shapes]
    probe.module(xs) if probe.as_list else probe.module(*xs)
    for h in hooks:
        h.remove()
    return flops[0] / 1e9, convs[0]


class FakeTimer:
    """Deterministic latency: `overhead + a * GFLOPs + b` per conv, and for whole models also
    `c * GFLOPs^2` (something no table of blocks timed alone can see)."""

    def __init__(self, a: float = 20.0, b: float = 0.004, overhead: float = 0.05, c: float = 0.0):
        self.a, self.b, self.overhead, self.c = a, b, overhead, c
        self.kinds: list[str] = []

    def ms(self, probe: Probe) -> float:
        g, n = conv_cost(probe)
        return self.overhead + self.a * g + self.b * n + (self.c * g * g if probe.kind == "model" else 0.0)

    def __call__(self, probes):
        self.kinds += [p.kind for p in probes]
        return [self.ms(p) for p in probes]

    def model_ms(self, model) -> float:
        return self.ms(Probe("m", model, [(1, 3, SIZE, SIZE)], "model"))
