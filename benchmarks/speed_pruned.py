"""Speed of pruned YOLOv5s in ONNX Runtime: 25/50/75% FLOPs cuts, round-to 8 vs 1.

    .venv/bin/python benchmarks/speed_pruned.py [--runs 100] [--trials 3] [--threads 2 1]

Runs the commands a user would: `pruned-yolo prune` (yolov5s v6.0 to 75%, 50% and 25% of its
GFLOPs with --round-to 8, and 50% with --round-to 1), `pruned-yolo export` for each (ONNX
checker and the ONNX Runtime vs torch comparison), then `pruned-yolo bench` on those five .onnx
files interleaved in ONNX Runtime (batch 1, 640, medians), --trials times for each thread
count; then the same checkpoints on torch (--torch-runs runs) and a dense torch vs ONNX
Runtime baseline, for each thread count. Writes benchmarks/results/speed_pruned.json and .md.

Pruning starts from the dense official weights: latency depends on the widths only, not on
the weight values, so no sparsity training is needed for these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, RUNS, SHARED, machine, write_results

DENSE = SHARED / "weights" / "yolov5s_v6.0.pt"
WORK = RUNS / "speed_pruned"
CLI = [sys.executable, "-m", "pruned_yolo"]
# (name, fraction of the dense GFLOPs kept, round_to)
VARIANTS = [
    ("yolov5s-keep75-r8", 0.75, 8),
    ("yolov5s-keep50-r8", 0.50, 8),
    ("yolov5s-keep25-r8", 0.25, 8),
    ("yolov5s-keep50-r1", 0.50, 1),
]
TARGET_SPEEDUP = 1.5  # at <= 50% of the dense GFLOPs


def pretty(args: list[str]) -> str:
    text = "pruned-yolo " + " ".join(shlex.quote(str(a)) for a in args)
    return text.replace(str(SHARED), "../shared").replace(str(ROOT) + "/", "")


def run(args: list[str], log: list[dict]) -> str:
    t = time.perf_counter()
    la = loadavg()
    proc = subprocess.run(CLI + args, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"failed: {pretty(args)}\n{proc.stdout}\n{proc.stderr}")
    log.append({"command": pretty(args), "wall_s": round(time.perf_counter() - t, 1), "loadavg_before": la})
    print(f"[{log[-1]['wall_s']:>6.1f}s] {log[-1]['command']}", flush=True)
    return proc.stdout


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def bench(weights: list, runtime: list[str], threads: int, runs: int, warmup: int, js: Path, log) -> dict:
    args = ["bench", "--weights", str(weights[0])]
    if len(weights) > 1:
        args += ["--compare", *map(str, weights[1:])]
    args += ["--runtime", *runtime, "--imgsz", "640", "--batch", "1", "--threads", str(threads)]
    args += ["--warmup", str(warmup), "--runs", str(runs), "--json", str(js)]
    run(args, log)
    return json.loads(js.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--torch-runs", type=int, default=40)
    opt = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    conditions = {"loadavg_start": loadavg()}

    # 1. prune and export (each export checks the ONNX file and compares ORT with torch)
    models, exports = [], []
    for name, keep, round_to in VARIANTS:
        ckpt, rep = WORK / f"{name}.safetensors", WORK / f"{name}.prune.json"
        run(["prune", "--weights", str(DENSE), "--target-flops-ratio", str(keep), "--round-to", str(round_to)]
            + ["--out", str(ckpt), "--json", str(rep)], log)  # fmt: skip
        r = json.loads(rep.read_text())
        models.append({"name": name, "keep_flops": keep, "round_to": round_to, "weights": str(ckpt),
                       "gflops": r["after"]["gflops"], "params": r["after"]["params"]})  # fmt: skip
    checkpoints = [DENSE] + [Path(m["weights"]) for m in models]
    onnx_files = [WORK / f"{p.stem}.onnx" for p in checkpoints]
    for path, onnx in zip(checkpoints, onnx_files):
        out = run(["export", "--weights", str(path), "--imgsz", "640", "--out", str(onnx)], log)
        diff = re.search(r"max \|ORT - torch\| ([0-9.e+-]+).*boxes in pixels ([0-9.e+-]+)", out)
        exports.append({"model": path.stem, "max_abs_diff": float(diff.group(1)),
                        "max_abs_diff_boxes_px": float(diff.group(2)), "output": out.strip()})  # fmt: skip

    # 2. ONNX Runtime: the five .onnx files interleaved, --trials times per thread count
    trials = {}
    for threads in opt.threads:
        trials[threads] = [
            bench(onnx_files, ["onnxruntime"], threads, opt.runs, opt.warmup, WORK / f"ort_t{threads}_{t}.json", log)
            for t in range(opt.trials)
        ]
    # 3. the same checkpoints on torch, and the dense torch vs ORT baseline, per thread count
    t0 = opt.threads[0]
    torch_res, baseline = {}, {}
    for t in opt.threads:
        torch_res[t] = bench(checkpoints, ["torch"], t, opt.torch_runs, opt.warmup, WORK / f"torch_t{t}.json", log)
        baseline[t] = bench(
            [DENSE], ["torch", "onnxruntime"], t, opt.torch_runs, opt.warmup, WORK / f"base_t{t}.json", log
        )
    conditions["loadavg_end"] = loadavg()

    names = [m["name"] for m in trials[t0][0]["models"]]
    dense_gf = trials[t0][0]["models"][0]["gflops"]
    summary = []
    for i, name in enumerate(names):
        info = next((m for m in models if m["name"] == name), {"keep_flops": 1.0, "round_to": None})
        row = {
            "model": name,
            "keep_flops": info["keep_flops"],
            "round_to": info["round_to"],
            "gflops": trials[t0][0]["models"][i]["gflops"],
            "flops_fraction": round(trials[t0][0]["models"][i]["gflops"] / dense_gf, 4),
            "params": trials[t0][0]["models"][i]["params"],
            "ort": {},
            "torch": {
                t: {"median_ms": res["models"][i]["median_ms"], "speedup": res["ratios"][res["models"][i]["name"]]}
                for t, res in torch_res.items()
            },
        }
        for threads, trs in trials.items():
            ratios = [tr["ratios"][name] for tr in trs]
            paired = [tr["paired_ratios"][name] for tr in trs]
            row["ort"][threads] = {
                "median_ms_per_trial": [tr["models"][i]["median_ms"] for tr in trs],
                "speedup_per_trial": ratios,
                "paired_speedup_per_trial": paired,
                "speedup": float(np.median(ratios)),
                "paired_speedup": float(np.median(paired)),
            }
        summary.append(row)
    s50 = next(s for s in summary if s["model"] == "yolov5s-keep50-r8")
    host = machine()
    result = {
        "conditions": {
            **conditions,
            "cpu_count": host["cores"],
            "cpu_model": host["cpu"],
            "threads": opt.threads,
            "runs": opt.runs,
            "torch_runs": opt.torch_runs,
            "warmup": opt.warmup,
            "trials": opt.trials,
            "torch": torch_res[t0]["environment"]["torch"],
            "onnxruntime": torch_res[t0]["environment"]["onnxruntime"],
        },
        "acceptance": {
            "target": f">= {TARGET_SPEEDUP}x at <= 50% GFLOPs (ORT, batch 1, 640, median, interleaved)",
            "flops_fraction": s50["flops_fraction"],
            "speedup": {t: s50["ort"][t]["speedup"] for t in opt.threads},
            "met": s50["flops_fraction"] <= 0.5 and all(v["speedup"] >= TARGET_SPEEDUP for v in s50["ort"].values()),
        },
        "summary": summary,
        "exports": exports,
        "baseline_torch_vs_ort": {
            t: [
                {k: m[k] for k in ("name", "median_ms", "p10_ms", "p90_ms")} | {"speedup": b["ratios"][m["name"]]}
                for m in b["models"]
            ]
            for t, b in baseline.items()
        },
        "prune": models,
        "ort_trials": trials,
        "torch": torch_res,
        "commands": log,
    }
    write_results("speed_pruned", result, markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    c, a = r["conditions"], r["acceptance"]
    threads = c["threads"]
    per_t = ", ".join(f"{a['speedup'][t]:.2f}x with {t} thread{'s' * (t > 1)}" for t in threads)
    lines = [
        "# Pruned YOLOv5s: latency in ONNX Runtime",
        "",
        f"Produced by `.venv/bin/python benchmarks/speed_pruned.py --runs {c['runs']} --trials {c['trials']} "
        f"--threads {' '.join(map(str, threads))} --torch-runs {c['torch_runs']}` (every command below).",
        "",
        f"Machine: {c['cpu_model']}, {c['cpu_count']} cores, **shared with other jobs during the run** (load "
        f"average {c['loadavg_start']} at the start, {c['loadavg_end']} at the end; each command's is in the JSON): "
        "absolute milliseconds are inflated and noisy, the ratios are what interleaving keeps fair. "
        f"torch {c['torch']}, onnxruntime {c['onnxruntime']}, batch 1, 640x640, {c['warmup']} warm-up + "
        f"{c['runs']} timed runs per model, the five models interleaved (one run of each per round, rotating "
        "order), ONNX Runtime sessions without worker spinning. Speed-up = dense median / model median within "
        "the same trial; the bold figure is the median over the trials (paired = median of the per-round ratios). "
        "torch's OpenMP threads suffer most from other jobs on the cores (a thread descheduled at a barrier "
        "stalls the others): its multi-thread figures are the least reliable here.",
        "",
        f"**Acceptance** ({a['target']}): the 50%-GFLOPs model ({a['flops_fraction']:.1%} of the dense GFLOPs) "
        f"runs {per_t}: **{'met' if a['met'] else 'NOT met'}**.",
    ]
    for t in threads:
        lines += [
            "",
            f"## ONNX Runtime, {t} thread{'s' * (t > 1)}",
            "",
            "| model | round-to | GFLOPs | of dense | params | median ms per trial | speed-up (per trial) | paired |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in r["summary"]:
            o = s["ort"][t]
            lines.append(
                f"| {s['model']} | {s['round_to'] or '-'} | {s['gflops']:.2f} | {s['flops_fraction']:.1%} | "
                f"{s['params']:,} | {' / '.join(f'{v:.1f}' for v in o['median_ms_per_trial'])} | "
                f"**{o['speedup']:.2f}x** ({' / '.join(f'{v:.2f}' for v in o['speedup_per_trial'])}) | "
                f"{o['paired_speedup']:.2f}x |"
            )
        r1 = next(s for s in r["summary"] if s["model"] == "yolov5s-keep50-r1")["ort"][t]["speedup"]
        r8 = next(s for s in r["summary"] if s["model"] == "yolov5s-keep50-r8")["ort"][t]["speedup"]
        lines += ["", f"Round-to 8 vs 1 at 50% GFLOPs: {r8:.2f}x vs {r1:.2f}x over dense (r8 is {r8 / r1:.2f}x r1)."]
    for t in threads:
        lines += [
            "",
            f"## torch, {t} thread{'s' * (t > 1)} ({c['torch_runs']} runs, the same checkpoints interleaved)",
            "",
            "| model | median ms | speed-up |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {s['model']} | {s['torch'][t]['median_ms']:.1f} | {s['torch'][t]['speedup']:.2f}x |"
            for s in r["summary"]
        ]
    for t, rows in r["baseline_torch_vs_ort"].items():
        lines += [
            "",
            f"## Dense yolov5s: torch vs ONNX Runtime, {t} thread{'s' * (int(t) > 1)} (same run, interleaved)",
            "",
            "| runtime | median ms | p10-p90 ms | speed-up vs torch |",
            "| --- | --- | --- | --- |",
        ]
        for b in rows:
            lines.append(
                f"| {b['name']} | {b['median_ms']:.1f} | {b['p10_ms']:.1f}-{b['p90_ms']:.1f} | {b['speedup']:.2f}x |"
            )
    lines += [
        "",
        "## Export check (640, static, ONNX checker + ONNX Runtime vs torch)",
        "",
        "| model | max diff (boxes / input size, scores) | max diff boxes in pixels |",
        "| --- | --- | --- |",
    ]
    for e in r["exports"]:
        lines.append(f"| {e['model']} | {e['max_abs_diff']:.2e} | {e['max_abs_diff_boxes_px']:.2e} |")
    lines += ["", "## Commands", ""]
    lines += [f"- `{x['command']}` ({x['wall_s']} s, load {x['loadavg_before'][0]})" for x in r["commands"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
