"""The training loop end to end on a tiny model: outputs, callbacks, head replacement, bad data, CLI."""

from __future__ import annotations

import csv
import logging
import math

import pytest
import torch

from pruned_yolo import build_model, load_model, save_checkpoint
from pruned_yolo.checkpoint import read_header
from pruned_yolo.cli.main import main
from pruned_yolo.models import replace_detect_head
from pruned_yolo.training import Callback, TrainConfig, Trainer, load_hyp
from pruned_yolo.training.hooks import EVENTS

from .conftest import make_dataset, tiny_cfg
from .test_dataset import make_bad_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))


def _config(data, tmp_path, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        cfg=tiny_cfg(),
        epochs=2,
        imgsz=64,
        batch=2,
        nbs=4,
        project=str(tmp_path / "runs"),
        workers=0,
        threads=1,  # the test process imported torch with OpenMP busy-waiting: one thread avoids spinning
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


class Recorder(Callback):
    def __init__(self):
        self.events = []
        self.grads_at_after_backward = []
        self.grads_after_step = []

    def __getattribute__(self, name):
        if name in EVENTS:

            def record(trainer, _name=name):
                self.events.append(_name)
                if _name == "after_backward":
                    grads = [p.grad for p in trainer.net.parameters()]
                    self.grads_at_after_backward.append(all(g is not None for g in grads))
                    # a large push: clipping (after this event) must bound the update
                    for p in trainer.net.parameters():
                        p.grad.mul_(1e6)
                if _name == "on_optimizer_step":
                    self.grads_after_step.append(all(p.grad is None for p in trainer.net.parameters()))
                if _name == "on_epoch_end":
                    trainer.epoch_log["custom/column"] = trainer.epoch + 0.5

            return record
        return object.__getattribute__(self, name)


def test_train_end_to_end_outputs_and_callbacks(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=5, n_val=2)
    rec = Recorder()
    trainer = Trainer(_config(data, tmp_path), callbacks=[rec])
    before = None

    class Snapshot(Callback):
        def on_train_start(self, t):
            nonlocal before
            before = {k: v.clone() for k, v in t.net.state_dict().items()}

    trainer.callbacks.append(Snapshot())
    metrics = trainer.fit()
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(metrics)

    # 5 images, batch 2 -> 3 batches per epoch; nbs 4 -> accumulate 2 after warm-up;
    # the optimizer also steps on the last batch of each epoch
    ev = rec.events
    assert ev[0] == "on_train_start" and ev[-1] == "on_fit_end"
    assert ev.count("on_epoch_start") == ev.count("on_epoch_end") == ev.count("on_train_epoch_end") == 2
    assert ev.count("on_batch_start") == ev.count("on_loss") == ev.count("on_batch_end") == 6
    assert ev.count("after_backward") == ev.count("on_optimizer_step") == trainer.optimizer_steps
    assert 2 <= trainer.optimizer_steps <= 6
    epoch0 = ev[ev.index("on_epoch_start") : ev.index("on_epoch_end") + 1]
    assert epoch0[:3] == ["on_epoch_start", "on_batch_start", "on_loss"]
    assert epoch0[-2:] == ["on_train_epoch_end", "on_epoch_end"]
    i = ev.index("after_backward")
    assert ev[i + 1] == "on_optimizer_step" and ev[i - 1] == "on_loss"
    assert all(rec.grads_at_after_backward) and all(rec.grads_after_step)
    # gradients x1e6 in after_backward, yet clipping to norm 10 kept the weights sane
    after = trainer.net.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    deltas = [(after[k] - before[k]).abs().max().item() for k in before if before[k].dtype.is_floating_point]
    assert max(deltas) < 10

    run = trainer.save_dir
    for f in ("results.csv", "results.png", "args.json", "hyp.yaml"):
        assert (run / f).is_file(), f
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for col in ("train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
                "metrics/mAP50", "metrics/mAP50-95", "lr/weights", "lr/bn", "lr/biases", "custom/column"):  # fmt: skip
        assert col in rows[0], col
    assert float(rows[1]["custom/column"]) == 1.5

    for name in ("best", "last"):
        model = load_model(run / "weights" / f"{name}.safetensors")
        assert model.names == ["class0", "class1", "class2"]
        entry = model.meta["history"][-1]
        assert entry["kind"] == "train" and entry["epochs"] == 2 and entry["hyp"]["lr0"] == 0.01
        assert set(entry["metrics"]) == {"precision", "recall", "mAP50", "mAP50-95"}
    # last = EMA weights, not the raw model
    last = load_model(run / "weights" / "last.safetensors")
    ema = trainer.ema.ema.state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in last.state_dict().items())
    assert not list((run / "weights").glob(".*tmp"))


