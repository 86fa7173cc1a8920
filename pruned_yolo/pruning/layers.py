"""Layer pruning: remove whole Bottlenecks from C3 blocks.

Only Bottlenecks with a shortcut are candidates: removing one leaves `x + 0 = x`, the
identity, so the C3 block stays well-formed (as in Pruned-YOLO). A Bottleneck is scored
by the mean importance of its last conv (`cv2`); the `k` lowest across all C3 blocks are
removed, and a C3 may end with no Bottleneck at all (then `cv3` reads `cv1` directly).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .groups import BottleneckRef, PruningError, bottlenecks
from .importance import ImportanceFn, channel_scores


@dataclass
class BottleneckScore:
    name: str
    layer: int
    index: int
    score: float


def bottleneck_scores(model: nn.Module, importance: ImportanceFn) -> list[BottleneckScore]:
    """Score of every removable (shortcut) Bottleneck: mean importance of its cv2."""
    out = []
    for ref in bottlenecks(model):
        if not ref.shortcut:
            continue
        cv2 = ref.module.cv2
        out.append(
            BottleneckScore(ref.name, ref.layer, ref.index, float(channel_scores(importance, cv2.conv, cv2.bn).mean()))
        )
    return out


def select_bottlenecks(model: nn.Module, k: int, importance: ImportanceFn) -> list[BottleneckScore]:
    """The `k` lowest-scoring shortcut Bottlenecks (ties: the later one in the network first)."""
    scores = bottleneck_scores(model, importance)
    if k < 0:
        raise PruningError(f"layers must be >= 0, got {k}")
    if k > len(scores):
        raise PruningError(f"cannot remove {k} Bottlenecks: the model has only {len(scores)} with a shortcut")
    ranked = sorted(scores, key=lambda s: (s.score, -s.layer, -s.index))
    return sorted(ranked[:k], key=lambda s: (s.layer, s.index))


def remove_bottlenecks(model: nn.Module, names: list[str] | set[str]) -> list[str]:
    """Remove the named Bottlenecks (`model.<layer>.m.<j>`) in place; return the names removed."""
    names = set(names)
    refs: list[BottleneckRef] = [r for r in bottlenecks(model) if r.name in names]
    missing = names - {r.name for r in refs}
    if missing:
        raise PruningError(f"no such Bottleneck(s): {', '.join(sorted(missing))}")
    for r in refs:
        if not r.shortcut:
            raise PruningError(f"{r.name} has no shortcut: removing it would not be an identity")
    by_layer: dict[int, set[int]] = {}
    for r in refs:
        by_layer.setdefault(r.layer, set()).add(r.index)
    for layer, drop in by_layer.items():
        c3 = model.model[layer]
        c3.m = nn.Sequential(*[b for j, b in enumerate(c3.m) if j not in drop])
    return sorted(names)
