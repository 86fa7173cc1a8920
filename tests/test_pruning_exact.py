"""Exactness: pruning the channels (and Bottlenecks) that were hard-masked changes nothing."""

import copy

import pytest
import torch

from pruned_yolo.checkpoint import load_model, save_checkpoint
from pruned_yolo.pruning import Pruner, apply_hard_mask, compute_mask, measure, prune

from .conftest import YOLOV5N_PT, needs_shared
from .test_pruning_groups import tiny


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        decoded, raw = model(x)
    return decoded, raw


def masked_and_pruned(model, **kw):
    """The model with the plan's channels hard-masked, and the model pruned by the same plan."""
    keys = ("importance", "round_to", "per_layer_ratio", "imgsz", "group_reduction", "group_normalize")
    opts = {k: kw.pop(k) for k in keys if k in kw}
    pruner = Pruner(model, **opts)
    plan = pruner.plan(**kw)
    masked = copy.deepcopy(model)
    apply_hard_mask(masked, pruner.mask(plan))
    pruned, _ = pruner.apply(plan)
    return masked, pruned, plan


CASES = [
    dict(channel_ratio=0.5, round_to=1),
    dict(channel_ratio=0.8, round_to=2, per_layer_ratio=0.2),
    dict(channel_ratio=0.3, layers=4, round_to=1),
    dict(layers=7, round_to=1),  # every shortcut Bottleneck: C3 blocks with no Bottleneck left
    dict(target_flops_ratio=0.5, round_to=1, imgsz=64),
    dict(channel_ratio=0.4, importance="l1", round_to=1),
    dict(channel_ratio=0.4, importance="bn", round_to=1, group_reduction="max"),
    dict(target_flops_ratio=0.6, round_to=1, imgsz=64, group_normalize="mean"),
]


def test_group_normalize_mean_ranks_channels_relative_to_their_group():
    """Scaling one single-member group's scores moves its pruning without, not with, normalization."""
    model = tiny()
    base = Pruner(model, round_to=1)
    group = next(g for g in base.gs.groups if len(g.members) == 1 and g.size >= 8)
    loud = copy.deepcopy(model)
    loud_bn = loud.get_submodule(group.members[0].unit.bn_name)
    with torch.no_grad():
        loud_bn.weight.mul_(1000.0)
    counts = {}
    for norm in ("none", "mean"):
        for name, m in (("base", model), ("loud", loud)):
            plan = Pruner(m, round_to=1, group_normalize=norm).plan(channel_ratio=0.5)
            counts[norm, name] = plan.channels.counts[group.index]
    assert counts["none", "loud"] == group.size > counts["none", "base"]  # unnormalized: the loud group is kept
    assert counts["mean", "loud"] == counts["mean", "base"] < group.size  # normalized: unchanged


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_pruned_equals_hard_masked_float64(kw):
    model = tiny().double()
    masked, pruned, plan = masked_and_pruned(model, **kw)
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
    (d0, r0), (d1, r1) = outputs(masked, x), outputs(pruned, x)
    for a, b in zip(r0, r1):
        assert (a - b).abs().max() < 1e-9
    assert (d0 - d1).abs().max() < 1e-9
    # and the pruning is not trivial: the masked model differs from the original
    assert (outputs(model, x)[0] - d0).abs().max() > 1e-3


def test_pruned_equals_hard_masked_float32():
    model = tiny(v4=True)
    masked, pruned, _ = masked_and_pruned(model, channel_ratio=0.5, layers=2, round_to=1)
    x = torch.rand(2, 3, 64, 64)
    (_, r0), (_, r1) = outputs(masked, x), outputs(pruned, x)
    assert max(float((a - b).abs().max()) for a, b in zip(r0, r1)) < 1e-4


def test_layer_pruning_can_empty_a_c3():
    model = tiny()
    pruned, report = prune(model, layers=7, round_to=1)
    shortcut_c3 = [m for m in pruned.model if m.type == "C3" and m.shortcut]
    assert shortcut_c3 and all(len(m.m) == 0 for m in shortcut_c3)
    assert all(len(m.m) == 1 for m in pruned.model if m.type == "C3" and not m.shortcut)
    assert len(report["removed_bottlenecks"]) == 7
    pruned(torch.zeros(1, 3, 64, 64))


def test_layer_pruning_removes_the_lowest_scoring_bottlenecks():
    model = tiny()
    with torch.no_grad():
        model.model[4].m[1].cv2.bn.weight.mul_(1e-3)  # make model.4.m.1 the weakest
        model.model[6].m[0].cv2.bn.weight.mul_(1e-2)  # and model.6.m.0 the second weakest
    _, report = prune(model, layers=2, importance="bn")
    assert report["removed_bottlenecks"] == ["model.4.m.1", "model.6.m.0"]


def test_save_and_reload_is_bit_exact(tmp_path):
    model = tiny()
    pruned, report = prune(model, channel_ratio=0.5, layers=2, round_to=2)
    path = save_checkpoint(pruned, tmp_path / "p.safetensors")
    loaded = load_model(path)
    assert loaded.arch() == pruned.arch()
    sd0, sd1 = pruned.state_dict(), loaded.state_dict()
    assert sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(outputs(pruned, x)[0], outputs(loaded, x)[0])
    entry = loaded.meta["history"][-1]
    assert entry["action"] == "prune" and entry["after"] == report["after"]
    assert entry["removed_bottlenecks"] == report["removed_bottlenecks"]


def test_input_model_is_untouched():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune(model, channel_ratio=0.5, layers=3, bias_compensation=True, round_to=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(model.model[6].m) == 3


@needs_shared
def test_real_yolov5n_prunes_reloads_and_matches_its_mask(tmp_path):
    model = load_model(YOLOV5N_PT)
    x = torch.rand(1, 3, 128, 160)
    for ratio, layers in ((0.6, 3),):
        masked, pruned, _ = masked_and_pruned(model, channel_ratio=ratio, layers=layers)
        (_, r0), (_, r1) = outputs(masked, x), outputs(pruned, x)
        assert max(float((a - b).abs().max()) for a, b in zip(r0, r1)) < 1e-4
        assert measure(pruned)["gflops"] < measure(model)["gflops"]
        loaded = load_model(save_checkpoint(pruned, tmp_path / f"n_{ratio}.safetensors"))
        assert torch.equal(outputs(loaded, x)[0], outputs(pruned, x)[0])


def test_plan_from_a_threshold_mask_is_exact():
    """Sparsity-training style: per-BN threshold mask, hard-applied, then pruned by that mask."""
    model = tiny().double()
    mask = compute_mask(model, threshold=0.5)
    masked = copy.deepcopy(model)
    apply_hard_mask(masked, mask)
    pruner = Pruner(masked, round_to=1)
    plan = pruner.plan_from_mask(mask)
    pruned, _ = pruner.apply(plan)
    assert measure(pruned)["params"] < measure(model)["params"]
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    (d0, _), (d1, _) = outputs(masked, x), outputs(pruned, x)
    assert (d0 - d1).abs().max() < 1e-9
