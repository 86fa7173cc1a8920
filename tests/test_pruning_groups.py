"""Channel coupling: one test per pattern, and a slicing check of every conv of a pruned model."""

from collections import defaultdict

import pytest
import torch

from pruned_yolo.models import build_model, load_model_cfg
from pruned_yolo.pruning import Pruner, build_groups
from pruned_yolo.pruning.testing import randomize_bn

from .conftest import tiny_cfg


def tiny_v4_cfg(nc: int = 3) -> dict:
    """The seed paper's yolov5l-v4 layout (Focus, SPP, C3) at toy size."""
    cfg = dict(load_model_cfg("yolov5l-v4"))
    cfg.update(nc=nc, width_multiple=0.125, depth_multiple=0.33)
    return cfg


def tiny(v4: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(tiny_v4_cfg() if v4 else tiny_cfg())
    return randomize_bn(model, seed).eval()


def expected_slices(pruner, plan):
    """Per conv path: kept output channels and kept input channels, from the plan and the groups."""
    keep_out, drop_in = {}, defaultdict(set)
    for g, pruned in zip(pruner.gs.groups, plan.channels.pruned(pruner.gs)):
        sel = torch.zeros(g.size, dtype=torch.bool)
        sel[pruned] = True
        for m in g.members:
            keep_out[f"{m.unit.name}.conv"] = m.channels[~sel].sort().values
        for c in g.consumers:
            drop_in[c.name] |= set(c.channels[sel[c.group_channels]].tolist())
    return keep_out, drop_in


def prune_with_slices(model, **kw):
    pruner = Pruner(model, round_to=kw.pop("round_to", 1), imgsz=64)
    plan = pruner.plan(**kw)
    keep_out, drop_in = expected_slices(pruner, plan)
    pruned, _ = pruner.apply(plan)
    return pruner, plan, pruned, keep_out, drop_in


@pytest.mark.parametrize("v4", [False, True])
def test_every_conv_is_sliced_by_its_groups(v4):
    """Every weight of the pruned model is the original weight at the planned indices."""
    model = tiny(v4)
    _, _, pruned, keep_out, drop_in = prune_with_slices(model, channel_ratio=0.5)
    orig = dict(model.named_modules())
    n_checked = 0
    for name, conv in pruned.named_modules():
        if not isinstance(conv, torch.nn.Conv2d):
            continue
        w0 = orig[name].weight
        out_idx = keep_out.get(name, torch.arange(w0.shape[0]))
        in_idx = torch.tensor([i for i in range(w0.shape[1]) if i not in drop_in.get(name, set())])
        assert torch.equal(conv.weight, w0[out_idx][:, in_idx]), name
        bn_name = name[: -len(".conv")] + ".bn"
        if bn_name in orig:
            assert torch.equal(dict(pruned.named_modules())[bn_name].weight, orig[bn_name].weight[out_idx])
        n_checked += 1
    assert n_checked == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert sum(len(v) for v in drop_in.values()) > 0


@pytest.mark.parametrize("v4", [False, True])
def test_residual_groups_keep_identical_indices(v4):
    """The reference code's defect: members of a residual chain must keep the same channels.

    Every gamma is distinct, so each kept channel of the pruned model is traced back to
    its original index by value, independently of the plan.
    """
    model = tiny(v4)
    gs = build_groups(model)
    residual = [g for g in gs.groups if g.residual]
    assert residual and all(len(g.members) >= 2 for g in residual)
    pruner, plan, pruned, _, _ = prune_with_slices(model, channel_ratio=0.6)
    mods = dict(pruned.named_modules())
    orig = dict(model.named_modules())
    n_pruned = 0
    for g in residual:
        kept_sets = []
        for m in g.members:
            g0 = orig[f"{m.unit.name}.bn"].weight
            g1 = mods[f"{m.unit.name}.bn"].weight
            idx = [int(torch.nonzero(g0 == v).flatten()[0]) for v in g1]
            kept_sets.append(idx)
        assert all(k == kept_sets[0] for k in kept_sets), g.describe()
        n_pruned += g.size - len(kept_sets[0])
    assert n_pruned > 0  # the test prunes residual channels for real


def test_c3_shortcut_chain_is_one_group():
    gs = build_groups(tiny())
    g = gs.group_of("model.6.cv1")
    assert g.member_names() == ["model.6.cv1", "model.6.m.0.cv2", "model.6.m.1.cv2", "model.6.m.2.cv2"]
    assert {c.name for c in g.consumers} == {
        "model.6.cv3.conv",
        "model.6.m.0.cv1.conv",
        "model.6.m.1.cv1.conv",
        "model.6.m.2.cv1.conv",
    }
    # head C3 blocks have no shortcut: each Bottleneck output is its own group
    assert not gs.group_of("model.13.m.0.cv2").residual


def test_concat_maps_to_slices_of_the_consumer():
    model = tiny()
    gs = build_groups(model)
    c_up = model.model[10].conv.out_channels  # layer 12 = Concat(Upsample(10), 6)
    for name, offset in (("model.10", 0), ("model.6.cv3", c_up)):
        g = gs.group_of(name)
        c = next(c for c in g.consumers if c.name == "model.13.cv1.conv")
        assert torch.equal(c.channels, torch.arange(g.size) + offset)
        assert torch.equal(c.group_channels, torch.arange(g.size))


def test_upsample_passes_channels_through():
    gs = build_groups(tiny())
    names = {c.name for c in gs.group_of("model.10").consumers}
    # through Upsample(11) + Concat(12) and directly through Concat(22)
    assert {"model.13.cv1.conv", "model.13.cv2.conv", "model.23.cv1.conv", "model.23.cv2.conv"} == names


@pytest.mark.parametrize("v4, layer, branches", [(False, 9, 4), (True, 8, 4)])
def test_spp_and_sppf_pools_pass_masks_through(v4, layer, branches):
    model = tiny(v4)
    gs = build_groups(model)
    g = gs.group_of(f"model.{layer}.cv1")
    (c,) = g.consumers
    assert c.name == f"model.{layer}.cv2.conv" and len(c.channels) == branches * g.size and c.multiplicity == branches
    expected = torch.cat([torch.arange(g.size) + b * g.size for b in range(branches)])
    assert torch.equal(c.channels.sort().values, expected)
    assert torch.equal(c.group_channels[c.channels.argsort()], torch.arange(g.size).repeat(branches))


def test_focus_stem_input_is_never_pruned():
    model = tiny(v4=True)
    assert model.model[0].type == "Focus"
    gs = build_groups(model)
    assert all(c.name != "model.0.conv.conv" for g in gs.groups for c in g.consumers)
    _, _, pruned, _, _ = prune_with_slices(model, channel_ratio=0.7)
    assert pruned.model[0].conv.conv.in_channels == 12
    assert pruned.model[0].conv.conv.out_channels < model.model[0].conv.conv.out_channels


def test_detect_outputs_are_never_pruned():
    model = tiny()
    gs = build_groups(model)
    members = {m.unit.conv for g in gs.groups for m in g.members}
    assert not members & set(model.detect.m)
    _, _, pruned, _, _ = prune_with_slices(model, channel_ratio=0.7)
    for c0, c1 in zip(model.detect.m, pruned.detect.m):
        assert c1.out_channels == c0.out_channels == model.detect.na * model.detect.no
        assert torch.equal(c1.bias, c0.bias)
        assert c1.in_channels < c0.in_channels
