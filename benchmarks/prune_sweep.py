"""Acceptance sweep of the pruning engine.

For yolov5s_v6.0 and yolov5n_v6.1 (official checkpoints from ../shared) and the shipped
yolov5m, yolov5l and yolov5l-v4 configs (random init): every channel ratio 0.1..0.8 x
every layer count 0..6 must give a model that builds, runs and reloads bit-exact from
our checkpoint format, and every target (GFLOPs ratio 0.25/0.5/0.75, params ratio 0.5,
an absolute GFLOPs value, and a GFLOPs ratio with layers removed) must be met within 2%
under it. Also times `prune` on yolov5l.

    python benchmarks/prune_sweep.py [--models yolov5s_v6.0,yolov5l] [--quick]

Writes benchmarks/results/prune_sweep.json and .md. Other benchmarks can reuse the
pieces: `MODELS[name]()` loads a model, `sweep_configs(name)` / `target_configs(name)`
list the prune settings, and `pruned_models(name, configs)` yields (config, pruned
model, report) for each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from common import RESULTS, SHARED, machine_text, write_results

from pruned_yolo import build_model, load_model, save_checkpoint
from pruned_yolo.pruning import measure, prune

MODELS = {
    "yolov5s_v6.0": lambda: load_model(SHARED / "weights" / "yolov5s_v6.0.pt"),
    "yolov5n_v6.1": lambda: load_model(SHARED / "weights" / "yolov5n_v6.1.pt"),
    "yolov5m": lambda: _fresh("yolov5m"),
    "yolov5l": lambda: _fresh("yolov5l"),
    "yolov5l-v4": lambda: _fresh("yolov5l-v4"),
}

# about half of each model's GFLOPs at 640, as an absolute target
ABS_GFLOPS = {"yolov5s_v6.0": 8.0, "yolov5n_v6.1": 2.0, "yolov5m": 24.0, "yolov5l": 54.0, "yolov5l-v4": 58.0}

RATIOS = [round(0.1 * i, 1) for i in range(1, 9)]
LAYERS = list(range(7))


def _fresh(name: str):
    torch.manual_seed(0)
    return build_model(name)


def sweep_configs(name: str, ratios=RATIOS, layers=LAYERS) -> list[dict]:
    """Every channel ratio x every layer count."""
    return [{"channel_ratio": r, "layers": k} for r in ratios for k in layers]


def target_configs(name: str) -> list[dict]:
    """The budgets every model must meet within 2% under."""
    return [
        {"target_flops_ratio": 0.25},
        {"target_flops_ratio": 0.5},
        {"target_flops_ratio": 0.75},
        {"target_params_ratio": 0.5},
        {"target_gflops": ABS_GFLOPS[name]},
        {"target_flops_ratio": 0.5, "layers": 3},
    ]


def pruned_models(name: str, configs: list[dict], model=None) -> Iterator[tuple[dict, torch.nn.Module, dict]]:
    """Yield (config, pruned model, report) for every config, pruning `name` (loaded once)."""
    model = model if model is not None else MODELS[name]()
    for cfg in configs:
        pruned, report = prune(model, **cfg)
        yield cfg, pruned, report


@torch.no_grad()
def check_model(pruned, tmpdir: Path, imgsz: int = 128) -> dict:
    """Runs (eval + train forward), reloads from our format with identical tensors and outputs."""
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    pruned.eval()
    out = pruned(x)[0]
    runs = bool(torch.isfinite(out).all())
    path = save_checkpoint(pruned, tmpdir / "m.safetensors")
    loaded = load_model(path).eval()
    sd0, sd1 = pruned.state_dict(), loaded.state_dict()
    same_tensors = sd0.keys() == sd1.keys() and all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    reload_exact = bool(same_tensors and loaded.arch() == pruned.arch() and torch.equal(loaded(x)[0], out))
    path.unlink()
    return {"builds": True, "runs": runs, "reload_exact": reload_exact}


def run_model(name: str, quick: bool = False) -> dict:
    model = MODELS[name]()
    rows, targets = [], []
    configs = sweep_configs(name, RATIOS[::3] if quick else RATIOS, [0, 3, 6] if quick else LAYERS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cfg in configs:
            t0 = time.perf_counter()
            try:
                pruned, report = prune(model, **cfg)
            except Exception as e:  # a failure is a result of the sweep
                rows.append({**cfg, "builds": False, "error": f"{type(e).__name__}: {e}"})
                print(f"{name} {cfg}: FAILED {e}", flush=True)
                continue
            dt = time.perf_counter() - t0
            rows.append({**cfg, **check_model(pruned, tmp), **report["after"], "prune_s": round(dt, 2)})
            print(f"{name} {cfg}: {rows[-1]}", flush=True)
        for cfg in target_configs(name):
            t0 = time.perf_counter()
            try:
                pruned, report = prune(model, **cfg)
            except Exception as e:
                targets.append({**cfg, "met": False, "error": f"{type(e).__name__}: {e}"})
                print(f"{name} {cfg}: FAILED {e}", flush=True)
                continue
            dt = time.perf_counter() - t0
            t = report["target"]
            met = 0.98 * t["value"] <= t["achieved"] <= t["value"]
            targets.append(
                {
                    **cfg,
                    "metric": t["metric"],
                    "target": t["value"],
                    "achieved": t["achieved"],
                    "fraction": t["fraction_of_target"],
                    "met": met,
                    **check_model(pruned, tmp),
                    **report["after"],
                    "prune_s": round(dt, 2),
                }
            )
            print(f"{name} {cfg}: {targets[-1]}", flush=True)
    dense = measure(model, 640)
    return {"dense": dense, "sweep": rows, "targets": targets}


def time_prune(name: str, repeats: int = 3) -> dict:
    """Wall time of prune() (including the budget search) on a model already in memory."""
    model = MODELS[name]()
    out = {}
    for label, cfg in (
        ("target_flops_ratio=0.5", {"target_flops_ratio": 0.5}),
        ("channel_ratio=0.5,layers=3", {"channel_ratio": 0.5, "layers": 3}),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            prune(model, **cfg)
            times.append(time.perf_counter() - t0)
        out[label] = {"min_s": round(min(times), 2), "max_s": round(max(times), 2)}
    return out


def to_markdown(results: dict) -> str:
    lines = [
        "# Pruning sweep",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}",
        "",
        "Every channel ratio x layer count: builds, runs (finite outputs at 128x128), reloads from our",
        "checkpoint format with identical tensors, architecture and outputs.",
        "",
        "| model | dense GFLOPs | dense params | configs | builds | runs | reload bit-exact | GFLOPs range |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        rows = r["sweep"]
        ok = [x for x in rows if x.get("builds")]
        g = [x["gflops"] for x in ok]
        rng = f"{min(g):.2f} - {max(g):.2f}" if g else "-"
        lines.append(
            f"| {name} | {r['dense']['gflops']:.2f} | {r['dense']['params']:,} | {len(rows)} | {len(ok)} | "
            f"{sum(x['runs'] for x in ok)} | {sum(x['reload_exact'] for x in ok)} | {rng} |"
        )
    lines += [
        "",
        "Targets (met = within 2% under the target):",
        "",
        "| model | setting | target | achieved | achieved / target | met | reload bit-exact | prune s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["models"].items():
        for t in r["targets"]:
            setting = ", ".join(
                f"{k}={v}"
                for k, v in t.items()
                if k in ("target_flops_ratio", "target_params_ratio", "target_gflops", "layers")
            )
            if "error" in t:
                lines.append(f"| {name} | {setting} | - | - | - | no ({t['error']}) | - | - |")
                continue
            fmt = (lambda v: f"{v:,.0f}") if t["metric"] == "params" else (lambda v: f"{v:.3f} GFLOPs")
            lines.append(
                f"| {name} | {setting} | {fmt(t['target'])} | {fmt(t['achieved'])} | {t['fraction']:.4f} | "
                f"{'yes' if t['met'] else 'no'} | {t['reload_exact']} | {t['prune_s']} |"
            )
    if results.get("timing"):
        by = f" (`{results['timing_command']}`)" if results.get("timing_command") else ""
        lines += ["", f"Time of `prune()`{by} (model in memory; includes group tracing and the budget search):", ""]
        if results.get("timing_loadavg"):
            lines += [f"Load average (1/5/15 min) when timing started: {results['timing_loadavg']} on 2 CPUs.", ""]
        lines += ["| model | setting | min s | max s |", "| --- | --- | --- | --- |"]
        for name, t in results["timing"].items():
            for setting, v in t.items():
                lines.append(f"| {name} | {setting} | {v['min_s']} | {v['max_s']} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    ap.add_argument("--quick", action="store_true", help="ratios 0.1/0.4/0.7 x layers 0/3/6 only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timing-only", action="store_true", help="re-time prune() and update the timing of --out.json")
    ap.add_argument("--out", default=str(RESULTS / "prune_sweep"), help="output path without suffix")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    if args.timing_only:
        results = json.loads(Path(args.out + ".json").read_text())
        results["timing_command"] = "python benchmarks/prune_sweep.py " + " ".join(sys.argv[1:])
        results["timing_loadavg"] = [round(v, 2) for v in os.getloadavg()]
        for name in [n for n in names if n in ("yolov5l", "yolov5l-v4", "yolov5s_v6.0")]:
            results["timing"][name] = time_prune(name)
            print(name, results["timing"][name], flush=True)
        write_results(Path(args.out), results, to_markdown(results))
        return 0
    results = {
        "command": "python benchmarks/prune_sweep.py " + " ".join(sys.argv[1:]),
        "machine": machine_text(args.threads),
        "models": {},
        "timing": {},
    }
    for name in names:
        results["models"][name] = run_model(name, args.quick)
        if name in ("yolov5l", "yolov5l-v4", "yolov5s_v6.0"):
            results["timing"][name] = time_prune(name)
        write_results(Path(args.out), results, to_markdown(results))
    print(to_markdown(results))
    failures = [
        (n, x)
        for n, r in results["models"].items()
        for x in r["sweep"] + r["targets"]
        if not x.get("builds", True)
        or not x.get("runs", True)
        or not x.get("reload_exact", True)
        or x.get("met") is False
    ]
    print(json.dumps({"failures": len(failures)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
