"""The default compress recipe: the fading budget mask, train-or-resume, the accuracy guard, CLI defaults."""

from __future__ import annotations

import csv
from dataclasses import MISSING, fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pruned_yolo.checkpoint import load_model, save_checkpoint
from pruned_yolo.cli.main import build_parser
from pruned_yolo.compress import CompressConfig, Compressor, SparsityCallback, SparsityConfig, compress
from pruned_yolo.compress.pipeline import with_phase_lr
from pruned_yolo.compress.sparsity import fade_scale, gradual_fraction, partial_budget
from pruned_yolo.errors import ConfigError
from pruned_yolo.models import build_model
from pruned_yolo.pruning import bn_layers, equivalent_hard_mask, floor_for_budget, prune
from pruned_yolo.training import Callback, TrainConfig, Trainer, train_or_resume
from pruned_yolo.training.state import saved_epoch

from .conftest import make_dataset, tiny_cfg
from .latency_fakes import SIZE, FakeTimer

BUDGET = {"target_flops_ratio": 0.6, "importance": "bn-kernel", "round_to": 1, "imgsz": 64}


def test_fade_scale_goes_from_one_to_zero_at_the_end():
    assert fade_scale(0.0, 0.6) == 1.0
    assert fade_scale(0.3, 0.6) == pytest.approx(0.5)
    assert fade_scale(0.6, 0.6) == 0.0 and fade_scale(0.9, 0.6) == 0.0
    values = [fade_scale(p / 20, 0.6) for p in range(13)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_fade_needs_the_budget_target():
    with pytest.raises(ConfigError, match="budget"):
        SparsityConfig(0.0, mask="fade", mask_target="threshold")
    with pytest.raises(ConfigError, match="fade-end"):
        SparsityConfig(0.0, mask="fade", mask_target="budget", budget=BUDGET, fade_end=0)


def _fake_trainer(model, epoch: int, epochs: int, nb: int, ni: int):
    ema = SimpleNamespace(ema=build_model(tiny_cfg()))
    ema.ema.load_state_dict(model.state_dict())
    return SimpleNamespace(net=model, ema=ema, epoch=epoch, epochs=epochs, nb=nb, ni=ni, is_main=False)


def test_fade_scales_the_planned_channels_by_the_schedule(tiny_model):
    planned, _, _ = equivalent_hard_mask(tiny_model, **BUDGET)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    cb = SparsityCallback(SparsityConfig(0.0, mask="fade", mask_target="budget", budget=BUDGET, fade_end=0.5))
    trainer = _fake_trainer(tiny_model, epoch=0, epochs=4, nb=10, ni=0)
    cb.on_epoch_start(trainer)
    trainer.ni = 9  # after the 10th of 40 batches: progress 0.25 of a fade that ends at 0.5
    cb.on_optimizer_step(trainer)
    for model in (trainer.net, trainer.ema.ema):
        for name, bn in bn_layers(model).items():
            off = ~planned[name]
            for p in ("weight", "bias"):
                t = getattr(bn, p)
                assert torch.allclose(t[off], 0.5 * before[f"{name}.{p}"][off], atol=1e-7)
                assert torch.equal(t[~off], before[f"{name}.{p}"][~off])
            assert torch.equal(bn.running_var, before[f"{name}.running_var"])  # eval output scales exactly
    trainer.ni = 19  # progress 0.5: the planned channels are off
    cb.on_optimizer_step(trainer)
    for name, bn in bn_layers(trainer.net).items():
        assert not bn.weight[~planned[name]].any() and not bn.bias[~planned[name]].any()


def test_gradual_fraction_is_cubic_and_complete_at_the_end():
    assert gradual_fraction(0.0, 0.6) == 0.0
    assert gradual_fraction(0.3, 0.6) == pytest.approx(0.875)
    assert gradual_fraction(0.6, 0.6) == 1.0 and gradual_fraction(0.9, 0.6) == 1.0


def test_partial_budget_cuts_a_fraction_of_the_way_for_every_target_kind():
    assert partial_budget({"target_gflops": 2.0, "imgsz": 64}, 0.25, base_gflops=4.0) == {
        "target_gflops": 3.5, "imgsz": 64,
    }  # fmt: skip
    assert partial_budget(BUDGET, 0.5, 0.0)["target_flops_ratio"] == pytest.approx(0.8)
    assert partial_budget({"target_params_ratio": 0.4}, 1.0, 0.0) == {"target_params_ratio": pytest.approx(0.4)}


def _channels_off(model) -> int:
    return sum(int(((bn.weight == 0) & (bn.bias == 0)).sum()) for bn in bn_layers(model).values())


def test_gradual_switches_the_plan_off_a_growing_part_at_a_time(tiny_model):
    final, _, _ = equivalent_hard_mask(tiny_model, **BUDGET)
    n_final = sum(int((~k).sum()) for k in final.values())
    cb = SparsityCallback(SparsityConfig(0.0, mask="gradual", mask_target="budget", budget=BUDGET, fade_end=0.5))
    trainer = _fake_trainer(tiny_model, epoch=0, epochs=2, nb=8, ni=0)
    cb.on_train_start(trainer)
    cb.on_epoch_start(trainer)
    assert _channels_off(trainer.net) == 0  # progress 0: nothing planned yet
    counts = []
    for ni in range(8):  # one replan per batch (nb 8 // 8); the phase's cut is complete at batch 8 of 16
        trainer.ni = ni
        cb.on_optimizer_step(trainer)
        counts.append(_channels_off(trainer.net))
        assert _channels_off(trainer.ema.ema) == counts[-1]  # the EMA (the model pruned) follows
    assert 0 < counts[0] < counts[-1] and all(a <= b for a, b in zip(counts, counts[1:]))
    # at the end the plan is the round's: the pruning step (planned on the EMA) removes exactly it
    pruning_plan, _, _ = equivalent_hard_mask(trainer.ema.ema, **BUDGET)
    assert all(torch.equal(pruning_plan[k], cb.fade_plan[k]) for k in pruning_plan)
    assert abs(sum(int((~k).sum()) for k in cb.fade_plan.values()) - n_final) <= 0.05 * n_final
    with torch.no_grad():  # an optimizer step that revives an off channel is undone at the next one
        for bn in bn_layers(trainer.net).values():
            bn.weight.add_(0.5)
    cb.on_optimizer_step(trainer)
    for name, bn in bn_layers(trainer.net).items():
        assert not bn.weight[~cb.fade_plan[name]].any() and not bn.bias[~cb.fade_plan[name]].any()


@pytest.mark.parametrize("mask", ["fade", "gradual"])
def test_a_fade_phase_ends_with_exactly_the_pruned_channels_off(tmp_path, mask):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    torch.manual_seed(0)
    weights = save_checkpoint(build_model(tiny_cfg()), tmp_path / "tiny.safetensors")
    cfg = TrainConfig(
        data=str(data), weights=str(weights), epochs=2, imgsz=64, batch=2, workers=0, hyp="scratch-low",
        project=str(tmp_path), name="fade", progress=False, noval=True,
    )  # fmt: skip
    sp = SparsityConfig(0.0, mask=mask, mask_target="budget", budget=BUDGET, fade_end=0.75)
    last = train_or_resume(cfg, [SparsityCallback(sp)])
    model = load_model(last).eval()
    planned, _, _ = equivalent_hard_mask(model, **BUDGET)
    n_off = sum(int((~k).sum()) for k in planned.values())
    assert n_off > 0
    for name, bn in bn_layers(model).items():
        assert not bn.weight[~planned[name]].any() and not bn.bias[~planned[name]].any()
    pruned, _ = prune(model, **BUDGET)  # removing silent channels changes nothing
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(pruned.eval()(x)[0], model(x)[0], atol=1e-4)


def test_train_or_resume_trusts_the_saved_state_not_results_csv(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    cfg = TrainConfig(
        data=str(data), cfg=tiny_cfg(), epochs=2, imgsz=64, batch=2, workers=0, project=str(tmp_path),
        name="run", progress=False, noval=True,
    )  # fmt: skip
    run = tmp_path / "run"
    # epoch 1 completes, epoch 2 is killed before its checkpoints
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, [_KillAt(2)]).fit()
    assert saved_epoch(run / "weights" / "last_state.safetensors") == 1
    with open(run / "results.csv", "a", newline="") as f:  # as if row 2 had been written
        csv.writer(f).writerow(["2"])
    last = train_or_resume(cfg)
    assert saved_epoch(run / "weights" / "last_state.safetensors") == 2
    mtime = last.stat().st_mtime_ns
    assert train_or_resume(cfg) == last and last.stat().st_mtime_ns == mtime  # finished: not trained again


class _KillAt(Callback):
    """Interrupts training at the end of epoch `epoch` (1-based), before it is saved."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer) -> None:
        if trainer.epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_accuracy_guard_keeps_the_last_round_within_the_limit(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    torch.manual_seed(0)
    weights = save_checkpoint(build_model(tiny_cfg()), tmp_path / "tiny.safetensors")
    scores = {"dense": 0.50, "round 1 result": 0.495, "round 2 result": 0.40, "round 3 result": 0.45}

    def fake_evaluate(self, model, label):
        v = scores.get(label, 0.1)
        return {"mAP50": v, "mAP50-95": v, "precision": v, "recall": v}

    monkeypatch.setattr(Compressor, "evaluate", fake_evaluate)
    config = CompressConfig(
        weights=str(weights), data=str(data), target_flops_ratio=0.5, iterations=3, sparsity_epochs=0,
        finetune_epochs=0, imgsz=64, batch=2, workers=0, project=str(tmp_path / "runs"), latency_runs=0,
        progress=False, max_map_drop=0.01,
    )  # fmt: skip
    report = compress(config)
    assert [r["round"] for r in report["rounds"]] == [1, 2]  # round 3 never ran
    assert report["guard"]["stopped_at_round"] == 2 and report["guard"]["met"]
    assert report["final"]["round"] == 1
    run = tmp_path / "runs" / "exp"
    final, round1 = load_model(run / "final.safetensors"), load_model(run / "round1" / "model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), round1.state_dict().values()))
    assert "Accuracy guard" in (run / "report.md").read_text()
    assert compress(None, resume_dir=run)["final"]["round"] == 1  # a resumed run stops at the same place


def test_compress_cli_defaults_are_the_library_defaults():
    args = build_parser().parse_args(["compress", "--weights", "w", "--data", "d", "--target-flops-ratio", "0.5"])
    for f in fields(CompressConfig):
        if (
            f.default is not MISSING
            and hasattr(args, f.name)
            and f.name not in ("weights", "data", "target_flops_ratio")
        ):
            assert getattr(args, f.name) == f.default, f.name
    assert args.distill is True and args.mask == "fade" and args.hyp == "scratch-low"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"references": ["nope.pt"]}, "--reference"),
        ({"teacher": "nope.pt"}, "--teacher"),
        ({"layers": 100}, "--layers"),
        ({"hyp": "no-such-hyp"}, "hyp"),
        ({"data": "missing.yaml"}, "missing.yaml"),
    ],
)
def test_compress_checks_every_input_before_any_work(tmp_path, monkeypatch, override, message):
    from pruned_yolo.errors import PrunedYoloError

    data = make_dataset(tmp_path / "ds", n_train=2, n_val=1)
    weights = save_checkpoint(build_model(tiny_cfg()), tmp_path / "tiny.safetensors")

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr(Compressor, "evaluate", no_work)
    settings = dict(weights=str(weights), data=str(data), target_flops_ratio=0.5, imgsz=64, batch=2,
                    project=str(tmp_path / "runs"), progress=False)  # fmt: skip
    with pytest.raises(PrunedYoloError, match=message):
        compress(CompressConfig(**{**settings, **override}))


@pytest.mark.parametrize(
    "override",
    [{"batch": 0}, {"nbs": 0}, {"imgsz": 100}, {"bn_lr_mult": -5}, {"bn_recal": -1}, {"distill_weight": -1},
     {"target_gflops": float("nan"), "target_flops_ratio": None}, {"max_map_drop": 5}, {"layers": -1},
     {"per_layer_ratio": 1.5}, {"per_layer_ratio": -0.1}, {"finetune_lr0": 0}, {"finetune_lr0": float("inf")},
     {"sparsity_lr0": -1e-3}, {"sparsity_lr0": float("nan")},
     {"finetune_ema": "swa"}, {"sparsity_epochs": -1}, {"finetune_epochs": -2}],
)  # fmt: skip
def test_compress_config_rejects_out_of_range_values_naming_the_flag(override):
    with pytest.raises(ConfigError, match="^--"):
        CompressConfig(**{"weights": "w", "data": "d", "target_flops_ratio": 0.5, **override})


def test_per_layer_ratio_is_over_the_dense_widths_and_spread_over_the_rounds():
    # each round's floor is relative to the widths it starts from: 0.5 x 0.5 = the 0.25 asked for
    config = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, iterations=2, per_layer_ratio=0.25)
    dense = {"gflops": 4.0, "params": 1000}
    assert [config.prune_kwargs(dense, r)["per_layer_ratio"] for r in (1, 2)] == [0.5, 0.5]
    assert config.sparsity_config(config.prune_kwargs(dense, 1)).budget["per_layer_ratio"] == 0.5
    one_round = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, per_layer_ratio=0.25)
    assert one_round.prune_kwargs(dense, 1)["per_layer_ratio"] == 0.25


@pytest.mark.parametrize(
    "target, fraction",
    [({"target_flops_ratio": 0.5}, 0.5), ({"target_flops_ratio": 0.26}, 0.26), ({"target_gflops": 1.4}, 0.35),
     ({"target_params_ratio": 0.3}, 0.3)],
)  # fmt: skip
def test_default_floor_follows_the_budget(target, fraction):
    config = CompressConfig(weights="w", data="d", **target)
    dense = {"gflops": 4.0, "params": 1000}
    assert config.per_layer_ratio is None
    assert config.prune_kwargs(dense, 1)["per_layer_ratio"] == floor_for_budget(fraction)


def test_default_floor_is_the_runs_fitted_floor_and_a_latency_targets_is_its_plans(tmp_path):
    config = CompressConfig(weights="w", data="d", target_latency_ms=5.0, iterations=2, project=str(tmp_path))
    latency_budget = {"gflops": 1.0, "per_layer_ratio": 0.36}
    compressor = Compressor(config)
    compressor.state["dense"] = {"gflops": 4.0, "params": 1000, "latency_budget": latency_budget}
    dense = dict(compressor.state["dense"], per_layer_ratio=compressor.run_floor(dense_model=None))
    assert dense["per_layer_ratio"] == 0.36  # the floor the latency plan was made with
    assert config.prune_kwargs(dense, 1)["per_layer_ratio"] == 0.6  # sqrt(0.36) in each of 2 rounds
    assert config.prune_kwargs(dense, 2)["target_gflops"] == pytest.approx(1.0)


def test_params_target_of_a_later_round_is_relative_to_the_model_it_prunes():
    config = CompressConfig(weights="w", data="d", target_params_ratio=0.25, iterations=2)
    dense = {"gflops": 4.0, "params": 1000}
    assert config.prune_kwargs(dense, 1)["target_params_ratio"] == pytest.approx(0.5)
    # round 1 ended at 480 params (within the 2% window under 500): round 2 must reach 250 of the dense 1000
    assert config.prune_kwargs(dense, 2, current_params=480)["target_params_ratio"] == pytest.approx(250 / 480)


def test_python_resume_rebuilds_registered_callbacks(tmp_path):
    from pruned_yolo.compress import DistillationCallback

    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    torch.manual_seed(0)
    weights = save_checkpoint(build_model(tiny_cfg()), tmp_path / "tiny.safetensors")
    sp = SparsityConfig(0.01, mask="fade", mask_target="budget", budget=BUDGET, fade_end=0.5)

    def config(name):
        return TrainConfig(
            data=str(data), weights=str(weights), epochs=2, imgsz=64, batch=2, workers=0, hyp="scratch-low",
            project=str(tmp_path), name=name, progress=False, noval=True,
        )  # fmt: skip

    def callbacks():
        return [SparsityCallback(sp), DistillationCallback(str(weights), 0.5)]

    Trainer(config("whole"), callbacks()).fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(config("cut"), [*callbacks(), _KillAt(2)]).fit()
    resumed = Trainer.resume(tmp_path / "cut")  # no callbacks given: rebuilt from the run's config
    kinds = [type(cb) for cb in resumed.callbacks.callbacks]
    assert kinds == [SparsityCallback, DistillationCallback]
    assert resumed.callbacks.callbacks[0].config == sp
    assert resumed.callbacks.callbacks[1].teacher_path == str(weights)
    resumed.fit()
    a = load_model(tmp_path / "whole" / "weights" / "last.safetensors").state_dict()
    b = load_model(tmp_path / "cut" / "weights" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the resumed run is the uninterrupted one


def untrained_compress(tmp_path, model=None, **settings) -> CompressConfig:
    """A compress job without training epochs on a tiny model and 3 images: the report's sections."""
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    if model is None:
        torch.manual_seed(0)
        model = build_model(tiny_cfg())
    weights = save_checkpoint(model, tmp_path / "tiny.safetensors")
    base = dict(
        weights=str(weights), data=str(data), sparsity_epochs=0, finetune_epochs=0, imgsz=64, batch=2, workers=0,
        project=str(tmp_path / "runs"), latency_runs=2, progress=False,
    )  # fmt: skip
    return CompressConfig(**{**base, **settings})


def test_compress_int8_adds_a_scored_int8_export(tmp_path):
    config = untrained_compress(tmp_path, target_flops_ratio=0.6, int8=True)
    report = compress(config)
    int8 = report["final"]["int8"]
    assert int8["onnx"].endswith("final_int8.onnx") and (tmp_path / "runs" / "exp" / "final_int8.onnx").is_file()
    for key in ("mAP50", "mAP50-95", "latency_ms"):
        assert key in int8 and key in int8["float32"]
    assert "INT8" in (tmp_path / "runs" / "exp" / "report.md").read_text()


def test_compress_parity_section(tmp_path):
    """--parity: the dense and final models in PyTorch, ORT float32 and ORT INT8, in the report."""
    config = untrained_compress(tmp_path, target_flops_ratio=0.6, parity=True)
    report = compress(config)
    rows = report["parity"]["rows"]
    assert len(rows) == 6 and {(r["runtime"], r["precision"]) for r in rows} == {
        ("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")
    }  # fmt: skip
    assert len({r["weights"] for r in rows}) == 2  # the final and the dense model
    ort = [r for r in rows if r["runtime"] == "onnxruntime" and r["precision"] == "fp32"]
    assert all(r["max_box_diff"] < 1e-3 for r in ort)  # ORT float32 agrees with PyTorch
    assert "## Parity" in (tmp_path / "runs" / "exp" / "report.md").read_text()


def test_compress_to_a_latency_target(tmp_path, monkeypatch):
    """--target-latency-ms: planned once as a GFLOPs budget on the dense model, final timed again.

    The planner times with a deterministic fake (real timings of a tiny model differ by 20% run to run,
    which could put any target above the dense latency or below the reachable floor); the final model is
    timed with the real runtime, and the verdict must agree with that measurement."""
    import pruned_yolo.pruning.latency as latency

    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))
    timer = FakeTimer()
    monkeypatch.setattr(latency, "make_timer", lambda runtime, threads=None, **kw: timer)
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    target = 0.6 * timer.model_ms(model.eval())
    config = untrained_compress(tmp_path, model, target_latency_ms=target, imgsz=SIZE, round_to=1, latency_runs=3)
    report = compress(config)
    lt = report["latency_target"]
    assert lt["target_ms"] == target and lt["dense_ms"] == pytest.approx(target / 0.6)
    assert 0.9 * target <= lt["planned_ms"] <= target  # the planner's window, on the fake timer
    assert lt["gflops"] < report["dense"]["gflops"]
    assert report["final"]["gflops"] <= lt["gflops"] * 1.0001  # the run pruned to the planned budget
    assert lt["measured_ms"] == report["final"]["latency_ms"] and lt["met"] == (lt["measured_ms"] <= lt["target_ms"])
    assert "Latency target" in (tmp_path / "runs" / "exp" / "report.md").read_text()
    planner_calls = len(timer.kinds)
    resumed = compress(None, resume_dir=tmp_path / "runs" / "exp")  # the budget is kept, not planned again
    assert resumed["latency_target"]["gflops"] == lt["gflops"] and len(timer.kinds) == planner_calls