def test_replace_detect_head_keeps_the_rest():
    torch.manual_seed(0)
    m3 = build_model(tiny_cfg(3))
    m5 = replace_detect_head(m3, 5)
    assert m5.nc == 5 and m5.detect.m[0].out_channels == 3 * 10
    s3, s5 = m3.state_dict(), m5.state_dict()
    head = f"model.{len(m3.model) - 1}."
    for k, v in s3.items():
        if not k.startswith(head):
            assert torch.equal(v, s5[k])


def test_weights_with_other_nc_get_a_new_head(tmp_path, caplog):
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2, nc=2)
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_cfg(3)), tmp_path / "tiny3.safetensors")
    cfg = _config(data, tmp_path, cfg=None, weights=str(ckpt), epochs=1)
    with caplog.at_level(logging.INFO, logger="pruned_yolo"):
        Trainer(cfg).fit()
    assert any("new Detect head for 2 classes" in r.getMessage() for r in caplog.records)
    out = read_header(tmp_path / "runs" / "exp" / "weights" / "last.safetensors")
    assert out["arch"]["layers"][-1]["args"]["nc"] == 2 and out["names"] == ["class0", "class1"]


def test_bad_data_trains_to_the_end_and_reports_exactly_those_problems(tmp_path, caplog):
    data = make_bad_dataset(tmp_path / "bad")
    with caplog.at_level(logging.WARNING, logger="pruned_yolo"):
        trainer = Trainer(_config(data, tmp_path, epochs=2, batch=3))
        metrics = trainer.fit()
    assert metrics and (trainer.save_dir / "weights" / "last.safetensors").is_file()
    assert len(list(csv.DictReader((trainer.save_dir / "results.csv").open()))) == 2
    # exactly the 5 problems: 2 unreadable images, 3 bad label lines; the empty label
    # file is a background image, not a problem
    assert len(trainer.data_problems) == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    problem_lines = [m for m in warnings if m.startswith("WARNING ")]
    assert len(problem_lines) == 5
    for text in ("corrupt.jpg", "truncated.png", "class 3", "normalised", "5 columns"):
        assert sum(text in m for m in problem_lines) == 1, text
    assert "2 corrupt images, 3 bad label lines skipped" in warnings
    assert not any("empty" in m for m in problem_lines)
    assert len(trainer.dataset) == 6


def test_hyp_loading_and_errors(tmp_path):
    for name in ("scratch-low", "scratch-high", "finetune"):
        hyp = load_hyp(name)
        assert hyp["anchor_t"] == 4.0 and hyp["box"] == 0.05
    assert load_hyp("scratch-low")["momentum"] == 0.937 and load_hyp("scratch-low")["lr0"] == 0.01
    assert load_hyp("finetune")["lr0"] < load_hyp("scratch-low")["lr0"]
    assert load_hyp("scratch-high")["lrf"] == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr0: 0.01\n")
    with pytest.raises(Exception, match="missing"):
        load_hyp(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--cfg", "yolov5n", "--data", "missing.yaml"], "data YAML not found"),
        (["train", "--data", "{data}"], "give --cfg"),
        (["train", "--cfg", "yolov5n"], "--data is required"),
        (["train", "--cfg", "yolov5n", "--data", "{data}", "--hyp", "nope"], "neither a file nor a shipped hyp"),
        (["train", "--cfg", "yolov5n", "--data", "{data}", "--imgsz", "100"], "multiple of 32"),
        (["train", "--cfg", "yolov9z", "--data", "{data}", "--imgsz", "64"], "neither a file nor a shipped config"),
        (["train", "--weights", "nope.pt", "--data", "{data}", "--imgsz", "64"], "checkpoint not found"),
    ],
)
def test_train_cli_bad_input_is_one_error_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "ds", n_train=2, n_val=1)
    argv = [a.replace("{data}", str(data)) for a in argv]
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_train_cli_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    cfg = tmp_path / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny_cfg()))
    argv = ["train", "--cfg", str(cfg), "--data", str(data), "--epochs", "1", "--imgsz", "64", "--batch", "2",
            "--workers", "0", "--threads", "1", "--no-progress", "--cos-lr", "--hyp", "finetune",
            "--plots"]  # fmt: skip
    assert main(["-q", *argv]) == 0
    out = capsys.readouterr().out
    assert "final (EMA, fast AP)" in out
    run = tmp_path / "runs" / "train" / "exp"
    assert (run / "weights" / "best.safetensors").is_file() and (run / "train_batch0.jpg").is_file()


