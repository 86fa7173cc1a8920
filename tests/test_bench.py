"""Latency benchmark: interleaving, statistics, both runtimes, JSON, errors."""

import json

import pytest

from pruned_yolo import save_checkpoint
from pruned_yolo.benchmark import Runner, Timing, benchmark_models, speedups
from pruned_yolo.cli.main import main
from pruned_yolo.export import export_onnx
from pruned_yolo.models import build_model

from .conftest import tiny_cfg


class Recorder(Runner):
    def __init__(self, name, log):
        super().__init__(name)
        self.log, self.shape = log, None

    def prepare(self, batch, h, w):
        self.shape = (batch, h, w)

    def run(self):
        self.log.append(self.name)


def test_interleaved_rounds_rotate():
    log = []
    models = {n: Recorder(n, log) for n in "abc"}
    timings = benchmark_models(models, imgsz=64, batch=2, warmup=2, runs=3)
    assert log[:6] == list("aabbcc")  # warm-up, model by model
    assert log[6:] == list("abcbcacab")  # then one run each per round, rotating
    assert all(len(t.times_ms) == 3 for t in timings.values())
    assert models["a"].shape == (2, 64, 64)


def test_back_to_back():
    log = []
    benchmark_models({n: Recorder(n, log) for n in "ab"}, warmup=0, runs=2, interleave=False)
    assert log == list("aabb")


def test_speedups():
    t = {"ref": Timing("ref", [10, 12, 14]), "fast": Timing("fast", [5, 6, 7])}
    r = speedups(t)
    assert r["ref"]["speedup"] == 1 and r["fast"]["speedup"] == 2 and r["fast"]["paired_speedup"] == 2
    assert t["ref"].p10_ms == pytest.approx(10.4) and t["ref"].p90_ms == pytest.approx(13.6)


@pytest.fixture
def two_ckpts(tmp_path):
    small = dict(tiny_cfg(), width_multiple=0.0625)
    paths = []
    for name, cfg in (("big", tiny_cfg()), ("small", small)):
        paths.append(save_checkpoint(build_model(cfg), tmp_path / f"{name}.safetensors"))
    return paths


def test_cli_bench_both_runtimes_json(two_ckpts, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--weights", str(two_ckpts[0]), "--compare", str(two_ckpts[1])]
    argv += ["--runtime", "torch", "onnxruntime", "--imgsz", "64", "--warmup", "1", "--runs", "3"]
    assert main(argv + ["--threads", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["runtime"] == ["torch", "onnxruntime"] and res["imgsz"] == 64 and res["threads"] == 1
    names = [m["name"] for m in res["models"]]
    assert names == ["big [torch]", "big [ort]", "small [torch]", "small [ort]"]
    for m in res["models"]:
        assert m["median_ms"] > 0 and m["p10_ms"] <= m["median_ms"] <= m["p90_ms"] and len(m["times_ms"]) == 3
        assert m["gflops"] > 0 and m["params"] > 0
    assert res["ratios"]["big [torch]"] == 1.0 and res["ratios"]["small [ort]"] > 0
    assert set(res["paired_ratios"]) == set(names)
    assert "speed-up" in capsys.readouterr().out


def test_cli_bench_onnx_file(two_ckpts, tmp_path):
    from pruned_yolo import load_model

    onnx_path = export_onnx(load_model(two_ckpts[1]), tmp_path / "small-exported.onnx", imgsz=64)
    out = tmp_path / "b.json"
    argv = ["bench", "--weights", str(two_ckpts[1]), "--compare", str(onnx_path), "--imgsz", "64"]
    assert main(argv + ["--runtime", "onnxruntime", "--warmup", "0", "--runs", "2", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["runtime"] == "onnxruntime" and [m["name"] for m in res["models"]] == ["small", "small-exported"]
    ckpt, exported = res["models"]
    assert exported["weights"] == str(onnx_path)
    assert exported["params"] == ckpt["params"] and exported["gflops"] == pytest.approx(ckpt["gflops"], abs=1e-3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--compare", "missing.safetensors"], "weights not found"),
        (["--runtime", "torch", "--half", "--device", "cpu"], "CUDA"),
        (["--runtime", "onnxruntime", "--imgsz", "50"], "multiple of the model stride"),
        (["--runs", "0"], "--runs: must be >= 1"),
    ],
)
def test_cli_bench_errors(extra, message, two_ckpts, capsys):
    assert main(["bench", "--weights", str(two_ckpts[0]), "--imgsz", "64", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:") and message in err[-1]


def test_cli_bench_onnx_needs_ort_and_matching_shape(two_ckpts, tmp_path, capsys):
    from pruned_yolo import load_model

    onnx_path = export_onnx(load_model(two_ckpts[0]), tmp_path / "big.onnx", imgsz=64)
    assert main(["bench", "--weights", str(onnx_path), "--runtime", "torch"]) == 2
    assert "runs only with --runtime onnxruntime" in capsys.readouterr().err
    assert main(["bench", "--weights", str(onnx_path), "--imgsz", "96", "--runs", "1"]) == 2
    assert "expects input [1, 3, 64, 64]" in capsys.readouterr().err