def test_gentle_lr_plan_warms_up_without_the_bias_boost():
    """lr_plan gentle: every phase warms up (and decays) as per-phase, the biases from lr 0."""
    cfg = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, iterations=2, lr_plan="gentle")
    plan = [cfg.phase_lr(r, phase) for r in (1, 2) for phase in ("sparsity", "finetune")]
    assert plan == [{"warmup_bias_lr": 0.0}] * 4


def test_continuous_lr_plan_warms_up_once_and_decays_once():
    """lr_plan continuous: only the first phase warms up, only the last fine-tuning decays."""
    cfg = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, iterations=2, lr_plan="continuous")
    phases = [(r, phase) for r in (1, 2) for phase in ("sparsity", "finetune")]
    plan = [cfg.phase_lr(r, phase) for r, phase in phases]
    assert plan == [
        {"lrf": 1.0},
        {"warmup_epochs": 0.0, "lrf": 1.0},
        {"warmup_epochs": 0.0, "lrf": 1.0},
        {"warmup_epochs": 0.0},
    ]
    no_sparsity = CompressConfig(
        weights="w", data="d", target_flops_ratio=0.5, sparsity_epochs=0, lr_plan="continuous"
    )  # fmt: skip
    assert no_sparsity.phase_lr(1, "finetune") == {}  # the first phase keeps its warm-up
    per_phase = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, lr_plan="per-phase")
    assert per_phase.phase_lr(1, "finetune") == {}
    with pytest.raises(ConfigError):
        CompressConfig(weights="w", data="d", target_flops_ratio=0.5, lr_plan="cyclic")


