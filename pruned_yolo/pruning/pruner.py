"""The pruning entry point: `prune(model, ...) -> (pruned_model, report)`.

Steps, on a private copy of the model (the input is never modified):

1. trace the channel groups once (groups.py, Torch-Pruning's DependencyGraph);
2. layer pruning: pick the `layers` lowest-scoring shortcut Bottlenecks (layers.py);
3. channel plan: from `channel_ratio`, or by searching the ranking for a GFLOPs or
   parameter target (budget.py, analytic costs from cost.py);
4. optional bias compensation of the pruned channels (compensation.py);
5. remove the Bottlenecks, slice every group with Torch-Pruning;
6. rebuild a fresh `YOLO` from the sliced model's explicit architecture and load the
   sliced state dict strictly: a wrong width anywhere fails here, not at inference.

The lower-level `Pruner` exposes the plan and the equivalent hard mask, which the tests
use to prove that pruning the hard-masked channels does not change the outputs.
"""

from __future__ import annotations

import copy
import datetime
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..checkpoint.native import load_state
from ..errors import CheckpointError
from ..models.yolo import YOLO
from .budget import search_counts
from .channel import (
    FLOOR_COST_SHARE,
    FLOOR_STEP,
    PAPER_FLOOR,
    ChannelPlan,
    ChannelRanking,
    apply_channel_plan,
    floor_count,
    floor_for_budget,
)
from .compensation import compensate_bias
from .cost import CostModel, conv_output_sizes, measure
from .groups import (
    GROUP_NORMALIZERS,
    GROUP_REDUCTIONS,
    GroupSet,
    PruningError,
    build_groups,
    check_prunable,
    single_thread,
)
from .importance import get_importance
from .layers import remove_bottlenecks, select_bottlenecks
from .masks import Mask, compute_mask
from .report import layer_table

TARGETS = ("target_gflops", "target_flops_ratio", "target_params_ratio", "target_latency_ms")


