"""Ultralytics-style model YAML -> explicit architecture.

The YAML rows `[from, number, module, args]` are expanded with the depth and width
multipliers into explicit per-layer arguments. Strings in args are resolved from a
fixed table (`nc`, `anchors`, `None`, `True`, `False`); nothing is ever evaluated.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..utils.yamlio import load_yaml, shipped_dir, shipped_names
from .registry import get_module
from .yolo import ARCH_FORMAT, ARCH_VERSION, _sources, layer_inputs

_LITERALS = {"None": None, "True": True, "False": False}


CONFIGS = shipped_dir("pruned_yolo.models", "configs")


def available_configs() -> list[str]:
    """Names of the model configs shipped with the package (e.g. 'yolov5s')."""
    return shipped_names(CONFIGS)


def load_model_cfg(cfg: str | Path | dict) -> dict:
    """Read a model YAML given as a dict, a file path or a shipped config name."""
    if isinstance(cfg, dict):
        return cfg
    return load_yaml(cfg, CONFIGS, "model config")


def _resolve(value, table: dict):
    if isinstance(value, str):
        if value in table:
            return table[value]
        if value in _LITERALS:
            return _LITERALS[value]
        return value
    if isinstance(value, list):
        return [_resolve(v, table) for v in value]
    return value


def _stride_of(name: str, args: dict, in_strides: list[float]) -> float:
    if name in ("Conv", "Focus"):
        return in_strides[0] * args["s"] * (2 if name == "Focus" else 1)
    if name == "Upsample":
        return in_strides[0] / args["scale_factor"]
    return in_strides[0]


def arch_from_cfg(cfg: str | Path | dict, nc: int | None = None) -> dict:
    """Expand a model YAML (name, path or dict) into an explicit architecture dict."""
    cfg = load_model_cfg(cfg)
    try:
        rows = list(cfg["backbone"]) + list(cfg["head"])
        gd, gw = float(cfg.get("depth_multiple", 1.0)), float(cfg.get("width_multiple", 1.0))
        nc = int(nc if nc is not None else cfg["nc"])
        anchors = cfg["anchors"]
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"model YAML needs nc, anchors, backbone and head ({e})") from None
    in_channels = int(cfg.get("ch", 3))
    table = {"nc": nc, "anchors": anchors}
    layers, widths, strides = [], [], []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 4:
            raise ConfigError(f"layer {i}: rows must be [from, number, module, args], got {row!r}")
        f, n, name, args = row
        cls = get_module(str(name))
        name = cls.__name__
        n = max(round(n * gd), 1) if n > 1 else int(n)
        c_in = layer_inputs(f, i, widths, in_channels)
        in_strides = [1.0 if j == -1 else strides[j] for j in _sources(f, i)]
        ctx = {"width_multiple": gw, "in_strides": in_strides}
        try:
            spec = cls.from_yaml(c_in, _resolve(list(args), table), n, ctx)
        except (TypeError, ValueError, IndexError) as e:
            raise ConfigError(f"layer {i} ({name}): bad arguments {args!r} ({e})") from None
        layers.append({"from": f, "type": name, "args": spec})
        widths.append(cls.out_width(spec, c_in))
        strides.append(_stride_of(name, spec, in_strides))
    return {"format": ARCH_FORMAT, "version": ARCH_VERSION, "in_channels": in_channels, "layers": layers}
