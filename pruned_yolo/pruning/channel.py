"""Channel pruning plans: which channels of every group to keep.

A plan keeps, in group g of n channels, the `k_g` channels with the highest group
importance. The counts come from one global ranking:

1. rank every channel of every group by its group importance (lowest first);
2. a global ratio R marks the lowest `round(R * N)` channels (N = all group channels,
   each coupled channel counted once) as candidates: `k_g = n - candidates in g`;
3. floor: keep at least `max(2, ceil(per_layer_ratio * n))` channels per group;
4. `round_to`: round `k_g` to the nearest multiple of `round_to`, never below the floor
   (itself rounded up to a multiple) and never above `n`.

The counts are monotone in R, so budgets can bisect on the ranking (see budget.py).
Applying a plan slices the tensors with Torch-Pruning, group by group, on the same
indices for every member, and every consumer loses the matching input channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .groups import GroupSet, PruningError


@dataclass
class ChannelPlan:
    """Kept channel indices (sorted, in the group's own numbering) per group."""

    keep: list[torch.Tensor]

    @property
    def counts(self) -> list[int]:
        return [len(k) for k in self.keep]

    def pruned(self, gs: GroupSet) -> list[torch.Tensor]:
        out = []
        for g, k in zip(gs.groups, self.keep):
            mask = torch.ones(g.size, dtype=torch.bool)
            mask[k] = False
            out.append(torch.nonzero(mask).flatten())
        return out

    def unit_keep(self, gs: GroupSet) -> dict[str, torch.Tensor]:
        """{Conv unit name: kept output channels of that unit} for every group member."""
        out = {}
        for g, k in zip(gs.groups, self.keep):
            for m in g.members:
                out[m.unit.name] = m.channels[k].sort().values
        return out


# The floor that suits a budget, measured on HIT-UAV (benchmarks/results/hituav_notes.md, the best
# of floors 0.1 / 0.25 / 0.4 at each budget): at half the GFLOPs the global ranking plans best left
# free (the paper's 0.1; 0.4 cost 1.8 points); at 35% 0.25 scored 1.2 points over 0.1; at yolov5n's
# 26% the free plan thins trunks to 8 channels and 0.4 scored 3.9 points over 0.1.
# (fraction of the dense cost, floor) knots, linear between them and constant outside.
FLOOR_KNOTS = ((0.27, 0.4), (0.35, 0.25), (0.5, 0.1))
# A budget floor is lowered until the floors alone cost at most this share of the target (a
# small model or a deep cut would otherwise be unreachable; HIT-UAV's 26% plan used 0.82).
FLOOR_COST_SHARE = 0.85
FLOOR_STEP = 0.05
PAPER_FLOOR = 0.1  # the floor when no budget is known (a channel ratio, layers alone)


def floor_for_budget(fraction: float | None) -> float:
    """The default `per_layer_ratio` for a model pruned to `fraction` of its dense cost (None: PAPER_FLOOR).

    Before `Pruner.fit_floor` lowers it to what the model's budget leaves room for."""
    if fraction is None:
        return PAPER_FLOOR
    xs, ys = zip(*FLOOR_KNOTS)
    return round(float(np.interp(fraction, xs, ys)), 4)


def describe_floor_default() -> str:
    """FLOOR_KNOTS in words, for help texts."""
    (lo_f, lo_floor), (hi_f, hi_floor) = FLOOR_KNOTS[0], FLOOR_KNOTS[-1]
    return (
        f"from the budget: {hi_floor:g} at >= {hi_f:g} x the dense cost, rising to {lo_floor:g} at <= {lo_f:g} x, "
        f"lowered while the floors alone would cost over {FLOOR_COST_SHARE:g} x the target"
    )


def floor_count(n: int, per_layer_ratio: float, round_to: int = 1) -> int:
    """Fewest channels a group of `n` may keep: max(2, ceil(ratio * n)), rounded up to `round_to`, <= n."""
    floor = max(2, math.ceil(per_layer_ratio * n - 1e-9))
    floor = math.ceil(floor / round_to) * round_to
    return min(n, floor)


def round_count(k: int, n: int, floor: int, round_to: int = 1) -> int:
    """`k` rounded to the nearest multiple of `round_to` (halves up), clamped to [floor, n]; n stays n."""
    if k >= n:
        return int(n)
    if round_to > 1:
        k = int(math.floor(k / round_to + 0.5)) * round_to
    return int(min(n, max(floor, k)))


class ChannelRanking:
    """The global ranking of all group channels and the counts it gives for any prefix."""

    def __init__(self, scores: list[torch.Tensor], per_layer_ratio: float = 0.1, round_to: int = 1):
        if round_to < 1:
            raise PruningError(f"round_to must be >= 1, got {round_to}")
        if not 0 <= per_layer_ratio <= 1:
            raise PruningError(f"per_layer_ratio must be in [0, 1], got {per_layer_ratio}")
        self.scores = [s.to(torch.float64) for s in scores]
        self.sizes = np.array([len(s) for s in scores], dtype=np.int64)
        self.round_to = int(round_to)
        self.floors = np.array([floor_count(int(n), per_layer_ratio, round_to) for n in self.sizes], dtype=np.int64)
        flat = torch.cat(self.scores).numpy() if scores else np.zeros(0)
        owner = np.repeat(np.arange(len(scores)), self.sizes)
        # stable: equal scores are taken in group order, then channel order
        self.order_groups = owner[np.argsort(flat, kind="stable")]
        self.total = int(self.sizes.sum())

    def counts(self, n_candidates: int) -> np.ndarray:
        """Keep counts when the `n_candidates` lowest-ranked channels are pruning candidates."""
        n_candidates = int(min(max(n_candidates, 0), self.total))
        removed = np.bincount(self.order_groups[:n_candidates], minlength=len(self.sizes))
        raw = self.sizes - removed
        return np.array(
            [round_count(int(k), int(n), int(f), self.round_to) for k, n, f in zip(raw, self.sizes, self.floors)],
            dtype=np.int64,
        )

    def counts_for_ratio(self, ratio: float) -> np.ndarray:
        if not 0 <= ratio < 1:
            raise PruningError(f"channel ratio must be in [0, 1), got {ratio}")
        return self.counts(int(round(ratio * self.total)))

    def min_counts(self) -> np.ndarray:
        return self.floors.copy()

    def plan(self, counts: np.ndarray | list[int]) -> ChannelPlan:
        """Keep the `counts[g]` most important channels of every group."""
        keep = []
        for s, k in zip(self.scores, counts):
            k = int(k)
            # highest scores first; stable so ties keep the lower channel index
            order = torch.from_numpy(np.argsort(-s.numpy(), kind="stable"))
            keep.append(order[:k].sort().values)
        return ChannelPlan(keep)


def apply_channel_plan(gs: GroupSet, plan: ChannelPlan) -> None:
    """Slice the model of `gs` in place with Torch-Pruning, one group at a time."""
    import torch_pruning as tp

    for g, idxs in zip(gs.groups, plan.pruned(gs)):
        if len(idxs) == 0:
            continue
        if len(idxs) >= g.size:
            raise PruningError(f"{g.describe()}: a plan must keep at least one channel")
        tg = gs.dg.get_pruning_group(g.root, tp.prune_conv_out_channels, idxs.tolist())
        tg.prune(record_history=False)
