"""Deployment benchmark: float32 and INT8 ONNX Runtime for the HIT-UAV dense and compressed models.

For the dense model a user brings and for the `ours_50` model of the HIT-UAV benchmark (the
weights its row in `results/hituav.json` names), at 320 px: the float32 ONNX export and its INT8
quantization (`quantize_onnx`: static QDQ, per-channel weights, 200 calibration images of the
train split, the Detect decode and head convs in float; and a variant with the head convs
quantized too, `+head`), each scored on `images/val` with
pycocotools (a static export is validated with the square letterbox it is fed with), then all
of them and the PyTorch float32 checkpoints timed in one interleaved run (batch 1, medians).
Writes `benchmarks/results/deploy.{json,md}`.

    .venv/bin/python benchmarks/deploy.py [--runs 50] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from common import RESULTS, ROOT, RUNS, SHARED, machine, markdown_table, relative, write_results

from pruned_yolo import load_model
from pruned_yolo.benchmark import benchmark_models, make_runner
from pruned_yolo.evaluation.validator import Validator
from pruned_yolo.export import OnnxModel, export_onnx, quantize_onnx

DATA = SHARED / "datasets" / "hituav" / "hituav_cpu.yaml"
DENSE = SHARED / "weights" / "yolov5s_hituav320.safetensors"
COLUMNS = [
    ("model", "name", "`{}`"),
    ("runtime", "runtime", "{}"),
    ("mAP50", "mAP50", "{:.4f}"),
    ("mAP50-95", "mAP50-95", "{:.4f}"),
    ("median ms", "median_ms", "{:.2f}"),
    ("speed-up vs dense PyTorch", "vs_torch", "{:.2f}x"),
    ("speed-up vs dense ORT fp32", "vs_ort", "{:.2f}x"),
    ("file MB", "mb", "{:.1f}"),
]


def stale(out: Path, source: Path) -> bool:
    """`out` is missing or older than the file it is made from (the cache follows the weights)."""
    return not out.is_file() or out.stat().st_mtime < source.stat().st_mtime


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    work = RUNS / "deploy"
    work.mkdir(parents=True, exist_ok=True)
    rows, runners = [], {}
    hituav = json.loads((RESULTS / "hituav.json").read_text())["models"]
    ours = next((r for r in hituav if r["name"] == "ours_50"), None)
    if ours is None:
        raise SystemExit("no ours_50 row in results/hituav.json: run benchmarks/hituav.py --only ours_50 first")
    models = {"dense_s": DENSE, "ours_50": ROOT / ours["weights"]}
    for name, weights in models.items():
        float_onnx = work / f"{name}.onnx"
        if stale(float_onnx, weights):
            export_onnx(load_model(weights), float_onnx, args.imgsz, 1, source=weights.name)
        int8_onnx, int8_head = work / f"{name}_int8.onnx", work / f"{name}_int8_head.onnx"
        if stale(int8_onnx, float_onnx):
            quantize_onnx(float_onnx, int8_onnx, str(DATA), args.imgsz, calib_images=200)
        if stale(int8_head, float_onnx):  # the Detect head's convs quantized too (only the decode float)
            quantize_onnx(float_onnx, int8_head, str(DATA), args.imgsz, calib_images=200, keep_head_float=False)
        variants = {"onnxruntime fp32": float_onnx, "onnxruntime int8": int8_onnx, "onnxruntime int8 +head": int8_head}
        for runtime, path in variants.items():
            model = OnnxModel(path, args.threads)
            validator = Validator(str(DATA), imgsz=args.imgsz, letterbox=model.letterbox_mode())
            m = validator(model, "cpu", progress=False)
            key = f"{name} {runtime}"
            rows.append({"name": name, "runtime": runtime, "file": relative(path), "mb": path.stat().st_size / 1e6,
                         "mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"], "key": key})  # fmt: skip
            runners[key] = make_runner(path, "onnxruntime", args.imgsz, 1, args.threads, name=key)
        runners[f"{name} torch fp32"] = make_runner(weights, "torch", args.imgsz, 1, args.threads, name=name)
        rows.append({"name": name, "runtime": "torch fp32", "file": relative(weights), "key": f"{name} torch fp32",
                     "mb": weights.stat().st_size / 1e6})  # fmt: skip
    timings = benchmark_models(runners, args.imgsz, 1, warmup=10, runs=args.runs)
    ms = {k: t.median_ms for k, t in timings.items()}
    for r in rows:
        r["median_ms"] = ms[r["key"]]
        r["vs_torch"] = ms["dense_s torch fp32"] / r["median_ms"]
        r["vs_ort"] = ms["dense_s onnxruntime fp32"] / r["median_ms"]
    doc = {
        "protocol": {"data": relative(DATA), "imgsz": args.imgsz, "batch": 1, "runs": args.runs, "interleaved": True,
                     "evaluator": "pycocotools", "letterbox": "square (static exports)", "threads": args.threads},
        "machine": machine(),
        "models": rows,
    }  # fmt: skip
    lines = [
        "# Deployment: float32 and INT8 after pruning (HIT-UAV, 320 px)",
        "",
        "Generated by `.venv/bin/python benchmarks/deploy.py` (all timings interleaved in one run, batch 1,"
        f" medians of {args.runs}; mAP on `images/val`, pycocotools, square letterbox).",
        "",
        *markdown_table(rows, COLUMNS),
        "",
    ]
    write_results("deploy", doc, lines)


if __name__ == "__main__":
    main()
