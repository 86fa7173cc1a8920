"""Detect head: one 1x1 conv per pyramid level and the YOLOv5 box decoding."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .modules import YoloModule
from .registry import register_module


@register_module()
class Detect(YoloModule):
    """Per level, predicts `na` anchors x (x, y, w, h, obj, nc classes).

    Training mode returns the raw maps, shaped (bs, na, ny, nx, no). Eval mode returns
    (decoded boxes (bs, N, no) in input pixels, raw maps); `export=True` returns only
    the decoded boxes, which is what ONNX export and the benchmarks run.
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int], strides: list[float]):
        super().__init__()
        if len(anchors) != len(ch) or len(strides) != len(ch):
            raise ConfigError(
                f"Detect: {len(ch)} input levels but {len(anchors)} anchor rows and {len(strides)} strides"
            )
        if any(len(a) != len(anchors[0]) or len(a) % 2 for a in anchors):
            raise ConfigError("Detect: every anchor row needs the same even number of values (w, h pairs)")
        self.nc = int(nc)
        self.no = self.nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        # in pixels; not persistent: the architecture description holds them
        self.register_buffer(
            "anchor_px", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2), persistent=False
        )
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.export = False

    def forward(self, xs: list[torch.Tensor]):
        raw = []
        for conv, x in zip(self.m, xs):
            x = conv(x)
            bs, _, ny, nx = x.shape
            raw.append(x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return raw
        decoded = torch.cat([self.decode(p, i) for i, p in enumerate(raw)], 1)
        return decoded if self.export else (decoded, raw)

    def decode(self, p: torch.Tensor, level: int) -> torch.Tensor:
        """Raw map (bs, na, ny, nx, no) -> (bs, na*ny*nx, no) with xywh in input pixels."""
        bs, na, ny, nx, no = p.shape
        y = p.sigmoid()
        gy, gx = torch.meshgrid(
            torch.arange(ny, device=p.device, dtype=p.dtype),
            torch.arange(nx, device=p.device, dtype=p.dtype),
            indexing="ij",
        )
        grid = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2)
        xy = (y[..., :2] * 2 - 0.5 + grid) * self.stride[level]
        wh = (y[..., 2:4] * 2) ** 2 * self.anchor_px[level].view(1, na, 1, 1, 2).to(p.dtype)
        return torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, no)

    @torch.no_grad()
    def initialize_biases(self, class_freq: torch.Tensor | None = None) -> None:
        """Prior-based bias init: ~8 objects per 640 image, uniform classes (or `class_freq`)."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.view(self.na, -1)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            if class_freq is None:
                b[:, 5:] += math.log(0.6 / (self.nc - 0.99)) if self.nc > 1 else 0.0
            else:
                b[:, 5:] += torch.log(class_freq / class_freq.sum())
            conv.bias.copy_(b.view(-1))

    def spec(self) -> dict[str, Any]:
        return {
            "nc": self.nc,
            "anchors": [[float(v) for v in row.flatten()] for row in self.anchor_px],
            "ch": [conv.in_channels for conv in self.m],
            "strides": [float(s) for s in self.stride],
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        nc, anchors = (list(args) + [None, None])[:2]
        if not isinstance(anchors, list) or not all(isinstance(a, list) for a in anchors):
            raise ConfigError("Detect: anchors must be a list of [w, h, w, h, ...] rows (auto-anchors unsupported)")
        return {
            "nc": int(nc),
            "anchors": [[float(v) for v in row] for row in anchors],
            "ch": list(c_in),
            "strides": [float(s) for s in ctx["in_strides"]],
        }

    @staticmethod
    def out_width(spec, c_in):
        return 0

    @staticmethod
    def in_width(spec):
        return [int(c) for c in spec["ch"]]