def test_nosave_noval_patience(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=3, n_val=2)
    trainer = Trainer(_config(data, tmp_path, epochs=2, nosave=True, noval=True))
    trainer.fit()
    files = sorted(p.name for p in (trainer.save_dir / "weights").iterdir())
    assert files == ["best.safetensors", "last.safetensors"]  # no resume state with --nosave
    rows = list(csv.DictReader((trainer.save_dir / "results.csv").open()))
    assert rows[0]["metrics/mAP50"] == "" and rows[1]["metrics/mAP50"] != ""  # validated at the end only

    class NeverBetter(Callback):
        def on_epoch_end(self, t):
            t.best_fitness = 1.0  # nothing can beat this: patience must stop the run

    trainer = Trainer(_config(data, tmp_path, epochs=5, patience=1, name="pat"), callbacks=[NeverBetter()])
    trainer.fit()
    assert len(trainer.history) < 5


def test_recalibrate_bn_averages_the_batches_and_restores_the_module():
    from pruned_yolo.utils.torch_utils import recalibrate_bn

    bn = torch.nn.BatchNorm2d(3, momentum=0.03).eval()
    bn.running_mean.fill_(5.0)
    batches = [torch.randn(4, 3, 8, 8) + 2.0, torch.randn(4, 3, 8, 8) - 1.0]
    assert recalibrate_bn(bn, iter(())) == 0 and torch.all(bn.running_mean == 5.0)  # no batch: unchanged
    assert recalibrate_bn(bn, batches) == 2
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert bn.momentum == 0.03 and not bn.training


def test_bn_recal_batches_re_estimates_the_ema_statistics(tmp_path):
    """Before each validation the EMA's BatchNorm statistics come from that many training batches only."""
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    with pytest.raises(Exception, match="bn-recal-batches"):
        _config(data, tmp_path, bn_recal_batches=-1)
    trainer = Trainer(_config(data, tmp_path, epochs=1, bn_recal_batches=1))
    trainer.fit()
    tracked = {int(m.num_batches_tracked) for m in trainer.ema.ema.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert tracked == {1}  # reset and re-estimated on one batch (training steps would have counted 2)
    assert all(m.momentum == 0.03 for m in trainer.ema.ema.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_run_sized_ema_averages_over_about_three_epochs():
    from pruned_yolo.training.ema import run_sized_ema

    decay, tau = run_sized_ema(32)  # 508 images at batch 16, a step per batch
    assert tau == 32 and decay == pytest.approx(1 - 1 / 96)
    assert 1 / (1 - decay) == pytest.approx(3 * 32)  # the average's horizon in steps
    coco_decay, coco_tau = run_sized_ema(1830)  # COCO at batch 16, nbs 64: about YOLOv5's setting
    assert coco_tau == 1830 and 0.9998 < coco_decay <= 0.9999
    assert run_sized_ema(100_000) == (0.9999, 2000.0)  # capped at YOLOv5's


def test_ema_plan_run_sizes_the_average_to_the_optimizer_steps(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=4, n_val=2)
    with pytest.raises(Exception, match="ema_plan"):
        _config(data, tmp_path, ema_plan="swa")
    trainer = Trainer(_config(data, tmp_path, epochs=1, ema_plan="run", noval=True))
    trainer.fit()  # 2 batches of 2, accumulated to nbs 4: one optimizer step per epoch after the warm-up
    assert (trainer.ema.decay_max, trainer.ema.tau) == (pytest.approx(1 - 1 / 3), 1.0)
    updates = trainer.ema.updates  # the warm-up steps every batch
    assert updates >= 1 and trainer.ema.decay() == pytest.approx((1 - 1 / 3) * (1 - math.exp(-updates)))
