"""Floors, round_to, the analytic cost model and budgets met within 2% under the target."""

import numpy as np
import pytest
import torch

from pruned_yolo.models import build_model
from pruned_yolo.pruning import (
    FLOOR_COST_SHARE,
    FLOOR_KNOTS,
    PAPER_FLOOR,
    ChannelRanking,
    Pruner,
    PruningError,
    floor_count,
    floor_for_budget,
    measure,
    prune,
    round_count,
)
from pruned_yolo.utils.torch_utils import count_params, gflops

from .test_pruning_groups import tiny


def test_floor_and_round_to_rules():
    assert floor_count(64, 0.1) == 7  # ceil(6.4)
    assert floor_count(8, 0.1) == 2  # max(2, 0.8)
    assert floor_count(64, 0.1, round_to=8) == 8
    assert floor_count(4, 0.1, round_to=8) == 4  # never above the channel count
    assert round_count(13, 64, 8, 8) == 16 and round_count(11, 64, 8, 8) == 8
    assert round_count(3, 64, 8, 8) == 8  # never below the (rounded) floor
    assert round_count(63, 64, 8, 8) == 64 and round_count(62, 60, 8, 8) == 60  # never above n
    assert round_count(10, 10, 2, 8) == 10  # nothing pruned stays unpruned, even off the grid


def test_default_floor_rises_as_the_budget_shrinks():
    assert floor_for_budget(None) == PAPER_FLOOR
    for fraction, floor in FLOOR_KNOTS:
        assert floor_for_budget(fraction) == floor
    assert floor_for_budget(0.9) == floor_for_budget(FLOOR_KNOTS[-1][0])  # constant outside the knots
    assert floor_for_budget(0.05) == floor_for_budget(FLOOR_KNOTS[0][0])
    mid = (FLOOR_KNOTS[0][0] + FLOOR_KNOTS[-1][0]) / 2
    assert FLOOR_KNOTS[-1][1] < floor_for_budget(mid) < FLOOR_KNOTS[0][1]


@pytest.mark.parametrize("kw", [dict(target_flops_ratio=0.3), dict(target_params_ratio=0.45)])
def test_prune_defaults_its_floor_from_the_target(kw):
    model = build_model("yolov5n")
    pruner = Pruner(model, round_to=8)
    metric, target, _ = pruner.target_cost(**kw)
    fitted = pruner.fit_floor(floor_for_budget(target / pruner.dense_cost()[metric]), cost_of(metric), target)
    _, report = prune(model, round_to=8, **kw)
    assert report["settings"]["per_layer_ratio"] == fitted > PAPER_FLOOR
    _, report = prune(model, round_to=8, per_layer_ratio=0.05, **kw)
    assert report["settings"]["per_layer_ratio"] == 0.05  # a given floor is kept
    _, report = prune(model, channel_ratio=0.5, round_to=8)
    assert report["settings"]["per_layer_ratio"] == PAPER_FLOOR  # no budget: the paper's floor


@pytest.mark.parametrize("fraction", [0.12, 0.2, 0.26])
def test_budget_floor_is_lowered_until_the_floors_leave_room(fraction):
    # yolov5n's 16-channel groups at round_to 8: a 0.4 floor keeps half of them, too much for a deep cut
    model = build_model("yolov5n")
    _, report = prune(model, target_flops_ratio=fraction, round_to=8)
    floor = report["settings"]["per_layer_ratio"]
    assert PAPER_FLOOR <= floor <= floor_for_budget(fraction)
    assert 0.98 <= report["target"]["fraction_of_target"] <= 1.0
    pruner = Pruner(model, round_to=8, per_layer_ratio=floor)
    floors_only = pruner.cost_range(cost_of("gflops"))[1]
    assert floor == PAPER_FLOOR or floors_only <= FLOOR_COST_SHARE * fraction * pruner.dense_cost()["gflops"]


def cost_of(metric):
    return lambda cm, counts: cm.cost(counts)[metric]


def test_ranking_counts_are_monotone_and_respect_floor_and_round_to():
    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(n, generator=g, dtype=torch.float64) for n in (16, 64, 128, 24, 256)]
    r = ChannelRanking(scores, per_layer_ratio=0.1, round_to=8)
    prev = r.counts(0)
    assert prev.tolist() == [16, 64, 128, 24, 256]
    for p in range(0, r.total + 1, 7):
        c = r.counts(p)
        assert (c <= prev).all() and (c >= r.floors).all() and (c % 8 == 0).all()
        prev = c
    assert r.counts(r.total).tolist() == r.floors.tolist() == [8, 8, 16, 8, 32]


