"""Does the channel multiple (`--round-to`) change ONNX Runtime speed at the same GFLOPs?

Prunes the HIT-UAV dense model (`yolov5s_hituav320.safetensors`, no training: latency depends
on the widths, not on the weights) to 50% of its GFLOPs and to yolov5n's GFLOPs at 320 px, with
each `--round-to`, and times every model interleaved with the dense one in ONNX Runtime (batch
1, float32), for each thread count and trial. ONNX Runtime's x86 kernels work on blocks of 8
(AVX2) or 16 (AVX-512) channels: a width that is not a multiple of the block is padded.

    .venv/bin/python benchmarks/round_to.py [--round-to 8 16] [--threads 2 1] [--runs 200] [--trials 2]

Writes benchmarks/results/round_to.json and .md. Needs a quiet machine (pause training).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import SHARED, machine, markdown_table, write_results

from pruned_yolo import load_model, save_checkpoint
from pruned_yolo.benchmark import benchmark_models, make_runner, speedups
from pruned_yolo.models import build_model
from pruned_yolo.pruning import prune
from pruned_yolo.utils.torch_utils import count_params, gflops

DENSE = SHARED / "weights" / "yolov5s_hituav320.safetensors"
IMGSZ = 320


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--round-to", type=int, nargs="+", default=[8, 16], help="channel multiples to compare")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="ONNX Runtime thread counts")
    p.add_argument("--runs", type=int, default=200, help="timed runs per model and trial")
    p.add_argument("--trials", type=int, default=2, help="interleaved timing runs per thread count")
    return p.parse_args()


def pruned_models(round_tos: list[int], workdir: Path) -> list[dict]:
    """One checkpoint per (budget, round_to), saved under `workdir`."""
    dense = load_model(DENSE)
    nano_gflops = gflops(build_model("yolov5n", nc=len(dense.names)), IMGSZ)
    budgets = {"50%": {"target_flops_ratio": 0.5}, "yolov5n": {"target_gflops": nano_gflops}}
    models = [{"name": "dense", "budget": "-", "round_to": None, "path": DENSE}]
    for budget, target in budgets.items():
        for r in round_tos:
            model, _ = prune(load_model(DENSE), importance="bn-kernel", imgsz=IMGSZ, round_to=r, **target)
            path = workdir / f"{budget.rstrip('%')}_r{r}.safetensors"  # file stems name the ONNX exports
            save_checkpoint(model, path)
            models.append({"name": f"{budget} r{r}", "budget": budget, "round_to": r, "path": path,
                           "gflops": round(gflops(model, IMGSZ), 3), "params": count_params(model)})  # fmt: skip
    models[0].update(gflops=round(gflops(dense, IMGSZ), 3), params=count_params(dense))
    return models


def time_models(models: list[dict], threads: int, runs: int, workdir: Path) -> dict[str, float]:
    """Speed-up over the dense model (ratio of medians) of every model, one interleaved run."""
    runners = {m["name"]: make_runner(m["path"], "onnxruntime", IMGSZ, 1, threads, name=m["path"].stem, workdir=workdir)
               for m in models}  # fmt: skip
    timings = benchmark_models(runners, IMGSZ, 1, 10, runs)
    return {name: r["speedup"] for name, r in speedups(timings, "dense").items()} | {
        f"{name} ms": t.median_ms for name, t in timings.items()
    }


def main() -> None:
    opt = parse_args()
    with tempfile.TemporaryDirectory(prefix="round-to-") as tmp:
        workdir = Path(tmp)
        models = pruned_models(opt.round_to, workdir)
        for threads in opt.threads:
            trials = [time_models(models, threads, opt.runs, workdir) for _ in range(opt.trials)]
            for m in models:
                m[f"speedup_t{threads}"] = [round(t[m["name"]], 3) for t in trials]
                m[f"ms_t{threads}"] = [round(t[f"{m['name']} ms"], 2) for t in trials]
                m[f"median_speedup_t{threads}"] = round(statistics.median(m[f"speedup_t{threads}"]), 3)
    for m in models:
        m["path"] = m["path"].name
    doc = {"dense": DENSE.name, "imgsz": IMGSZ, "runs": opt.runs, "trials": opt.trials, "machine": machine(),
           "models": models}  # fmt: skip
    columns = [("model", "name", "{}"), ("GFLOPs", "gflops", "{:.2f}"), ("params", "params", "{:,}")]
    for threads in opt.threads:
        columns.append((f"speed-up, {threads} thread(s)", f"median_speedup_t{threads}", "{:.2f}x"))
    md = [
        "# Channel multiple (`--round-to`) and ONNX Runtime speed",
        "",
        f"`{DENSE.name}` pruned without training (bn-kernel) at {IMGSZ} px; ONNX Runtime float32, batch 1, "
        f"every model interleaved with the dense one, {opt.runs} runs per trial, speed-up = dense median / "
        f"model median, median over {opt.trials} trials (per-trial figures in the JSON). "
        f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores']} cores.",
        "",
        f"Command: `.venv/bin/python benchmarks/round_to.py --round-to {' '.join(map(str, opt.round_to))} "
        f"--threads {' '.join(map(str, opt.threads))} --runs {opt.runs} --trials {opt.trials}`.",
        "",
        *markdown_table(models, columns),
    ]
    write_results("round_to", doc, md)


if __name__ == "__main__":
    main()