def _record_phase_configs(monkeypatch) -> dict:
    """Replace training by a stub that records each phase's TrainConfig and saves its input as its result."""
    import pruned_yolo.training as training

    seen = {}

    def fake_train(cfg, callbacks):
        seen[cfg.name] = cfg
        out = Path(cfg.project) / cfg.name / "weights" / "last.safetensors"
        out.parent.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(load_model(cfg.weights), out)

    monkeypatch.setattr(training, "train_or_resume", fake_train)
    return seen


def test_bn_recal_reaches_every_training_phase(tmp_path, monkeypatch):
    """--bn-recal N: the sparsity and the fine-tuning phase both re-estimate BatchNorm statistics."""
    seen = _record_phase_configs(monkeypatch)
    settings = {"sparsity_epochs": 1, "finetune_epochs": 1, "bn_recal": 3, "latency_runs": 0}
    config = untrained_compress(tmp_path, target_flops_ratio=0.5, **settings)
    compress(config)
    assert {name: cfg.bn_recal_batches for name, cfg in seen.items()} == {"sparsity": 3, "finetune": 3}


def test_each_phase_lr0_reaches_only_its_phase_under_every_lr_plan():
    for plan in ("per-phase", "gentle", "continuous"):
        cfg = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, lr_plan=plan, finetune_lr0=0.002)
        assert cfg.phase_lr(1, "finetune")["lr0"] == 0.002
        assert "lr0" not in cfg.phase_lr(1, "sparsity")
        cfg = CompressConfig(weights="w", data="d", target_flops_ratio=0.5, lr_plan=plan, sparsity_lr0=0.003)
        assert cfg.phase_lr(1, "sparsity")["lr0"] == 0.003
        assert "lr0" not in cfg.phase_lr(1, "finetune")
    default = CompressConfig(weights="w", data="d", target_flops_ratio=0.5)
    assert default.phase_lr(1, "finetune") == default.phase_lr(1, "sparsity") == {}


