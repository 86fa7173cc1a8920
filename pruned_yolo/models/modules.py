"""YOLOv5 building blocks with explicit widths.

Every module is constructed from explicit channel counts (no width multipliers, no
hidden-width ratios), so that a pruned network with irregular widths is just another
set of constructor arguments. Each module can:

* `from_yaml(c_in, args, n, ctx)` - expand one ultralytics YAML row into explicit args;
* `spec()` - report its explicit args, read from its actual tensors;
* `out_width(spec, c_in)` - the channel count it produces, for the graph walk.

Parameter names (`conv`, `bn`, `cv1`, `m.0`, ...) follow the official layout so that
official state dicts load without renaming.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_module

BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def make_divisible(x: float, divisor: int = 8) -> int:
    return int(math.ceil(x / divisor) * divisor)


def autopad(k: int, p: int | None = None) -> int:
    return k // 2 if p is None else p


class YoloModule(nn.Module):
    """Base class: explicit-args contract shared by all registered layers."""

    # set by the model builder: input layer index/indices, own index, registry name
    f: int | list[int] = -1
    i: int = 0
    type: str = ""

    @classmethod
    def from_yaml(cls, c_in: int | list[int], args: list, n: int, ctx: dict) -> dict[str, Any]:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def out_width(spec: dict[str, Any], c_in: int | list[int]) -> int:
        return int(spec["c2"])

    @staticmethod
    def in_width(spec: dict[str, Any]) -> int | list[int] | None:
        """Input width stated by the spec, checked against the graph (None: any)."""
        return int(spec["c1"])


def _single_repeat(name: str, n: int) -> None:
    if n != 1:
        raise ConfigError(f"{name}: repeats (number) must be 1, got {n}")


def _fill(args: list, defaults: list) -> list:
    """YAML args completed with defaults: `_fill([64, 3], [None, 1, 1])` -> `[64, 3, 1]`."""
    if not args:
        raise ConfigError("missing module arguments (at least the output channels)")
    return list(args[: len(defaults)]) + list(defaults[len(args) :])


def _scaled(c2: int, ctx: dict) -> int:
    return make_divisible(c2 * ctx["width_multiple"], 8)


@register_module()
class Conv(YoloModule):
    """Conv2d(bias=False) + BatchNorm2d + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (inference only; the result is not prunable)."""
        if isinstance(self.bn, nn.Identity):
            return
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True
        ).to(conv.weight.device)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()

    def spec(self) -> dict[str, Any]:
        c = self.conv
        return {
            "c1": c.in_channels,
            "c2": c.out_channels,
            "k": c.kernel_size[0],
            "s": c.stride[0],
            "p": c.padding[0],
            "act": isinstance(self.act, nn.SiLU),
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        c2, k, s, p = _fill(args, [None, 1, 1, None])
        return {"c1": c_in, "c2": _scaled(c2, ctx), "k": k, "s": s, "p": autopad(k, p), "act": True}


@register_module()
class Focus(YoloModule):
    """Space-to-depth (2x2 pixels -> 4x channels) followed by a Conv (YOLOv5 <= v5.0 stem)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))

    def spec(self) -> dict[str, Any]:
        s = self.conv.spec()
        return {"c1": s["c1"] // 4, "c2": s["c2"], "k": s["k"], "s": s["s"], "p": s["p"]}

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        c2, k, s, p = _fill(args, [None, 1, 1, None])
        return {"c1": c_in, "c2": _scaled(c2, ctx), "k": k, "s": s, "p": autopad(k, p)}


@register_module()
class Bottleneck(YoloModule):
    """1x1 conv to `c_hidden`, 3x3 conv to `c2`, residual add when `shortcut` (needs c1 == c2)."""

    def __init__(self, c1: int, c_hidden: int, c2: int, shortcut: bool = True):
        super().__init__()
        if shortcut and c1 != c2:
            raise ConfigError(f"Bottleneck with shortcut needs c1 == c2, got {c1} and {c2}")
        self.cv1 = Conv(c1, c_hidden, 1, 1)
        self.cv2 = Conv(c_hidden, c2, 3, 1)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y

    def spec(self) -> dict[str, Any]:
        return {
            "c1": self.cv1.conv.in_channels,
            "c_hidden": self.cv1.conv.out_channels,
            "c2": self.cv2.conv.out_channels,
            "shortcut": self.add,
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        c2, shortcut, _g, e = _fill(args, [None, True, 1, 0.5])
        c2 = _scaled(c2, ctx)
        return {"c1": c_in, "c_hidden": int(c2 * e), "c2": c2, "shortcut": bool(shortcut and c_in == c2)}


def _bottleneck_chain(c_in: int, widths: list[list[int]], shortcut: bool) -> tuple[nn.Sequential, int]:
    """Build Bottlenecks from explicit [hidden, out] pairs; return them and the final width."""
    blocks = []
    for hidden, out in widths:
        blocks.append(Bottleneck(c_in, hidden, out, shortcut))
        c_in = out
    return nn.Sequential(*blocks), c_in


def _chain_widths(m: nn.Sequential) -> list[list[int]]:
    return [[b.cv1.conv.out_channels, b.cv2.conv.out_channels] for b in m]


def _csp_spec(c_in, args, n, ctx, inner: tuple[str, ...]) -> dict[str, Any]:
    """The explicit widths of a C3 / BottleneckCSP row `[c2, shortcut, g, e]`: every inner conv c2 * e."""
    c2, shortcut, _g, e = _fill(args, [None, True, 1, 0.5])
    c2 = _scaled(c2, ctx)
    c_ = int(c2 * e)
    return {
        "c1": c_in,
        "c2": c2,
        **dict.fromkeys(inner, c_),
        "bottlenecks": [[c_, c_] for _ in range(n)],
        "shortcut": bool(shortcut),
    }


@register_module()
class C3(YoloModule):
    """CSP block with 3 convs: cv3(cat(m(cv1(x)), cv2(x))).

    `bottlenecks` lists [hidden, out] per Bottleneck; it may be empty (all layers pruned).
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        c_cv1: int,
        c_cv2: int,
        bottlenecks: list[list[int]],
        shortcut: bool = True,
    ):
        super().__init__()
        self.cv1 = Conv(c1, c_cv1, 1, 1)
        self.cv2 = Conv(c1, c_cv2, 1, 1)
        self.m, c_last = _bottleneck_chain(c_cv1, bottlenecks, shortcut)
        self.cv3 = Conv(c_last + c_cv2, c2, 1, 1)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))

    def spec(self) -> dict[str, Any]:
        return {
            "c1": self.cv1.conv.in_channels,
            "c2": self.cv3.conv.out_channels,
            "c_cv1": self.cv1.conv.out_channels,
            "c_cv2": self.cv2.conv.out_channels,
            "bottlenecks": _chain_widths(self.m),
            "shortcut": self.shortcut,
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        return _csp_spec(c_in, args, n, ctx, inner=("c_cv1", "c_cv2"))


@register_module()
class BottleneckCSP(YoloModule):
    """CSP Bottleneck (YOLOv5 <= v3): cv4(act(bn(cat(cv3(m(cv1(x))), cv2(x)))))."""

    def __init__(
        self,
        c1: int,
        c2: int,
        c_cv1: int,
        c_cv2: int,
        c_cv3: int,
        bottlenecks: list[list[int]],
        shortcut: bool = True,
    ):
        super().__init__()
        self.cv1 = Conv(c1, c_cv1, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_cv2, 1, 1, bias=False)
        self.m, c_last = _bottleneck_chain(c_cv1, bottlenecks, shortcut)
        self.cv3 = nn.Conv2d(c_last, c_cv3, 1, 1, bias=False)
        self.cv4 = Conv(c_cv3 + c_cv2, c2, 1, 1)
        self.bn = nn.BatchNorm2d(c_cv3 + c_cv2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))

    def spec(self) -> dict[str, Any]:
        return {
            "c1": self.cv1.conv.in_channels,
            "c2": self.cv4.conv.out_channels,
            "c_cv1": self.cv1.conv.out_channels,
            "c_cv2": self.cv2.out_channels,
            "c_cv3": self.cv3.out_channels,
            "bottlenecks": _chain_widths(self.m),
            "shortcut": self.shortcut,
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        return _csp_spec(c_in, args, n, ctx, inner=("c_cv1", "c_cv2", "c_cv3"))


@register_module()
class SPP(YoloModule):
    """Spatial pyramid pooling with parallel max-pools (YOLOv3/v4/v5 <= v5.0)."""

    def __init__(self, c1: int, c_hidden: int, c2: int, k: list[int] = (5, 9, 13)):
        super().__init__()
        self.cv1 = Conv(c1, c_hidden, 1, 1)
        self.cv2 = Conv(c_hidden * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))

    def spec(self) -> dict[str, Any]:
        return {
            "c1": self.cv1.conv.in_channels,
            "c_hidden": self.cv1.conv.out_channels,
            "c2": self.cv2.conv.out_channels,
            "k": [m.kernel_size for m in self.m],
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        c2, k = _fill(args, [None, [5, 9, 13]])
        return {"c1": c_in, "c_hidden": c_in // 2, "c2": _scaled(c2, ctx), "k": [int(v) for v in k]}


@register_module()
class SPPF(YoloModule):
    """Fast SPP: three chained max-pools, equivalent to SPP(k=(5, 9, 13)) for k=5."""

    def __init__(self, c1: int, c_hidden: int, c2: int, k: int = 5):
        super().__init__()
        self.cv1 = Conv(c1, c_hidden, 1, 1)
        self.cv2 = Conv(c_hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))

    def spec(self) -> dict[str, Any]:
        return {
            "c1": self.cv1.conv.in_channels,
            "c_hidden": self.cv1.conv.out_channels,
            "c2": self.cv2.conv.out_channels,
            "k": self.m.kernel_size,
        }

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        c2, k = _fill(args, [None, 5])
        return {"c1": c_in, "c_hidden": c_in // 2, "c2": _scaled(c2, ctx), "k": int(k)}


@register_module()
class Concat(YoloModule):
    """Concatenate a list of tensors along `dim` (channels)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.dim)

    def spec(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        return {"dim": int(args[0]) if args else 1}

    @staticmethod
    def out_width(spec, c_in):
        return int(sum(c_in))

    @staticmethod
    def in_width(spec):
        return None


@register_module("nn.Upsample")
class Upsample(YoloModule):
    """Nearest (or other mode) upsampling by an integer factor."""

    def __init__(self, scale_factor: int = 2, mode: str = "nearest"):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=self.scale_factor, mode=self.mode)

    def spec(self) -> dict[str, Any]:
        return {"scale_factor": self.scale_factor, "mode": self.mode}

    @classmethod
    def from_yaml(cls, c_in, args, n, ctx):
        _single_repeat(cls.__name__, n)
        size, scale, mode = list(args[:3]) + [None, 2, "nearest"][len(args) :]
        if size is not None:
            raise ConfigError("Upsample with a fixed output size is not supported; use scale_factor")
        return {"scale_factor": int(scale), "mode": str(mode)}

    @staticmethod
    def out_width(spec, c_in):
        return int(c_in)

    @staticmethod
    def in_width(spec):
        return None
