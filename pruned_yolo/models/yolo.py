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
import math
import reprlib
from collections.abc import Callable
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


# Limits of a valid architecture: generous for every real YOLOv5 (widths <= 1280, kernels <= 13,
# strides <= 64), tight enough that a corrupt description cannot ask for absurd sizes.
MAX_LAYERS = 1024
MAX_WIDTH = 1 << 16
MAX_KERNEL = 64
MAX_STRIDE = 64
MAX_DEPTH = 1024  # Bottlenecks in one block
MAX_CLASSES = 1 << 16
MAX_LEVELS = 16
MAX_DETECT_STRIDE = 4096.0
UPSAMPLE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
MULTI_INPUT = ("Concat", "Detect")  # layer types whose `from` is a list; every other type takes one input

_Check = Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_in(lo: int, hi: int) -> tuple[_Check, str]:
    return (lambda v: _is_int(v) and lo <= v <= hi), f"an integer in [{lo}, {hi}]"


def _list_of(check: _Check, lo: int, hi: int) -> _Check:
    return lambda v: isinstance(v, list) and lo <= len(v) <= hi and all(check(x) for x in v)


def _positive(hi: float) -> _Check:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= hi


def _anchor_rows(v: Any) -> bool:
    row = _list_of(_positive(1e5), 2, 64)
    return _list_of(row, 1, MAX_LEVELS)(v) and all(len(r) == len(v[0]) and len(r) % 2 == 0 for r in v)


_WIDTH = _int_in(1, MAX_WIDTH)
_KERNEL = _int_in(1, MAX_KERNEL)
_STRIDE = _int_in(1, MAX_STRIDE)
_BOOL = (lambda v: isinstance(v, bool)), "true or false"
_PADDING = (lambda v: v is None or _int_in(0, MAX_KERNEL)[0](v)), f"null or an integer in [0, {MAX_KERNEL}]"
_PAIRS = _list_of(_list_of(_WIDTH[0], 2, 2), 0, MAX_DEPTH), f"a list of at most {MAX_DEPTH} [hidden, out] widths"
_KERNELS = _list_of(_KERNEL[0], 1, MAX_LEVELS), f"a list of 1 to {MAX_LEVELS} kernel sizes in [1, {MAX_KERNEL}]"
_WIDTHS = _list_of(_WIDTH[0], 1, MAX_LEVELS), f"a list of 1 to {MAX_LEVELS} widths in [1, {MAX_WIDTH}]"
_ANCHORS = _anchor_rows, f"1 to {MAX_LEVELS} rows of the same even number of positive sizes (w, h pairs)"
_STRIDES = (
    _list_of(_positive(MAX_DETECT_STRIDE), 1, MAX_LEVELS),
    f"a list of 1 to {MAX_LEVELS} positive strides up to {MAX_DETECT_STRIDE:g}",
)
_MODE = (lambda v: isinstance(v, str) and v in UPSAMPLE_MODES), f"one of {', '.join(UPSAMPLE_MODES)}"
_CONCAT_DIM = (lambda v: _is_int(v) and v == 1), "1 (Concat joins channels)"

# per layer type: argument -> ((check, description), required)
_IO = {"c1": (_WIDTH, True), "c2": (_WIDTH, True)}
ARG_RULES: dict[str, dict[str, tuple[tuple[_Check, str], bool]]] = {
    "Conv": {**_IO, "k": (_KERNEL, False), "s": (_STRIDE, False), "p": (_PADDING, False), "act": (_BOOL, False)},
    "Focus": {**_IO, "k": (_KERNEL, False), "s": (_STRIDE, False), "p": (_PADDING, False)},
    "Bottleneck": {**_IO, "c_hidden": (_WIDTH, True), "shortcut": (_BOOL, False)},
    "C3": {
        **_IO,
        "c_cv1": (_WIDTH, True),
        "c_cv2": (_WIDTH, True),
        "bottlenecks": (_PAIRS, True),
        "shortcut": (_BOOL, False),
    },
    "BottleneckCSP": {
        **_IO,
        "c_cv1": (_WIDTH, True),
        "c_cv2": (_WIDTH, True),
        "c_cv3": (_WIDTH, True),
        "bottlenecks": (_PAIRS, True),
        "shortcut": (_BOOL, False),
    },
    "SPP": {**_IO, "c_hidden": (_WIDTH, True), "k": (_KERNELS, False)},
    "SPPF": {**_IO, "c_hidden": (_WIDTH, True), "k": (_KERNEL, False)},
    "Concat": {"dim": (_CONCAT_DIM, False)},
    "Upsample": {"scale_factor": (_STRIDE, False), "mode": (_MODE, False)},
    "Detect": {
        "nc": (_int_in(1, MAX_CLASSES), True),
        "anchors": (_ANCHORS, True),
        "ch": (_WIDTHS, True),
        "strides": (_STRIDES, True),
    },
}


