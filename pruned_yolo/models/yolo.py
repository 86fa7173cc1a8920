"""The detection model, built from an explicit architecture description.

An *architecture* ("arch") is a plain JSON-able dict that states every width and depth:

    {"format": "pruned-yolo-arch", "version": 1, "in_channels": 3,
     "layers": [{"from": -1, "type": "Conv", "args": {"c1": 3, "c2": 32, "k": 6, "s": 2, "p": 2, "act": true}},
                {"from": -1, "type": "C3", "args": {"c1": 64, "c2": 64, "c_cv1": 32, "c_cv2": 32,
                                                    "bottlenecks": [[32, 32]], "shortcut": true}},
                ...,
                {"from": [17, 20, 23], "type": "Detect", "args": {"nc": 80, "anchors": [...], ...}}]}

`from` is -1 (previous layer), a layer index, or a list of those. Any pruned model is
rebuilt from its arch alone; `YOLO.arch()` reads it back from the actual tensors, so the
description can never drift from the weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from . import modules as _modules  # noqa: F401  (registers the layer classes)
from .detect import Detect
from .registry import get_module

ARCH_FORMAT = "pruned-yolo-arch"
ARCH_VERSION = 1


def _sources(f: int | list[int], i: int) -> list[int]:
    """Absolute indices of the layers feeding layer `i` (-1 is the network input for i == 0)."""
    return [j if j >= 0 else i + j for j in ([f] if isinstance(f, int) else f)]


def layer_inputs(f: int | list[int], i: int, widths: list[int], in_channels: int) -> int | list[int]:
    """Channel count(s) flowing into layer `i` given the output widths of layers 0..i-1."""
    srcs = _sources(f, i)
    for j in srcs:
        if not -1 <= j < i:
            raise ConfigError(f"layer {i}: 'from' index {j} does not point to an earlier layer")
    ws = [in_channels if j == -1 else widths[j] for j in srcs]
    return ws[0] if isinstance(f, int) else ws


def check_arch(arch: dict) -> None:
    """Raise ConfigError unless `arch` is a well-formed, width-consistent architecture."""
    if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT:
        raise ConfigError(f"not a {ARCH_FORMAT} description")
    if arch.get("version") != ARCH_VERSION:
        raise ConfigError(f"unsupported architecture version {arch.get('version')} (expected {ARCH_VERSION})")
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("architecture has no layers")
    if layers[-1].get("type") != "Detect":
        raise ConfigError("the last layer of a detection architecture must be Detect")
    widths: list[int] = []
    for i, layer in enumerate(layers):
        try:
            f, name, args = layer["from"], layer["type"], layer["args"]
        except (KeyError, TypeError):
            raise ConfigError(f"layer {i}: needs 'from', 'type' and 'args'") from None
        cls = get_module(name)
        c_in = layer_inputs(f, i, widths, arch.get("in_channels", 3))
        expected = cls.in_width(args)
        if expected is not None and expected != c_in:
            raise ConfigError(f"layer {i} ({name}): states {expected} input channels but receives {c_in}")
        widths.append(cls.out_width(args, c_in))


class YOLO(nn.Module):
    """A YOLOv5-family detector.

    Attributes besides the layers: `names` (class names) and `meta` (free-form metadata:
    image size, training and pruning history), both saved in our checkpoint format.
    """

    def __init__(self, arch: dict):
        super().__init__()
        check_arch(arch)
        layers, self.save = [], set()
        for i, layer in enumerate(arch["layers"]):
            cls = get_module(layer["type"])
            try:
                m = cls(**copy.deepcopy(layer["args"]))
            except TypeError as e:
                raise ConfigError(f"layer {i} ({layer['type']}): bad arguments: {e}") from None
            m.f, m.i, m.type = layer["from"], i, layer["type"]
            raw = [m.f] if isinstance(m.f, int) else m.f
            self.save.update(j for j, r in zip(_sources(m.f, i), raw) if r != -1)
            layers.append(m)
        self.model = nn.Sequential(*layers)
        self.in_channels = int(arch.get("in_channels", 3))
        self.names: list[str] = [str(c) for c in range(self.detect.nc)]
        self.meta: dict[str, Any] = {}

    # -- structure ---------------------------------------------------------------------
    @property
    def detect(self) -> Detect:
        return self.model[-1]

    @property
    def nc(self) -> int:
        return self.detect.nc

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def arch(self) -> dict:
        """The explicit architecture, read from the current tensors."""
        return {
            "format": ARCH_FORMAT,
            "version": ARCH_VERSION,
            "in_channels": self.in_channels,
            "layers": [{"from": m.f, "type": m.type, "args": m.spec()} for m in self.model],
        }

    # -- running -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor):
        outputs: list[torch.Tensor | None] = []
        for m in self.model:
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x if m.i in self.save else None)
        return x

    def fuse(self) -> YOLO:
        """Fold BatchNorms into convs for inference (in place; returns self)."""
        for m in self.modules():
            if hasattr(m, "fuse") and m is not self:
                m.fuse()
        return self

    @property
    def is_fused(self) -> bool:
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())