def check_targets(
    channel_ratio: float | None = None,
    target_gflops: float | None = None,
    target_flops_ratio: float | None = None,
    target_params_ratio: float | None = None,
    target_latency_ms: float | None = None,
) -> str | None:
    """Check how much to prune (the one place for it); return the target given, if any.

    At most one of `channel_ratio` (in [0, 1)) and the targets: `target_gflops` > 0,
    `target_flops_ratio` and `target_params_ratio` in (0, 1), `target_latency_ms` > 0 (met by
    `pruning.latency.prune_to_latency`, which also checks it against the measured dense and
    floor latencies). NaN and infinities are refused.
    """
    values = dict(
        zip(
            ("channel_ratio", *TARGETS),
            (channel_ratio, target_gflops, target_flops_ratio, target_params_ratio, target_latency_ms),
        )
    )
    given = [k for k, v in values.items() if v is not None]
    if channel_ratio is not None and len(given) > 1:
        raise PruningError(f"channel_ratio and {given[1]} conflict (they are exclusive): give one of them")
    if len(given) > 1:
        raise PruningError(f"give one target only: {' and '.join(given)} conflict")
    for k in given:
        v = values[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise PruningError(f"{k} must be a finite number, got {v!r}")
        if k == "channel_ratio" and not 0 <= v < 1:
            raise PruningError(f"channel_ratio must be in [0, 1), got {v}")
        if k in ("target_gflops", "target_latency_ms") and v <= 0:
            raise PruningError(f"{k} must be positive, got {v}")
        if k.endswith("_ratio") and k != "channel_ratio" and not 0 < v < 1:
            raise PruningError(f"{k} must be in (0, 1), got {v}")
    return given[0] if given and given[0] != "channel_ratio" else None


@dataclass
class PrunePlan:
    """Everything `Pruner.apply` needs: kept channels per group and Bottlenecks to remove."""

    channels: ChannelPlan
    removed: list[str] = field(default_factory=list)  # Bottleneck paths, e.g. "model.4.m.1"
    candidate_ratio: float = 0.0  # fraction of ranked channels proposed by the global threshold
    predicted: dict = field(default_factory=dict)  # {'params', 'gflops'} from the cost model


class Pruner:
    """Plans and applies the pruning of one model (single use: `apply` consumes the copy)."""

    def __init__(
        self,
        model: YOLO,
        importance="bn-kernel",
        round_to: int = 8,
        per_layer_ratio: float = PAPER_FLOOR,
        imgsz: int = 640,
        group_reduction: str = "mean",
        group_normalize: str = "none",
    ):
        check_prunable(model)
        if group_reduction not in GROUP_REDUCTIONS:
            raise PruningError(
                f"unknown group reduction '{group_reduction}' (use one of {', '.join(GROUP_REDUCTIONS)})"
            )
        if group_normalize not in GROUP_NORMALIZERS:
            raise PruningError(
                f"unknown group normalization '{group_normalize}' (use one of {', '.join(GROUP_NORMALIZERS)})"
            )
        if round_to < 1:
            raise PruningError(f"round_to must be >= 1, got {round_to}")
        if not 0 <= per_layer_ratio <= 1:
            raise PruningError(f"per_layer_ratio must be in [0, 1], got {per_layer_ratio}")
        self.importance_name = importance if isinstance(importance, str) else getattr(importance, "__name__", "custom")
        self.importance = get_importance(importance)
        self.round_to, self.per_layer_ratio, self.imgsz = int(round_to), float(per_layer_ratio), imgsz
        self.group_reduction, self.group_normalize = group_reduction, group_normalize
        self.source = model
        self.model = copy.deepcopy(model).cpu()
        self.model.eval()
        self.arch_before = self.model.arch()
        self.gs: GroupSet = build_groups(self.model)
        self._applied = False
        self._costs: dict[frozenset, CostModel] = {}
        self._hw: dict[str, int] | None = None

    # -- planning -----------------------------------------------------------------------
    def removed_units(self, removed: list[str]) -> frozenset[str]:
        return frozenset(f"{b}.{cv}" for b in removed for cv in ("cv1", "cv2"))

    def cost_model(self, removed: list[str] = ()) -> CostModel:
        key = frozenset(removed)
        if key not in self._costs:
            if self._hw is None:
                self._hw = conv_output_sizes(self.model, self.imgsz)
            self._costs[key] = CostModel(self.gs, self.imgsz, self.removed_units(list(removed)), self._hw)
        return self._costs[key]

    def select_layers(self, layers: int) -> list[str]:
        return [s.name for s in select_bottlenecks(self.model, layers, self.importance)]

    def group_scores(self, removed: list[str] = ()) -> list[torch.Tensor]:
        excl = self.removed_units(list(removed))
        scores = [g.importance(self.importance, self.group_reduction, excl) for g in self.gs.groups]
        if self.group_normalize == "mean":  # rank channels relative to their own group
            scores = [s / s.mean().clamp_min(1e-12) for s in scores]
        return scores

    def _live(self, removed: list[str]) -> list[int]:
        """Groups that still have a producer once the Bottlenecks in `removed` are gone."""
        excl = self.removed_units(list(removed))
        return [g.index for g in self.gs.groups if any(m.unit.name not in excl for m in g.members)]

    def ranking(self, removed: list[str] = ()) -> tuple[ChannelRanking, list[int]]:
        scores = self.group_scores(removed)
        live = self._live(removed)
        return ChannelRanking([scores[i] for i in live], self.per_layer_ratio, self.round_to), live

    def _full_counts(self, live: list[int], live_counts) -> np.ndarray:
        counts = np.array([g.size for g in self.gs.groups], dtype=np.int64)
        counts[live] = live_counts
        return counts

    def _full_plan(self, ranking: ChannelRanking, live: list[int], live_counts) -> ChannelPlan:
        sub = ranking.plan(live_counts)
        keep = [torch.arange(g.size) for g in self.gs.groups]
        for i, k in zip(live, sub.keep):
            keep[i] = k
        return ChannelPlan(keep)

    def plan(
        self,
        channel_ratio: float | None = None,
        layers: int | list[str] = 0,
        target_gflops: float | None = None,
        target_flops_ratio: float | None = None,
        target_params_ratio: float | None = None,
        tolerance: float = 0.02,
    ) -> PrunePlan:
        """Plan by a channel ratio, or search the ratio that meets one target (2% under it)."""
        kind = check_targets(channel_ratio, target_gflops, target_flops_ratio, target_params_ratio)
        removed = self.select_layers(layers) if isinstance(layers, int) else list(layers)
        ranking, live = self.ranking(removed)
        cm = self.cost_model(removed)
        layers_only = cm.cost(np.array([g.size for g in self.gs.groups]))  # Bottlenecks removed, all channels

        def cost_of(metric):
            return lambda live_counts: cm.cost(self._full_counts(live, live_counts))[metric]

        if channel_ratio is not None:
            counts = ranking.counts_for_ratio(channel_ratio)
            n_cand = int(round(channel_ratio * ranking.total))
        elif kind:
            metric, target, label = self.target_cost(target_gflops, target_flops_ratio, target_params_ratio)
            if removed and layers_only[metric] <= target:
                raise PruningError(
                    f"removing {len(removed)} Bottlenecks alone already gives {layers_only[metric]:.4g} {label}, "
                    f"under the target {target:.4g}: use fewer --layers"
                )
            counts, n_cand = search_counts(ranking, cost_of(metric), target, tolerance, label)
        else:
            counts, n_cand = ranking.counts(0), 0
        channels = self._full_plan(ranking, live, counts)
        predicted = cm.cost(self._full_counts(live, counts))
        return PrunePlan(channels, removed, n_cand / max(ranking.total, 1), predicted)

    def target_cost(
        self,
        target_gflops: float | None = None,
        target_flops_ratio: float | None = None,
        target_params_ratio: float | None = None,
    ) -> tuple[str, float, str]:
        """(metric, absolute target, label) of the one target given."""
        if target_gflops is not None:
            return "gflops", float(target_gflops), "GFLOPs"
        if target_flops_ratio is not None:
            return "gflops", float(target_flops_ratio) * self.dense_cost()["gflops"], "GFLOPs"
        return "params", float(target_params_ratio) * self.dense_cost()["params"], "params"

    def fit_floor(self, floor: float, cost, target: float, layers: int | list[str] = 0) -> float:
        """Set `per_layer_ratio` to `floor`, lowered by FLOOR_STEP (not below PAPER_FLOOR) while a
        plan of floors alone would cost more than FLOOR_COST_SHARE x `target`; return it.

        `cost(cost_model, counts)` as in `cost_range`: the default floor of a budget
        (`floor_for_budget`) must leave the ranking room, and never make a target unreachable
        that the paper's floor can reach."""
        self.per_layer_ratio = float(floor)
        while self.per_layer_ratio > PAPER_FLOOR and self.cost_range(cost, layers)[1] > FLOOR_COST_SHARE * target:
            self.per_layer_ratio = max(PAPER_FLOOR, round(self.per_layer_ratio - FLOOR_STEP, 4))
        return self.per_layer_ratio

    def budget_floor(
        self,
        target_gflops: float | None = None,
        target_flops_ratio: float | None = None,
        target_params_ratio: float | None = None,
        layers: int | list[str] = 0,
    ) -> float:
        """`fit_floor` of the floor that suits the target's fraction of the cost (`floor_for_budget`)."""
        metric, target, _ = self.target_cost(target_gflops, target_flops_ratio, target_params_ratio)
        floor = floor_for_budget(target / self.dense_cost()[metric])
        return self.fit_floor(floor, lambda cm, counts: cm.cost(counts)[metric], target, layers)

    def cost_range(self, cost, layers: int | list[str] = 0) -> tuple[float, float]:
        """`cost` of the plan that keeps every channel and of the plan at every group's floor.

        `cost(cost_model, counts)` as in `plan_for_cost`; `layers` (a count or Bottleneck paths)
        are removed in both plans.
        """
        removed = self.select_layers(layers) if isinstance(layers, int) else list(layers)
        ranking, live = self.ranking(removed)
        cm = self.cost_model(removed)
        full = float(cost(cm, self._full_counts(live, ranking.counts(0))))
        floor = float(cost(cm, self._full_counts(live, ranking.min_counts())))
        return full, floor

    def plan_for_cost(
        self,
        cost,
        target: float,
        layers: int | list[str] = 0,
        tolerance: float = 0.02,
        label: str = "cost",
    ) -> PrunePlan:
        """Plan so that `(1 - tolerance) * target <= cost <= target`, for any cost of a plan.

        The search of the GFLOPs and params targets (`budget.search_counts` bisecting the same
        global channel ranking, then giving channels back) with another cost, such as a latency
        model (`pruning.latency`). `cost(cost_model, counts)` gets the `CostModel` of the model
        with the `layers` Bottlenecks removed and the kept channels of every group (an int array
        over `gs.groups`); it must not grow when channels are taken away.
        """
        removed = self.select_layers(layers) if isinstance(layers, int) else list(layers)
        ranking, live = self.ranking(removed)
        cm = self.cost_model(removed)

        def of_live(live_counts) -> float:
            return float(cost(cm, self._full_counts(live, live_counts)))

        counts, n_cand = search_counts(ranking, of_live, target, tolerance, label)
        channels = self._full_plan(ranking, live, counts)
        predicted = cm.cost(self._full_counts(live, counts))
        return PrunePlan(channels, removed, n_cand / max(ranking.total, 1), predicted)

    def plan_from_mask(self, mask: Mask, layers: int | list[str] = 0) -> PrunePlan:
        """Prune exactly the channels a mask switched off in every member of their group.

        For a model whose masked channels were hard-masked (e.g. by sparsity training), the
        result computes the same outputs: a group channel goes only if all its producers are
        masked there (a residual channel still written by one member stays). Each group keeps
        at least its floor (`max(2, per_layer_ratio x n)`, no rounding), topped up with its most
        important masked channels; keeping a zeroed channel changes nothing either.
        """
        removed = self.select_layers(layers) if isinstance(layers, int) else list(layers)
        excl = self.removed_units(removed)
        scores = self.group_scores(removed)
        keep = []
        for g, s in zip(self.gs.groups, scores):
            alive = torch.zeros(g.size, dtype=torch.bool)
            members = [m for m in g.members if m.unit.name not in excl] or g.members
            for m in members:
                bn_mask = mask.get(m.unit.bn_name)
                alive |= torch.ones(g.size, dtype=torch.bool) if bn_mask is None else bn_mask.cpu()[m.channels]
            need = min(g.size, max(int(alive.sum()), floor_count(g.size, self.per_layer_ratio)))
            order = sorted(range(g.size), key=lambda j: (not bool(alive[j]), -float(s[j]), j))
            keep.append(torch.tensor(sorted(order[:need]), dtype=torch.long))
        channels = ChannelPlan(keep)
        live = self._live(removed)
        counts = np.array(channels.counts)[live]
        predicted = self.cost_model(removed).cost(self._full_counts(live, counts))
        total = sum(self.gs.groups[i].size for i in live)
        return PrunePlan(channels, removed, float(1 - counts.sum() / max(total, 1)), predicted)

    def dense_cost(self) -> dict:
        cm = self.cost_model(())
        return cm.cost(np.array([g.size for g in self.gs.groups]))

    def mask(self, plan: PrunePlan) -> Mask:
        """The hard mask equivalent to `plan`: pruned channels off, removed Bottlenecks' cv2 off."""
        keep = {n: k for n, k in plan.channels.unit_keep(self.gs).items()}
        for b in plan.removed:
            keep[f"{b}.cv2"] = torch.zeros(0, dtype=torch.long)
        return compute_mask(self.model, keep=keep)

    # -- applying -----------------------------------------------------------------------
    def apply(self, plan: PrunePlan, bias_compensation: bool = False) -> tuple[YOLO, dict]:
        """Slice the private copy by `plan` and rebuild a fresh model from its architecture."""
        if self._applied:
            raise PruningError("a Pruner applies one plan only; create a new one")
        self._applied = True
        if plan.removed:
            remove_bottlenecks(self.model, plan.removed)
        comp = None
        with single_thread():
            if bias_compensation:
                comp = compensate_bias(self.gs, plan.channels, self.removed_units(plan.removed))
            apply_channel_plan(self.gs, plan.channels)
            pruned = rebuild(self.model)
        pruned.names = list(self.source.names)
        pruned.meta = copy.deepcopy(getattr(self.source, "meta", {}) or {})
        return pruned, {"bias_compensation": comp}


def rebuild(model: YOLO) -> YOLO:
    """A fresh YOLO built from `model.arch()` with `model`'s tensors loaded strictly."""
    arch = model.arch()
    fresh = YOLO(arch).to(next(model.parameters()).dtype)
    try:
        load_state(fresh, model.state_dict(), "pruned model")
    except CheckpointError as e:
        raise PruningError(f"internal error: the sliced model does not match its architecture ({e})") from None
    fresh.eval()
    return fresh


def prune(
    model: YOLO,
    *,
    channel_ratio: float | None = None,
    layers: int = 0,
    target_gflops: float | None = None,
    target_flops_ratio: float | None = None,
    target_params_ratio: float | None = None,
    importance="bn-kernel",
    round_to: int = 8,
    per_layer_ratio: float | None = None,
    imgsz: int = 640,
    bias_compensation: bool = False,
    group_reduction: str = "mean",
    group_normalize: str = "none",
    tolerance: float = 0.02,
    plan: PrunePlan | None = None,
) -> tuple[YOLO, dict]:
    """Prune channels and/or Bottlenecks of `model`; return a fresh model and a report.

    Exactly what to prune: `channel_ratio` (global fraction of ranked channels proposed
    for pruning, before floors and rounding), or one target (`target_gflops` absolute at
    `imgsz`, `target_flops_ratio` or `target_params_ratio` relative to `model`), met
    within `tolerance` under it; `layers` removes that many shortcut Bottlenecks first
    (combinable with any of the above). The report holds before/after params and GFLOPs,
    the settings, the per-layer widths and the removed Bottlenecks; the same entry is
    appended to `pruned.meta["history"]`. `plan` applies a plan made by another `Pruner` of
    the same model with the same settings (e.g. `plan_for_cost`, for latency targets) instead
    of planning; it excludes the ratio, the targets and `layers`. `per_layer_ratio` None: the
    floor that suits the target's fraction of the model's cost (`floor_for_budget`).
    """
    t0 = time.perf_counter()
    targets = {
        "target_gflops": target_gflops,
        "target_flops_ratio": target_flops_ratio,
        "target_params_ratio": target_params_ratio,
    }
    kind = check_targets(channel_ratio, target_gflops, target_flops_ratio, target_params_ratio)
    if plan is not None:
        if channel_ratio is not None or kind or layers:
            raise PruningError("a given plan excludes channel_ratio, layers and the targets")
        layers = len(plan.removed)
    elif channel_ratio is None and kind is None and not layers:
        raise PruningError("nothing to prune: give channel_ratio, layers or a target")
    with single_thread():
        floor = PAPER_FLOOR if per_layer_ratio is None else per_layer_ratio
        pruner = Pruner(model, importance, round_to, floor, imgsz, group_reduction, group_normalize)
        before = pruner.dense_cost()  # analytic; equal to measure(model) (tests check it)
        if per_layer_ratio is None and kind and plan is None:  # the floor that suits the budget
            pruner.budget_floor(target_gflops, target_flops_ratio, target_params_ratio, layers)
        per_layer_ratio = pruner.per_layer_ratio
        if plan is None:
            plan = pruner.plan(channel_ratio, layers, target_gflops, target_flops_ratio, target_params_ratio, tolerance)
        elif len(plan.channels.keep) != len(pruner.gs.groups):
            raise PruningError(f"the plan has {len(plan.channels.keep)} groups, the model {len(pruner.gs.groups)}")
        pruned, extra = pruner.apply(plan, bias_compensation)
        after = measure(pruned, imgsz)
    if (
        abs(after["gflops"] - plan.predicted["gflops"]) > 1e-6 * max(after["gflops"], 1)
        or after["params"] != plan.predicted["params"]
    ):
        raise PruningError(f"internal error: planned {plan.predicted} but the pruned model has {after}")
    group_sizes = np.array([g.size for g in pruner.gs.groups])
    kept = np.array(plan.channels.counts)
    settings = {
        "importance": pruner.importance_name,
        "channel_ratio": channel_ratio,
        "layers": layers,
        "round_to": round_to,
        "per_layer_ratio": per_layer_ratio,
        "imgsz": imgsz,
        "bias_compensation": bias_compensation,
        "group_reduction": group_reduction,
        "group_normalize": group_normalize,
        **{k: v for k, v in targets.items() if v is not None},
    }
    report = {
        "settings": settings,
        "before": before,
        "after": after,
        "candidate_ratio": plan.candidate_ratio,
        "pruned_channel_fraction": float(1 - kept.sum() / group_sizes.sum()),
        "removed_bottlenecks": plan.removed,
        "groups": len(group_sizes),
        "layers": layer_table(pruner.arch_before, pruned.arch()),
        "bias_compensation": extra["bias_compensation"],
    }
    if kind:
        metric = "params" if kind == "target_params_ratio" else "gflops"
        value = targets[kind] * before[metric] if kind.endswith("ratio") else targets[kind]
        report["target"] = {
            "kind": kind,
            "metric": metric,
            "value": value,
            "achieved": after[metric],
            "fraction_of_target": after[metric] / value,
        }
    report["time_s"] = time.perf_counter() - t0
    history = {
        "action": "prune",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "before": before,
        "after": after,
        "removed_bottlenecks": plan.removed,
        "candidate_ratio": plan.candidate_ratio,
    }
    pruned.meta.setdefault("history", [])
    pruned.meta["history"] = list(pruned.meta["history"]) + [history]
    return pruned, report


def equivalent_hard_mask(model: nn.Module, **kwargs) -> tuple[Mask, PrunePlan, Pruner]:
    """The hard mask whose channels `prune(model, **kwargs)` removes (same plan)."""
    pruner = Pruner(
        model,
        **{
            k: kwargs.pop(k)
            for k in ("importance", "round_to", "per_layer_ratio", "imgsz", "group_reduction", "group_normalize")
            if k in kwargs
        },
    )
    plan = pruner.plan(**kwargs)
    return pruner.mask(plan), plan, pruner
