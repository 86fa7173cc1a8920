"""Prune to a latency: does `prune_to_latency` land in [0.9 T, 1.0 T] on this machine?

    .venv/bin/python benchmarks/latency_target.py [--models yolov5n yolov5s] [--imgsz 320 640]
        [--fractions 0.3 0.45 0.6 0.75 0.9] [--threads 2] [--max-iterations 4] [--redo] [--report]

For every model (built from the shipped YAML with nc=80 and random weights: latency depends on
the widths only) and image size: the dense model is timed on ONNX Runtime (batch 1), and for
every fraction F the target T = F x dense goes to `prune_to_latency` (per-block latency table
measured once per machine / threads / size and cached, planner on the global channel ranking,
export, measurement interleaved with the dense model, correction, at most --max-iterations).
Each row records T, the predicted and the measured latency (median, the pruned model timed
interleaved with the dense one), whether the measured value is within [0.9 T, T], every
iteration, the GFLOPs and params kept and the wall time. Rows are saved as they finish; a rerun
skips the rows it has (--redo measures them again). Writes benchmarks/results/latency_target.json
(--out) and the markdown generated from it (same name, .md; --report only regenerates it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import common
from common import RESULTS, ResultsFile, markdown_table

from pruned_yolo.models import build_model
from pruned_yolo.pruning import Probe, make_timer, prune_to_latency
from pruned_yolo.pruning.latency import WINDOW

FRACTIONS = (0.3, 0.45, 0.6, 0.75, 0.9)
FIRST_RUN = "python benchmarks/latency_target.py"  # rows measured before rows recorded their command


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s"], help="shipped model YAMLs")
    ap.add_argument("--imgsz", nargs="+", type=int, default=[320, 640], help="image sizes (multiples of 32)")
    ap.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS), help="targets, x dense latency")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    ap.add_argument("--max-iterations", type=int, default=4, help="plan / measure rounds per target")
    ap.add_argument("--round-to", type=int, default=8, help="kept channels rounded to a multiple of this")
    ap.add_argument("--out", type=Path, default=RESULTS / "latency_target.json", help="results JSON")
    ap.add_argument("--redo", action="store_true", help="measure rows the results file already has")
    ap.add_argument("--report", action="store_true", help="only regenerate the markdown from the JSON")
    return ap.parse_args()


def row_name(model: str, imgsz: int, fraction: float | None) -> str:
    return f"{model}-{imgsz}-" + ("dense" if fraction is None else f"{round(fraction * 100):02d}")


def measure(opt: argparse.Namespace, results: ResultsFile) -> None:
    timer = make_timer("onnxruntime", opt.threads)
    for name in opt.models:
        model = build_model(name, nc=80).eval()
        for imgsz in opt.imgsz:
            todo = [f for f in opt.fractions if opt.redo or not results.get(row_name(name, imgsz, f))]
            if not todo:
                continue
            t0 = time.perf_counter()
            # the lower of two timings: the first of a process runs cold (measured 10.5 ms, then 8.3 ms)
            probe = Probe("dense", model, [(1, 3, imgsz, imgsz)], "model")
            dense = min(timer([probe])[0], timer([probe])[0])
            results.put(
                {
                    "name": row_name(name, imgsz, None),
                    "model": name,
                    "imgsz": imgsz,
                    "dense_ms": dense,
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "loadavg": list(os.getloadavg()),
                }
            )
            print(f"{name} {imgsz}: dense {dense:.2f} ms", flush=True)
            for f in todo:
                t0, load = time.perf_counter(), list(os.getloadavg())
                target = f * dense
                row = {"name": row_name(name, imgsz, f), "model": name, "imgsz": imgsz, "fraction": f}
                row["command"] = results.doc["protocol"]["command"]
                row.update(target_ms=target, dense_ms_before=dense, loadavg_before=load)
                try:
                    _, rep = prune_to_latency(
                        model,
                        target,
                        imgsz=imgsz,
                        runtime="onnxruntime",
                        threads=opt.threads,
                        max_iterations=opt.max_iterations,
                        round_to=opt.round_to,
                    )
                except Exception as e:  # a target out of reach is a result too
                    row.update(error=f"{type(e).__name__}: {e}", within=False)
                else:
                    lat = rep["latency"]
                    row.update(
                        predicted_ms=lat["predicted_ms"],
                        measured_ms=lat["measured_ms"],
                        dense_ms=lat["dense_ms"],
                        measured_over_target=lat["measured_ms"] / target,
                        within=lat["within"],
                        iterations=len(lat["iterations"]),
                        iteration_log=[
                            {k: it[k] for k in ("predicted_ms", "measured_ms", "dense_ms", "gflops", "within")}
                            for it in lat["iterations"]
                        ],
                        gflops=rep["after"]["gflops"],
                        gflops_fraction=rep["after"]["gflops"] / rep["before"]["gflops"],
                        params=rep["after"]["params"],
                        params_fraction=rep["after"]["params"] / rep["before"]["params"],
                        table=lat["table"],
                    )
                row.update(wall_s=round(time.perf_counter() - t0, 1), loadavg_after=list(os.getloadavg()))
                results.put(row)
                got = f"measured {row['measured_ms']:.2f} ms" if "measured_ms" in row else row["error"]
                print(f"  T = {f:.2f} x dense = {target:.2f} ms: {got} (within: {row['within']})", flush=True)


def markdown(doc: dict) -> str:
    rows = [r for r in doc["models"] if "fraction" in r]
    dense = {(r["model"], r["imgsz"]): r for r in doc["models"] if "fraction" not in r}
    for r in rows:
        r["within_text"] = "yes" if r.get("within") else ("error" if "error" in r else "no")
    ok = sum(1 for r in rows if r.get("within"))
    m = doc["machine"]
    lines = [
        "# Prune to a latency target (ONNX Runtime, batch 1)",
        "",
        "Commands (each row records the one that measured it): "
        + ", ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", FIRST_RUN) for r in rows)),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}. "
        f"Models built from the shipped YAMLs (nc=80, random weights: latency depends on the widths only), "
        f"`--round-to {doc['protocol']['round_to']}`, threads: {doc['protocol']['threads'] or 'all cores'}.",
        "",
        f"**{ok} of {len(rows)} targets measured within [{WINDOW[0]} T, {WINDOW[1]} T].** T = fraction x the dense "
        "latency measured just before; predicted: the table's prediction for the plan that was kept; measured: "
        "the median of the pruned model timed interleaved with the dense model (whose median of that run is "
        "`dense ms`).",
        "",
    ]
    columns = [
        ("model", "model", "{}"),
        ("imgsz", "imgsz", "{}"),
        ("T / dense", "fraction", "{:.2f}"),
        ("target ms", "target_ms", "{:.2f}"),
        ("predicted ms", "predicted_ms", "{:.2f}"),
        ("measured ms", "measured_ms", "{:.2f}"),
        ("measured / T", "measured_over_target", "{:.3f}"),
        ("within", "within_text", "{}"),
        ("iterations", "iterations", "{}"),
        ("dense ms", "dense_ms", "{:.2f}"),
        ("GFLOPs kept", "gflops_fraction", "{:.3f}"),
        ("params kept", "params_fraction", "{:.3f}"),
        ("wall s", "wall_s", "{:.0f}"),
    ]
    lines += markdown_table(rows, columns)
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Errors:", ""] + [f"- {r['name']}: {r['error']}" for r in errors]
    lines += ["", "Dense models:", ""]
    lines += markdown_table(
        list(dense.values()), [("model", "model", "{}"), ("imgsz", "imgsz", "{}"), ("dense ms", "dense_ms", "{:.2f}")]
    )
    tables = {(r["model"], r["imgsz"]): r["table"] for r in rows if "table" in r}
    if tables:
        lines += ["", "Latency tables (cached per machine / threads / size; `measured` 0: read from the cache):", ""]
        trows = [{**v, "model": k[0], "imgsz": k[1]} for k, v in tables.items()]
        lines += markdown_table(
            trows,
            [
                ("model", "model", "{}"),
                ("imgsz", "imgsz", "{}"),
                ("blocks", "blocks", "{}"),
                ("variants measured (last run)", "measured", "{}"),
                ("from cache", "cached", "{}"),
                ("overhead ms", "overhead_ms", "{:.3f}"),
                ("sum of blocks, dense ms", "dense_sum_ms", "{:.2f}"),
            ],
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    opt = parse_args()
    protocol = {
        "name": "latency_target",
        "data": None,
        "imgsz": None,  # per row
        "runtime": "onnxruntime",
        "threads": opt.threads,
        "round_to": opt.round_to,
        "window": list(WINDOW),
        "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/latency_target.py", *sys.argv[1:]]),
    }
    results = ResultsFile(opt.out, protocol)
    if not opt.report:
        results.doc["machine"] = common.machine()
        measure(opt, results)
    md = markdown(json.loads(Path(opt.out).read_text()) if Path(opt.out).is_file() else results.doc)
    opt.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
