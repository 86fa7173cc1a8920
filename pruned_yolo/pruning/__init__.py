"""Structured pruning of YOLO models: coupled channel groups, layer removal, budgets, masks.

    from pruned_yolo.pruning import prune
    pruned, report = prune(model, target_flops_ratio=0.5, importance="bn-kernel")

Modules: `importance` (criteria registry), `groups` (coupled channels from Torch-Pruning's
DependencyGraph), `channel` (plans, floors, round_to), `layers` (Bottleneck removal),
`cost` (analytic params/FLOPs), `budget` (target search), `masks` (soft/hard BN masks
shared with sparsity training), `compensation` (bias folding), `pruner` (entry point),
`latency` (prune to a measured latency: per-block latency tables, `prune_to_latency`).
"""

from .channel import (
    FLOOR_COST_SHARE,
    FLOOR_KNOTS,
    PAPER_FLOOR,
    ChannelPlan,
    ChannelRanking,
    apply_channel_plan,
    describe_floor_default,
    floor_count,
    floor_for_budget,
    round_count,
)
from .compensation import compensate_bias, zero_gammas
from .cost import CostModel, measure
from .groups import (
    BottleneckRef,
    ChannelGroup,
    Consumer,
    ConvUnit,
    GroupSet,
    Member,
    PruningError,
    build_groups,
    check_prunable,
    trace_forward,
)
from .importance import (
    ImportanceFn,
    available_importances,
    get_importance,
    register_importance,
)
from .latency import (
    LatencyModel,
    LatencyTable,
    OrtTimer,
    Probe,
    TorchTimer,
    latency_table,
    make_timer,
    prune_to_latency,
)
from .layers import bottleneck_scores, remove_bottlenecks, select_bottlenecks
from .masks import (
    Mask,
    apply_hard_mask,
    apply_soft_mask,
    bn_layers,
    bn_mask_threshold,
    compute_mask,
    gamma_stats,
    mask_fraction,
)
from .pruner import TARGETS, PrunePlan, Pruner, check_targets, equivalent_hard_mask, prune, rebuild
from .report import format_latency, format_table

__all__ = [
    "BottleneckRef",
    "ChannelGroup",
    "ChannelPlan",
    "ChannelRanking",
    "Consumer",
    "ConvUnit",
    "CostModel",
    "GroupSet",
    "ImportanceFn",
    "LatencyModel",
    "LatencyTable",
    "Mask",
    "Member",
    "OrtTimer",
    "Probe",
    "PrunePlan",
    "Pruner",
    "PruningError",
    "TARGETS",
    "TorchTimer",
    "apply_channel_plan",
    "apply_hard_mask",
    "apply_soft_mask",
    "available_importances",
    "bn_layers",
    "bn_mask_threshold",
    "bottleneck_scores",
    "build_groups",
    "check_targets",
    "check_prunable",
    "compensate_bias",
    "compute_mask",
    "equivalent_hard_mask",
    "floor_count",
    "floor_for_budget",
    "describe_floor_default",
    "FLOOR_KNOTS",
    "FLOOR_COST_SHARE",
    "PAPER_FLOOR",
    "format_latency",
    "format_table",
    "gamma_stats",
    "get_importance",
    "latency_table",
    "make_timer",
    "mask_fraction",
    "measure",
    "prune",
    "prune_to_latency",
    "rebuild",
    "register_importance",
    "remove_bottlenecks",
    "round_count",
    "select_bottlenecks",
    "trace_forward",
    "zero_gammas",
]