def test_finetune_ema_and_lr0_reach_the_fine_tuning_phase_only(tmp_path, monkeypatch):
    seen = _record_phase_configs(monkeypatch)
    settings = {"sparsity_epochs": 1, "finetune_epochs": 1, "latency_runs": 0}
    config = untrained_compress(tmp_path, target_flops_ratio=0.5, finetune_ema="run", finetune_lr0=0.003, **settings)
    compress(config)
    phases = {name: (cfg.ema_plan, cfg.hyp["lr0"], cfg.hyp["warmup_bias_lr"]) for name, cfg in seen.items()}
    # the biases' warm-up starts at ten times the phase's lr0, as the hyp's (0.1 at 0.01)
    assert phases == {"sparsity": ("fixed", 0.01, 0.1), "finetune": ("run", 0.003, pytest.approx(0.03))}


def test_a_phase_lr0_scales_the_bias_warm_up_unless_the_plan_sets_it():
    hyp = {"lr0": 0.01, "warmup_bias_lr": 0.1, "lrf": 0.01}
    assert with_phase_lr(hyp, {"lr0": 0.002}) == {"lr0": 0.002, "warmup_bias_lr": pytest.approx(0.02), "lrf": 0.01}
    assert with_phase_lr(hyp, {"lr0": 0.002, "warmup_bias_lr": 0.0})["warmup_bias_lr"] == 0.0
    assert with_phase_lr(hyp, {}) == hyp
