"""Training hyperparameters ("hyps"): a dict, a YAML file or a shipped name, checked on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..utils.yamlio import load_yaml, resolve_yaml, shipped_dir

HYP_NAMES = ("scratch-low", "scratch-high", "finetune")
HYPS = shipped_dir("pruned_yolo.training", "hyps")
REQUIRED_HYP = (
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "box",
    "cls",
    "obj",
    "anchor_t",
)


def load_hyp(hyp: str | Path | dict | None) -> dict[str, Any]:
    """A hyp dict from a dict, a YAML file or a shipped name (scratch-low, scratch-high, finetune)."""
    if hyp is None:
        hyp = "scratch-low"
    if isinstance(hyp, dict):
        data = dict(hyp)
        source = "dict"
    else:
        path = resolve_yaml(hyp, HYPS, "hyp")
        data = load_yaml(path, what="hyp", expected="a mapping of name: value")
        source = str(path)
    missing = [k for k in REQUIRED_HYP if k not in data]
    if missing:
        raise ConfigError(f"hyp {source}: missing {', '.join(missing)}")
    for k, v in data.items():
        if k != "lr_schedule" and not isinstance(v, (int, float)):
            raise ConfigError(f"hyp {source}: '{k}' must be a number, got {v!r}")
    if data.get("lr_schedule", "linear") not in ("linear", "cos"):
        raise ConfigError(f"hyp {source}: lr_schedule must be 'linear' or 'cos'")
    return data


__all__ = ["HYP_NAMES", "REQUIRED_HYP", "load_hyp"]