@pytest.mark.parametrize("round_to", [1, 8])
def test_pruned_widths_follow_floor_and_round_to(round_to):
    torch.manual_seed(0)
    model = build_model("yolov5n")
    pruner = Pruner(model, round_to=round_to)
    plan = pruner.plan(channel_ratio=0.8)
    for g, k in zip(pruner.gs.groups, plan.channels.counts):
        assert k >= floor_count(g.size, 0.1, round_to) and k <= g.size
        assert k % round_to == 0 or k == g.size
    assert sum(plan.channels.counts) < sum(g.size for g in pruner.gs.groups)


@pytest.mark.parametrize("v4", [False, True])
def test_cost_model_matches_torch_counter(v4):
    model = tiny(v4)
    for kw in (dict(channel_ratio=0.0), dict(channel_ratio=0.6, layers=3)):
        pruner = Pruner(model, round_to=1, imgsz=128)
        plan = pruner.plan(**kw)
        pruned, _ = pruner.apply(plan)
        assert plan.predicted["params"] == count_params(pruned)
        assert abs(plan.predicted["gflops"] - gflops(pruned, 128)) <= 1e-3 * gflops(pruned, 128)
        assert measure(pruned, 128) == {"params": count_params(pruned), "gflops": gflops(pruned, 128)}


@pytest.mark.parametrize(
    "kw",
    [
        dict(target_flops_ratio=0.25),
        dict(target_flops_ratio=0.5),
        dict(target_flops_ratio=0.75),
        dict(target_params_ratio=0.5),
        dict(target_params_ratio=0.3, layers=3),
        dict(target_gflops=2.0),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_targets_are_met_within_2_percent_under(kw):
    model = build_model("yolov5n")
    pruned, report = prune(model, round_to=8, **kw)
    t = report["target"]
    assert 0.98 * t["value"] <= t["achieved"] <= t["value"]
    assert t["achieved"] == measure(pruned)[t["metric"]]


def test_tiny_targets_with_small_round_to():
    model = tiny()
    for f in (0.3, 0.6, 0.9):
        _, report = prune(model, target_flops_ratio=f, round_to=2, imgsz=64)
        assert 0.98 <= report["target"]["fraction_of_target"] <= 1.0


def test_impossible_target_names_the_minimum():
    model = tiny()
    with pytest.raises(PruningError, match=r"below the minimum reachable \d"):
        prune(model, target_flops_ratio=0.01, round_to=1)
    with pytest.raises(PruningError, match="not below"):
        prune(model, target_gflops=1e6, round_to=1)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(channel_ratio=0.3, target_gflops=1.0), "exclusive"),
        (dict(target_gflops=1.0, target_params_ratio=0.5), "one target only"),
        (dict(), "nothing to prune"),
        (dict(channel_ratio=1.2), "channel_ratio must be"),
        (dict(target_flops_ratio=1.5), "must be in"),
        (dict(layers=99), "only 7 with a shortcut"),
        (dict(channel_ratio=0.3, importance="nope"), "unknown importance"),
        (dict(channel_ratio=0.3, round_to=0), "round_to"),
    ],
)
def test_conflicting_or_bad_options_are_clear_errors(kw, message):
    from pruned_yolo.errors import PrunedYoloError

    with pytest.raises(PrunedYoloError, match=message):
        prune(tiny(), **kw)


def test_report_has_before_after_and_settings():
    _, report = prune(tiny(), channel_ratio=0.5, layers=1, round_to=1)
    assert {"params", "gflops"} <= set(report["before"]) and {"params", "gflops"} <= set(report["after"])
    assert report["settings"]["importance"] == "bn-kernel" and report["settings"]["round_to"] == 1
    assert report["after"]["gflops"] < report["before"]["gflops"]
    c3 = [r for r in report["layers"] if r["type"] == "C3"]
    assert sum(r["depth_before"] - r["depth_after"] for r in c3) == 1
    assert np.isclose(report["candidate_ratio"], 0.5, atol=0.01)
