"""Channel importance criteria: small pure functions behind one registry.

A criterion maps one producing layer, a Conv2d and the BatchNorm2d that follows it, to
one non-negative score per output channel (a 1-D tensor of length `conv.out_channels`).
Higher means more important. Built-in criteria:

* `bn`        |gamma_c|                                   (network slimming)
* `bn-kernel` |gamma_c| * mean |W_c|                      (Pruned-YOLO's kernel reweighting "R")
* `l1`        sum |W_c|, the L1 norm of the conv kernel of channel c

Plug in your own with the decorator; the name then works everywhere a criterion is
accepted (`prune(..., importance="my-crit")`, `pruned-yolo prune --importance my-crit`):

    from pruned_yolo.pruning import register_importance

    @register_importance("bn-beta")
    def bn_beta(conv, bn):
        return bn.weight.abs() + 0.1 * bn.bias.abs()

On the command line, `--importance package.module:function` imports a module of yours
and uses the named function (or the criterion that module registered, by name).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError

ImportanceFn = Callable[[nn.Conv2d, nn.BatchNorm2d], torch.Tensor]

_IMPORTANCE: dict[str, ImportanceFn] = {}


def register_importance(name: str) -> Callable[[ImportanceFn], ImportanceFn]:
    """Decorator: register `fn(conv, bn) -> scores[out_channels]` under `name`."""
    if not isinstance(name, str) or not name:
        raise ConfigError("an importance criterion needs a non-empty name")

    def wrap(fn: ImportanceFn) -> ImportanceFn:
        _IMPORTANCE[name] = fn
        return fn

    return wrap


def available_importances() -> list[str]:
    return sorted(_IMPORTANCE)


def get_importance(name: str | ImportanceFn) -> ImportanceFn:
    """A registered criterion by name, a `module:function` reference, or a callable as is."""
    if callable(name):
        return name
    if name in _IMPORTANCE:
        return _IMPORTANCE[name]
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"importance '{name}': cannot import module '{module}' ({e})") from None
        if attr in _IMPORTANCE:  # the module registered it
            return _IMPORTANCE[attr]
        fn = getattr(mod, attr, None)
        if not callable(fn):
            raise ConfigError(f"importance '{name}': '{module}' has no function '{attr}'")
        return fn
    raise ConfigError(f"unknown importance criterion '{name}' (known: {', '.join(available_importances())})")


@torch.no_grad()
def channel_scores(fn: ImportanceFn, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Call a criterion and check its result: float64, finite, one score per output channel."""
    scores = fn(conv, bn)
    if not isinstance(scores, torch.Tensor) or scores.shape != (conv.out_channels,):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ConfigError(f"importance criterion returned {shape}, expected ({conv.out_channels},)")
    scores = scores.detach().to("cpu", torch.float64)
    if not torch.isfinite(scores).all():
        raise ConfigError("importance criterion returned non-finite scores")
    return scores


@register_importance("bn")
def bn_importance(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """|gamma|: the BatchNorm scale of each channel (network slimming)."""
    return bn.weight.detach().abs()


@register_importance("bn-kernel")
def bn_kernel_importance(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """|gamma_c| x mean |W_c| over the producing conv's kernel of channel c (Pruned-YOLO "R")."""
    return bn.weight.detach().abs() * conv.weight.detach().abs().mean(dim=(1, 2, 3))


@register_importance("l1")
def l1_importance(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """L1 norm of each output channel's conv kernel (sum over input channels and taps)."""
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))