def _check_from(f: Any, i: int, name: str) -> None:
    index = _int_in(-MAX_LAYERS, MAX_LAYERS)[0]
    if name in MULTI_INPUT:
        if not _list_of(index, 1, MAX_LEVELS)(f):
            raise ConfigError(f"layer {i} ({name}): 'from' must be a list of 1 to {MAX_LEVELS} layer indices")
    elif not index(f):
        raise ConfigError(f"layer {i} ({name}): 'from' must be one layer index (-1: the previous layer)")


def _check_args(args: dict, i: int, name: str) -> None:
    rules = ARG_RULES.get(name)
    if rules is None:  # a layer type registered elsewhere: its constructor checks its arguments
        return
    for key in args:
        if key not in rules:
            raise ConfigError(f"layer {i} ({name}): unexpected argument {reprlib.repr(key)}")
    for key, ((check, description), required) in rules.items():
        if key not in args:
            if required:
                raise ConfigError(f"layer {i} ({name}): missing argument '{key}'")
        elif not check(args[key]):
            raise ConfigError(f"layer {i} ({name}): '{key}' must be {description}, got {reprlib.repr(args[key])}")
    if name == "Detect" and not len(args["anchors"]) == len(args["ch"]) == len(args["strides"]):
        raise ConfigError(f"layer {i} (Detect): 'anchors', 'ch' and 'strides' need one entry per input level")


def check_arch(arch: dict) -> None:
    """Raise ConfigError unless `arch` is a well-formed, width-consistent architecture.

    Checks types and ranges of every argument (see `ARG_RULES`), required and unknown keys,
    the layer graph (`from` points to earlier layers) and that every layer's stated input
    width is what the graph delivers, so that building the model cannot fail half-way.
    """
    if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT:
        raise ConfigError(f"not a {ARCH_FORMAT} description")
    if arch.get("version") != ARCH_VERSION:
        raise ConfigError(
            f"unsupported architecture version {reprlib.repr(arch.get('version'))} (expected {ARCH_VERSION})"
        )
    in_channels = arch.get("in_channels", 3)
    if not _WIDTH[0](in_channels):
        raise ConfigError(f"'in_channels' must be {_WIDTH[1]}, got {reprlib.repr(in_channels)}")
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("architecture has no layers")
    if len(layers) > MAX_LAYERS:
        raise ConfigError(f"architecture has {len(layers)} layers (at most {MAX_LAYERS})")
    widths: list[int] = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not {"from", "type", "args"} <= set(layer):
            raise ConfigError(f"layer {i}: needs 'from', 'type' and 'args'")
        f, name, args = layer["from"], layer["type"], layer["args"]
        if not isinstance(name, str):
            raise ConfigError(f"layer {i}: 'type' must be a module name, got {reprlib.repr(name)}")
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ConfigError(f"layer {i} ({name}): 'args' must be a mapping of argument names to values")
        cls = get_module(name)
        name = cls.__name__
        _check_from(f, i, name)
        _check_args(args, i, name)
        c_in = layer_inputs(f, i, widths, in_channels)
        expected = cls.in_width(args)
        if expected is not None and expected != c_in:
            raise ConfigError(f"layer {i} ({name}): states {expected} input channels but receives {c_in}")
        widths.append(cls.out_width(args, c_in))
        if name == "Detect" and i != len(layers) - 1:
            raise ConfigError(f"layer {i}: Detect must be the last layer")
    if layers[-1]["type"] != "Detect":
        raise ConfigError("the last layer of a detection architecture must be Detect")


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
            except (TypeError, ValueError, RuntimeError) as e:
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
