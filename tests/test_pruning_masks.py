"""Masks (shared with sparsity training), the importance registry and bias compensation."""

import copy
import sys
import types

import pytest
import torch

from pruned_yolo.pruning import (
    Pruner,
    apply_hard_mask,
    apply_soft_mask,
    available_importances,
    bn_layers,
    bn_mask_threshold,
    compute_mask,
    gamma_stats,
    get_importance,
    mask_fraction,
    prune,
    register_importance,
)
from pruned_yolo.pruning.importance import _IMPORTANCE

from .test_pruning_groups import tiny


def test_threshold_mask_and_stats():
    model = tiny()
    thr = bn_mask_threshold(model, alpha=0.2)
    gammas = torch.cat([bn.weight.detach().abs() for bn in bn_layers(model).values()])
    assert thr == pytest.approx(0.2 * float(gammas.mean()), rel=1e-6)
    mask = compute_mask(model, threshold=0.5)
    assert set(mask) == set(bn_layers(model))
    assert mask_fraction(mask) == pytest.approx(float((gammas <= 0.5).float().mean()))
    stats = gamma_stats(model, threshold=0.5)
    assert stats["fraction_below"] == pytest.approx(mask_fraction(mask))
    assert stats["channels"] == len(gammas) and stats["quantiles"]["0.5"] == pytest.approx(
        float(gammas.median()), abs=0.02
    )


def test_soft_and_hard_masks_scale_all_four_bn_tensors():
    model = tiny()
    mask = compute_mask(model, threshold=0.5)
    name = next(n for n, m in mask.items() if (~m).any() and m.any())
    before = {
        k: getattr(bn_layers(model)[name], k).detach().clone()
        for k in ("weight", "bias", "running_mean", "running_var")
    }
    soft = copy.deepcopy(model)
    n = apply_soft_mask(soft, mask, factor=0.1)
    assert n == sum(int((~m).sum()) for m in mask.values())
    bn = bn_layers(soft)[name]
    off = ~mask[name]
    for k, v in before.items():
        now = getattr(bn, k).detach()
        assert torch.allclose(now[off], 0.1 * v[off]) and torch.equal(now[~off], v[~off])
    hard = copy.deepcopy(model)
    apply_hard_mask(hard, mask)
    bn = bn_layers(hard)[name]
    assert (bn.weight[off] == 0).all() and (bn.bias[off] == 0).all()
    # a hard-masked channel outputs exactly 0 after BN + SiLU
    x = torch.randn(1, bn.num_features, 4, 4)
    conv_module = dict(hard.named_modules())[name[: -len(".bn")]]
    with torch.no_grad():
        y = conv_module.act(bn(x))
    assert (y[:, off] == 0).all()


def test_mask_from_keep_indices_by_conv_or_bn_name():
    model = tiny()
    mask = compute_mask(model, keep={"model.0": [0, 2], "model.1.bn": torch.tensor([1])})
    assert mask["model.0.bn"].tolist() == [True, False, True] + [False] * 5
    assert int(mask["model.1.bn"].sum()) == 1 and len(mask) == 2
    with pytest.raises(KeyError):
        compute_mask(model, keep={"model.99": [0]})


def test_builtin_importances():
    assert {"bn", "bn-kernel", "l1"} <= set(available_importances())
    model = tiny()
    conv, bn = model.model[1].conv, model.model[1].bn
    assert torch.equal(get_importance("bn")(conv, bn), bn.weight.abs())
    expected = bn.weight.abs() * conv.weight.abs().mean(dim=(1, 2, 3))
    assert torch.allclose(get_importance("bn-kernel")(conv, bn), expected)
    assert torch.allclose(get_importance("l1")(conv, bn), conv.weight.abs().flatten(1).sum(1))


def test_user_registered_importance_drives_pruning():
    @register_importance("test-first-channels")
    def first_channels(conv, bn):  # prefers low channel indices
        return torch.arange(conv.out_channels, 0, -1, dtype=torch.float32)

    try:
        pruned, report = prune(tiny(), channel_ratio=0.5, importance="test-first-channels", round_to=1)
        assert report["settings"]["importance"] == "test-first-channels"
        model = tiny()
        n_keep = pruned.model[0].conv.out_channels
        assert torch.equal(pruned.model[0].bn.weight, model.model[0].bn.weight[:n_keep])
    finally:
        _IMPORTANCE.pop("test-first-channels")


def test_importance_from_module_reference():
    mod = types.ModuleType("my_criteria")
    mod.gamma_squared = lambda conv, bn: bn.weight.detach() ** 2
    sys.modules["my_criteria"] = mod
    try:
        assert get_importance("my_criteria:gamma_squared") is mod.gamma_squared
        _, report = prune(tiny(), channel_ratio=0.3, importance="my_criteria:gamma_squared", round_to=1)
        assert report["after"]["params"] < report["before"]["params"]
    finally:
        del sys.modules["my_criteria"]


def test_bad_importance_output_is_rejected():
    from pruned_yolo.errors import ConfigError

    with pytest.raises(ConfigError, match="expected"):
        prune(tiny(), channel_ratio=0.3, importance=lambda conv, bn: torch.ones(3), round_to=1)


def _raw(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)[1]


def test_bias_compensation_recovers_constant_channels():
    """Pruned channels with gamma = 0 but beta != 0 output a constant; folding it into the consumers
    reproduces the gamma-zeroed model (exactly for 1x1 consumers, up to border effects for 3x3)."""
    model = tiny()
    pruner = Pruner(model, round_to=1)
    plan = pruner.plan(channel_ratio=0.4)
    reference = copy.deepcopy(model)  # pruned channels: gamma = 0, beta kept -> constant SiLU(beta)
    bns = bn_layers(reference)
    with torch.no_grad():
        for name, keep in pruner.mask(plan).items():
            bns[name].weight[~keep] = 0.0
    with_comp, info = pruner.apply(plan, bias_compensation=True)
    without, _ = Pruner(model, round_to=1).apply(plan)
    assert info["bias_compensation"]["channels"] > 0
    x = torch.rand(1, 3, 128, 128)
    ref = _raw(reference, x)
    err_with = max(float((a - b).abs().max()) for a, b in zip(ref, _raw(with_comp, x)))
    err_without = max(float((a - b).abs().max()) for a, b in zip(ref, _raw(without, x)))
    assert err_with < 0.5 * err_without
    # away from the border the zero padding of 3x3 consumers plays no role: exact there
    inner_with = float((ref[0] - _raw(with_comp, x)[0])[:, :, 4:-4, 4:-4].abs().max())
    inner_without = float((ref[0] - _raw(without, x)[0])[:, :, 4:-4, 4:-4].abs().max())
    assert inner_with < 1e-4 < 1e-2 < inner_without
