"""BatchNorm channel masks, shared by pruning and sparsity training.

A mask is `{BatchNorm module path: bool tensor}` with True = keep, e.g.
`{"model.4.cv1.bn": tensor([True, False, ...]), ...}`; BatchNorms not listed are kept.
Being keyed by name, a mask computed on one model applies to any copy of it.

* `compute_mask(model, threshold=thr)`: keep the channels with |gamma| > thr (per BN, as
  the soft mask of Pruned-YOLO's sparsity training); `compute_mask(model, keep=...)`:
  from kept indices per Conv or BN name (e.g. a pruning plan's `unit_keep`).
* `apply_soft_mask(model, mask, factor=0.1)`: multiply gamma, beta, running_mean and
  running_var of the masked channels by `factor` in place (the channels can grow back);
  `apply_hard_mask` uses factor 0: gamma = beta = 0 makes the BN output exactly 0, SiLU(0)
  = 0, so every consumer reads zeros and removing the channel changes nothing.
* `bn_mask_threshold(model, alpha=0.2)`: `alpha * mean(|gamma|)` over all BN layers;
  `gamma_stats`: the fraction under a threshold and the |gamma| quantiles (for logging
  the sparsity of a run).
"""

from __future__ import annotations

import torch
from torch import nn

Mask = dict[str, torch.Tensor]

DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def bn_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """Every BatchNorm2d of the model by module path (the channels that masks address)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def all_gammas(model: nn.Module) -> torch.Tensor:
    """|gamma| of every BN channel of the model, concatenated (float32, CPU)."""
    bns = bn_layers(model).values()
    if not bns:
        return torch.zeros(0)
    return torch.cat([bn.weight.detach().abs().float().cpu().flatten() for bn in bns])


def bn_mask_threshold(model: nn.Module, alpha: float = 0.2) -> float:
    """Pruned-YOLO's soft-mask threshold: `alpha * mean(|gamma|)` over all BN layers."""
    g = all_gammas(model)
    return float(alpha * g.mean()) if len(g) else 0.0


def gamma_stats(model: nn.Module, threshold: float | None = None, quantiles=DEFAULT_QUANTILES) -> dict:
    """{'channels', 'mean', 'threshold', 'fraction_below', 'quantiles': {q: value}} of |gamma|."""
    g = all_gammas(model)
    if threshold is None:
        threshold = bn_mask_threshold(model)
    if not len(g):
        return {"channels": 0, "mean": 0.0, "threshold": threshold, "fraction_below": 0.0, "quantiles": {}}
    qs = torch.quantile(g.double(), torch.tensor(list(quantiles), dtype=torch.float64))
    return {
        "channels": len(g),
        "mean": float(g.mean()),
        "threshold": float(threshold),
        "fraction_below": float((g <= threshold).float().mean()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(quantiles, qs)},
    }


def compute_mask(
    model: nn.Module,
    threshold: float | None = None,
    keep: dict[str, torch.Tensor | list[int]] | None = None,
) -> Mask:
    """A keep-mask per BN: |gamma| > `threshold`, or the channels listed in `keep`.

    `keep` maps a Conv path ("model.4.cv1") or its BN path ("model.4.cv1.bn") to the kept
    channel indices (or a bool tensor); BNs that are not listed keep every channel.
    Exactly one of `threshold` and `keep` must be given.
    """
    if (threshold is None) == (keep is None):
        raise ValueError("compute_mask needs exactly one of threshold and keep")
    bns = bn_layers(model)
    if threshold is not None:
        return {n: bn.weight.detach().abs().cpu() > threshold for n, bn in bns.items()}
    mask = {}
    for name, idx in keep.items():
        bn_name = name if name in bns else f"{name}.bn"
        if bn_name not in bns:
            raise KeyError(f"no BatchNorm named {name} or {bn_name}")
        idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            m = idx.clone().cpu()
        else:
            m = torch.zeros(bns[bn_name].num_features, dtype=torch.bool)
            m[idx.long()] = True
        mask[bn_name] = m
    return mask


@torch.no_grad()
def apply_soft_mask(model: nn.Module, mask: Mask, factor: float = 0.1, scale_stats: bool = True) -> int:
    """Scale gamma, beta, running_mean and running_var of masked-out channels by `factor`.

    In place; returns the number of channels masked. factor=0 is the hard mask.
    `scale_stats=False` leaves the running statistics alone, so that the channel's
    eval-mode output is exactly `factor` times what it was; scaling the mean and variance
    too (0 < factor < 1) scales it by sqrt(factor) instead and shifts it by
    sqrt(factor) (1 - factor) gamma mean / std (see `pruned_yolo.compress.sparsity`).
    """
    bns = bn_layers(model)
    n = 0
    for name, keep in mask.items():
        bn = bns[name]
        off = ~keep.to(bn.weight.device)
        if not off.any():
            continue
        stats = (bn.running_mean, bn.running_var) if scale_stats or factor == 0 else ()
        for t in (bn.weight, bn.bias, *stats):
            if t is not None:
                t[off] *= factor
        n += int(off.sum())
    return n


def apply_hard_mask(model: nn.Module, mask: Mask) -> int:
    """Zero gamma, beta, running_mean and running_var of masked-out channels (in place)."""
    return apply_soft_mask(model, mask, factor=0.0)


def mask_fraction(mask: Mask) -> float:
    """Fraction of BN channels that the mask switches off."""
    total = sum(len(m) for m in mask.values())
    return float(sum(int((~m).sum()) for m in mask.values()) / total) if total else 0.0
