"""Budgets: find the plan that meets a GFLOPs or parameter target, within 2% under it.

The search never builds a model. Candidate plans come from the global channel ranking
(channel.py): pruning the `p` lowest-ranked channels gives keep counts whose cost
(cost.py, analytic) is non-increasing in `p`. Bisection on `p` finds the cheapest
prefix that still fits under the target; since one group can only move by `round_to`
channels at a time, the result can sit a step below the 2% window. A greedy pass then
gives channels back, `round_to` at a time, to the group whose next channels are the most
important among the moves that stay under the target, until the cost is inside the window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .channel import ChannelRanking
from .groups import PruningError

METRICS = ("gflops", "params")


def search_counts(
    ranking: ChannelRanking,
    cost: Callable[[np.ndarray], float],
    target: float,
    tolerance: float = 0.02,
    label: str = "GFLOPs",
) -> tuple[np.ndarray, int]:
    """Keep counts with `(1 - tolerance) * target <= cost <= target`, and the prefix length used.

    Raises PruningError when the target is not below the unpruned cost, below the
    minimum the floors allow, or cannot be approached within the tolerance.
    """
    dense = cost(ranking.counts(0))
    if target >= dense:
        raise PruningError(
            f"target {_fmt(target, label)} is not below the model's {_fmt(dense, label)}: nothing to prune"
        )
    floor = cost(ranking.min_counts())
    if floor > target:
        raise PruningError(
            f"target {_fmt(target, label)} is below the minimum reachable {_fmt(floor, label)} "
            f"(every group at its floor; lower --per-layer-ratio or --round-to, or remove layers)"
        )
    lo, hi = 0, ranking.total  # cost(lo) > target >= cost(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(ranking.counts(mid)) <= target:
            hi = mid
        else:
            lo = mid
    counts = ranking.counts(hi)
    counts = _fill_up(ranking, counts, cost, target, tolerance)
    value = cost(counts)
    if value < (1 - tolerance) * target:
        raise PruningError(
            f"could not meet target {_fmt(target, label)} within {tolerance:.0%}: closest plan gives "
            f"{_fmt(value, label)} (try a smaller --round-to)"
        )
    return counts, hi


def _fill_up(ranking: ChannelRanking, counts: np.ndarray, cost, target: float, tolerance: float) -> np.ndarray:
    """Give channels back (round_to at a time, most important first) while staying <= target."""
    counts = counts.copy()
    step = ranking.round_to
    order = [np.sort(s.numpy())[::-1] for s in ranking.scores]  # descending scores per group
    value = cost(counts)
    while value < (1 - tolerance) * target:
        best, best_gain, best_value = None, -np.inf, None
        for g, (k, n) in enumerate(zip(counts, ranking.sizes)):
            if k >= n:
                continue
            k_new = min(int(n), int(k) + step)
            trial = counts.copy()
            trial[g] = k_new
            v = cost(trial)
            if v > target:
                continue
            gain = float(order[g][k:k_new].mean())
            if gain > best_gain:
                best, best_gain, best_value = (g, k_new), gain, v
        if best is None:
            break
        counts[best[0]] = best[1]
        value = best_value
    return counts


def _fmt(value: float, label: str) -> str:
    return f"{value:.3f} {label}" if label == "GFLOPs" else f"{value:,.0f} {label}"
