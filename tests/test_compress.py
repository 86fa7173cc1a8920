"""Sparsity training (factor schedule, subgradient, soft mask), distillation and compress-to-budget."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from pruned_yolo.checkpoint import load_model, save_checkpoint
from pruned_yolo.cli.main import main
from pruned_yolo.compress import CompressConfig, compress
from pruned_yolo.compress.distill import distillation_loss
from pruned_yolo.compress.sparsity import (
    SparsityCallback,
    SparsityConfig,
    add_l1_subgradient,
    sparsity_factor,
    warmup_ramp,
)
from pruned_yolo.errors import ConfigError
from pruned_yolo.models import build_model
from pruned_yolo.pruning import floor_for_budget
from pruned_yolo.pruning.masks import bn_layers
from pruned_yolo.training import TrainConfig, Trainer
from pruned_yolo.utils.torch_utils import gflops

from .conftest import make_dataset, tiny_cfg


def test_cosine_factor_follows_the_rule():
    s, epochs = 0.1, 10
    assert sparsity_factor(s, 0, epochs) == pytest.approx(s)
    assert sparsity_factor(s, epochs, epochs) == pytest.approx(0.2 * s)  # the 0.2 floor
    assert sparsity_factor(s, 5, epochs) == pytest.approx(s * (0.2 + 0.8 * 0.5))
    values = [sparsity_factor(s, e, epochs) for e in range(epochs + 1)]
    assert all(a > b for a, b in zip(values, values[1:]))
    for e in range(epochs):
        expected = s * (0.2 + 0.8 * (1 + math.cos(math.pi * e / epochs)) / 2)
        assert sparsity_factor(s, e, epochs) == pytest.approx(expected)
    assert sparsity_factor(s, 7, epochs, "constant") == s
    assert [warmup_ramp(i, 4) for i in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_ramp(0, 0) == 1.0


def test_l1_subgradient_adds_s_sign_gamma(tiny_model):
    bns = list(bn_layers(tiny_model).values())
    with torch.no_grad():
        bns[0].weight[:2] = torch.tensor([-0.5, 0.3])
    for bn in bns:
        bn.weight.grad = torch.full_like(bn.weight, 0.25)
    add_l1_subgradient(tiny_model, 0.01)
    for bn in bns:
        assert torch.allclose(bn.weight.grad, 0.25 + 0.01 * torch.sign(bn.weight))
    assert bns[0].weight.grad[0].item() == pytest.approx(0.24)


def _fake_trainer(model, epoch: int, epochs: int = 10):
    ema = SimpleNamespace(ema=build_model(tiny_cfg()))
    ema.ema.load_state_dict(model.state_dict())
    return SimpleNamespace(net=model, ema=ema, epoch=epoch, epochs=epochs, is_main=False, ni=50, nw=100)


@pytest.mark.parametrize("mask, factor", [("soft", 0.1), ("hard", 0.0)])
def test_mask_every_period_but_never_at_epoch_0_on_net_and_ema(tiny_model, mask, factor):
    bn = next(iter(bn_layers(tiny_model).values()))
    with torch.no_grad():
        bn.weight[:3] = 1e-4  # far under 0.2 x mean |gamma|
        bn.bias[:3] = 0.5
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cb = SparsityCallback(SparsityConfig(0.01, mask=mask, mask_period=2))
    for epoch in (0, 1):  # epoch 0 never masks; epoch 1 is off-period
        trainer = _fake_trainer(tiny_model, epoch)
        cb.on_epoch_start(trainer)
        assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    trainer = _fake_trainer(tiny_model, 2)
    cb.on_epoch_start(trainer)
    for model in (trainer.net, trainer.ema.ema):
        b = next(iter(bn_layers(model).values()))
        assert torch.allclose(b.bias[:3], torch.full((3,), 0.5 * factor))
        assert torch.allclose(b.weight[:3], torch.full((3,), 1e-4 * factor))
        assert torch.equal(b.weight[3:], before[f"{_bn_name(tiny_model)}.weight"][3:])
    # the factor of the epoch, ramped in during warm-up
    assert cb.factor == pytest.approx(sparsity_factor(0.01, 2, 10))
    trainer.net.zero_grad()
    for b in bn_layers(trainer.net).values():
        b.weight.grad = torch.zeros_like(b.weight)
    cb.after_backward(trainer)  # ni 50 of nw 100: half the factor
    g = next(iter(bn_layers(trainer.net).values())).weight.grad
    assert torch.allclose(g, 0.5 * cb.factor * torch.sign(next(iter(bn_layers(trainer.net).values())).weight))


def _bn_name(model) -> str:
    return next(iter(bn_layers(model)))


def test_sparsity_config_rejects_bad_values():
    for kwargs in ({"s": -1}, {"s": 0.1, "schedule": "step"}, {"s": 0.1, "mask": "x"}, {"s": 0.1, "mask_period": 0}):
        with pytest.raises(ConfigError):
            SparsityConfig(**kwargs)


def test_distillation_gradient_vanishes_when_student_equals_teacher():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 3, s, s, 8) * 2 for s in (8, 4, 2)]
    student = [t.clone().requires_grad_(True) for t in teacher]
    loss, items = distillation_loss(student, teacher)
    loss.backward()
    assert set(items) == {"obj", "box", "cls"} and items["box"] == 0.0
    assert max(s.grad.abs().max().item() for s in student) < 1e-6
    # a different student gets pulled towards the teacher
    other = [(t + torch.randn_like(t)).requires_grad_(True) for t in teacher]
    loss2, items2 = distillation_loss(other, teacher)
    assert loss2.item() > loss.item()
    # the detection loss's gains weight the terms
    _, weighted = distillation_loss(other, teacher, gains={"box": 0.05, "obj": 2.0, "cls": 0.5})
    for k, g in (("box", 0.05), ("obj", 2.0), ("cls", 0.5)):
        assert weighted[k] == pytest.approx(items2[k] * g, rel=1e-5)


def _tiny_checkpoint(root):
    torch.manual_seed(0)
    return save_checkpoint(build_model(tiny_cfg()), root / "tiny.safetensors")


def test_sparsity_training_logs_gamma_stats_and_histograms(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    config = TrainConfig(
        data=str(data), weights=str(_tiny_checkpoint(tmp_path)), epochs=3, imgsz=64, batch=2, hyp="scratch-low",
        project=str(tmp_path / "runs"), name="sp", workers=0, noval=True, progress=False, plots=True,
    )  # fmt: skip
    Trainer(config, [SparsityCallback(SparsityConfig(0.05, mask_period=1), plots=True)]).fit()
    run = tmp_path / "runs" / "sp"
    header, *rows = (run / "results.csv").read_text().strip().splitlines()
    assert "sparsity/frac_below_thr" in header and "sparsity/gamma_q0.5" in header and len(rows) == 3
    hist = json.loads((run / "gamma_hist.json").read_text())
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert (run / "gamma_hist.png").is_file()


def test_compress_meets_the_budget_reports_and_resumes(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    weights = _tiny_checkpoint(tmp_path)
    config = CompressConfig(
        weights=str(weights), data=str(data), target_flops_ratio=0.5, iterations=2, sparsity_epochs=1,
        finetune_epochs=1, imgsz=64, batch=2, hyp="scratch-low", workers=0, project=str(tmp_path / "runs"),
        latency_runs=3, references=[str(weights)], distill=True, progress=False,
    )  # fmt: skip
    report = compress(config)
    run = tmp_path / "runs" / "exp"
    dense = report["dense"]
    assert len(report["rounds"]) == 2
    for r, entry in enumerate(report["rounds"], 1):
        budget = dense["gflops"] * 0.5 ** (r / 2)
        assert 0.98 * budget <= entry["gflops"] <= budget * 1.0001
        for key in ("params", "gflops", "latency_ms", "mAP50", "mAP50-95"):
            assert key in entry
        assert "mAP50-95" in entry["pruned"] and "mAP50-95" in entry["sparse"]
    final = load_model(run / "final.safetensors")
    assert gflops(final, 64) <= 0.5 * dense["gflops"] * 1.0001
    for f in ("report.json", "report.md", "report.png", "final.onnx", "state.json"):
        assert (run / f).is_file(), f
    assert json.loads((run / "report.json").read_text())["rounds"][1]["gflops"] == report["rounds"][1]["gflops"]

    # interrupted in round 2 fine-tuning: resume redoes only that phase and what follows
    state = json.loads((run / "state.json").read_text())
    floor = state["dense"]["per_layer_ratio"]  # the budget's floor over the dense widths, 0.5 of it per round
    assert floor == floor_for_budget(0.5)
    assert [e["budget"]["per_layer_ratio"] for e in state["rounds"]] == [round(floor**0.5, 4)] * 2
    state["done"] = [d for d in state["done"] if d not in ("round2/finetune", "round2/evaluate")]
    (run / "state.json").write_text(json.dumps(state))
    (run / "final.safetensors").unlink()
    round1 = (run / "round1" / "model.safetensors").stat().st_mtime_ns
    resumed = compress(None, resume_dir=run)
    assert (run / "round1" / "model.safetensors").stat().st_mtime_ns == round1
    assert (run / "final.safetensors").is_file()
    assert resumed["rounds"][1]["gflops"] == pytest.approx(report["rounds"][1]["gflops"])


def test_compress_cli_and_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    weights = _tiny_checkpoint(tmp_path)
    base = ["compress", "--weights", str(weights), "--data", str(data), "--imgsz", "64", "--batch", "2",
            "--workers", "0", "--no-progress", "--latency-runs", "0"]  # fmt: skip
    assert main(["-q", *base, "--target-flops-ratio", "1.5"]) == 2
    assert "target-flops-ratio" in capsys.readouterr().err
    assert main(["-q", *base]) == 2
    assert "exactly one of" in capsys.readouterr().err
    argv = [*base, "--target-params-ratio", "0.6", "--iterations", "1", "--sparsity-epochs", "2",
            "--finetune-epochs", "0", "--hyp", "scratch-low", "--json", "out.json", "--mask-target", "budget",
            "--mask-period", "1"]  # fmt: skip
    assert main(["-q", *argv]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["rounds"][0]["params"] <= 0.6 * out["dense"]["params"]
    state = json.loads((tmp_path / "runs" / "compress" / "exp" / "state.json").read_text())
    assert state["config"]["mask_target"] == "budget"


def test_train_cli_sparsity_flags_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    weights = _tiny_checkpoint(tmp_path)
    argv = ["train", "--weights", str(weights), "--data", str(data), "--epochs", "2", "--imgsz", "64", "--batch", "2",
            "--workers", "0", "--no-progress", "--noval", "--sparsity", "0.01", "--mask", "hard",
            "--mask-period", "1"]  # fmt: skip
    assert main(["-q", *argv]) == 0
    run = tmp_path / "runs" / "train" / "exp"
    header = (run / "results.csv").read_text().splitlines()[0]
    assert "sparsity/frac_below_thr" in header
    assert json.loads((run / "args.json").read_text())["callbacks"][0]["args"]["config"]["mask"] == "hard"
    assert main(["-q", "train", "--sparsity", "-1", "--weights", str(weights), "--data", str(data)]) == 2
    assert "--sparsity" in capsys.readouterr().err


def test_demo_runs_train_and_compress_end_to_end(tmp_path, capsys, monkeypatch):
    from pruned_yolo.cli import demo

    monkeypatch.setattr(demo, "DEMO_DATA", {**demo.DEMO_DATA, "n_train": 8, "n_val": 4, "size": 64})
    monkeypatch.setattr(demo, "DEMO_COMPRESS", {**demo.DEMO_COMPRESS, "sparsity_epochs": 1, "finetune_epochs": 1})
    monkeypatch.setattr(demo, "DEMO_COMPRESS", {**demo.DEMO_COMPRESS, "latency_runs": 2})
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
            "--no-progress", "--json", str(tmp_path / "demo.json")]  # fmt: skip
    assert main(["-q", *argv]) == 0
    printed = capsys.readouterr().out
    assert "demo: mAP50-95" in printed and "GFLOPs" in printed and "report" in printed
    result = json.loads((tmp_path / "demo.json").read_text())
    c = result["compress"]
    assert c["final"]["gflops"] <= 0.5 * c["dense"]["gflops"] * 1.0001
    assert c["final"]["latency_ms"] > 0 and (out / "compress" / "report.md").is_file()


def test_soft_mask_keep_stats_scales_the_eval_output_exactly():
    from pruned_yolo.pruning.masks import apply_soft_mask

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.01, 1.0, 0.02, 2.0]))
        bn.bias.copy_(torch.tensor([1.5, 0.1, -0.7, 0.3]))
        bn.running_mean.copy_(torch.tensor([3.0, 0.0, -2.0, 1.0]))
        bn.running_var.copy_(torch.tensor([0.5, 1.0, 2.0, 1.0]))
    model = torch.nn.Sequential(bn)
    x = torch.randn(2, 4, 3, 3)
    before = model(x)
    mask = {"0": torch.tensor([False, True, False, True])}
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    apply_soft_mask(model, mask, 0.1, scale_stats=False)
    after = model(x)
    assert torch.allclose(after[:, [0, 2]], 0.1 * before[:, [0, 2]], atol=1e-6)
    assert torch.equal(after[:, [1, 3]], before[:, [1, 3]])
    model.load_state_dict(kept)
    apply_soft_mask(model, mask, 0.1, scale_stats=True)  # the literal rule: not a scaling of the output
    assert not torch.allclose(model(x)[:, [0, 2]], 0.1 * before[:, [0, 2]], atol=1e-3)


@pytest.mark.parametrize("mask, factor", [("soft", 0.1), ("hard", 0.0)])
def test_budget_mask_takes_exactly_the_channels_the_round_prunes(tiny_model, mask, factor):
    from pruned_yolo.pruning import prune
    from pruned_yolo.pruning.pruner import equivalent_hard_mask

    budget = {"target_flops_ratio": 0.6, "importance": "bn-kernel", "round_to": 1, "imgsz": 64}
    planned, _, _ = equivalent_hard_mask(tiny_model, **budget)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cb = SparsityCallback(SparsityConfig(0.0, mask=mask, mask_period=1, mask_target="budget", budget=budget))
    trainer = _fake_trainer(tiny_model, 1)
    cb.on_epoch_start(trainer)
    n_planned = sum(int((~k).sum()) for k in planned.values())
    assert n_planned > 0
    for model in (trainer.net, trainer.ema.ema):
        for name, bn in bn_layers(model).items():
            off = ~planned[name]
            assert torch.allclose(bn.weight[off], before[f"{name}.weight"][off] * factor)
            assert torch.equal(bn.weight[~off], before[f"{name}.weight"][~off])
    if mask == "hard":  # pruning right after a hard budget mask changes nothing
        net = trainer.net.eval()
        x = torch.rand(1, 3, 64, 64)
        pruned, report = prune(net, target_flops_ratio=0.6, importance="bn-kernel", round_to=1, imgsz=64)
        assert report["after"]["gflops"] <= 0.6 * report["before"]["gflops"]
        assert torch.allclose(pruned.eval()(x)[0], net(x)[0], atol=1e-4)


def test_budget_mask_needs_a_budget():
    with pytest.raises(ConfigError, match="budget"):
        SparsityConfig(0.01, mask_target="budget")
    with pytest.raises(ConfigError, match="mask-target"):
        SparsityConfig(0.01, mask_target="x")
