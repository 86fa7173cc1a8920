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
and uses the criterion that module registered under that name, or else the named function:
a plain Python function that takes (conv, bn). Anything else (a builtin such as `os:system`,
a class, a C function, a function of another signature) is refused before it is called.
"""

from __future__ import annotations

import importlib
import inspect
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
        if fn is None:
            raise ConfigError(f"importance '{name}': '{module}' has no function '{attr}'")
        if not inspect.isfunction(fn):  # builtins, C functions, classes, other callables
            what = type(fn).__name__
            raise ConfigError(f"importance '{name}': not a registered criterion nor a Python function (a {what})")
        try:
            inspect.signature(fn).bind(None, None)
        except TypeError:
            raise ConfigError(f"importance '{name}': {attr}{inspect.signature(fn)} does not take (conv, bn)") from None
        return fn
    raise ConfigError(f"unknown importance criterion '{name}' (known: {', '.join(available_importances())})")


@torch.no_grad()
def channel_scores(fn: ImportanceFn, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Call a criterion and check its result: float64, finite, one score per output channel."""
    try:
        scores = fn(conv, bn)
    except Exception as e:  # a plug-in criterion's bug: one line on the command line, chained for the API
        name = getattr(fn, "__qualname__", type(fn).__name__)
        first = (str(e).splitlines() or [""])[0]
        raise ConfigError(f"importance criterion {name} failed: {type(e).__name__}: {first}") from e
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
