"""Detector-core acceptance: official checkpoints on coco128 val2017, before and after conversion.

    .venv/bin/python benchmarks/core_acceptance.py

Runs the same `pruned-yolo` commands a user would (val on the official .pt, convert-checkpoint,
val on our .safetensors, info on the shipped configs) and writes
benchmarks/results/core_acceptance.json and .md.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, write_results

DATA = SHARED / "datasets" / "coco128" / "coco128.yaml"
CLI = [sys.executable, "-m", "pruned_yolo"]
# independent pycocotools reference (datasets/coco128/SOURCE.md) and the official table (NOTES.md)
REFERENCE = {"yolov5s_v6.0": (0.440, 0.626), "yolov5n_v6.1": (0.343, 0.529)}
OFFICIAL_INFO = {"yolov5n": (1.9, 4.5), "yolov5s": (7.2, 16.5), "yolov5m": (21.2, 49.0), "yolov5l": (46.5, 109.1)}


def run(args: list[str]) -> tuple[str, float]:
    cmd = CLI + args
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return out, time.perf_counter() - t


def pretty(args: list[str]) -> str:
    return "pruned-yolo " + " ".join(shlex.quote(str(a).replace(str(SHARED), "../shared")) for a in args)


def main() -> None:
    rows, info_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (ref_map, ref_map50) in REFERENCE.items():
            pt = SHARED / "weights" / f"{name}.pt"
            conv = Path(tmp) / f"{name}.safetensors"
            run(["convert-checkpoint", str(pt), str(conv)])
            for fmt, weights in (("official .pt", pt), ("converted .safetensors", conv)):
                js = Path(tmp) / "m.json"
                args = ["val", "--weights", str(weights), "--data", str(DATA), "--imgsz", "640", "--json", str(js)]
                out, wall = run(args)
                m = json.loads(js.read_text())
                rows.append(
                    {
                        "model": name,
                        "checkpoint": fmt,
                        "mAP50-95": m["mAP50-95"],
                        "mAP50": m["mAP50"],
                        "fast_mAP50-95": m["fast"]["mAP50-95"],
                        "fast_mAP50": m["fast"]["mAP50"],
                        "reference_mAP50-95": ref_map,
                        "reference_mAP50": ref_map50,
                        "precision": m["precision"],
                        "recall": m["recall"],
                        "speed_ms": m["speed_ms"],
                        "wall_s": wall,
                        "speed_line": out.strip().splitlines()[-1],
                        "command": pretty(args).replace(tmp, "OUT"),
                    }
                )
        for cfg, (p_ref, g_ref) in OFFICIAL_INFO.items():
            js = Path(tmp) / "i.json"
            args = ["info", "--cfg", cfg, "--imgsz", "640", "--json", str(js)]
            run(args)
            info = json.loads(js.read_text())
            info_rows.append(
                {
                    "cfg": cfg,
                    "params_M": info["params"] / 1e6,
                    "gflops": info["gflops"],
                    "official_params_M": p_ref,
                    "official_gflops": g_ref,
                    "command": pretty(args).replace(tmp, "OUT"),
                }
            )
    lines = [
        "# Detector core acceptance (coco128 val2017, 128 images, 640, conf 0.001, NMS IoU 0.6)",
        "",
        "Produced by `.venv/bin/python benchmarks/core_acceptance.py` on the 2-core CPU machine.",
        "",
        "| model | checkpoint | mAP50-95 | mAP50 | reference | fast AP (50-95 / 50) | wall s | speed line |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['checkpoint']} | {r['mAP50-95']:.3f} | {r['mAP50']:.3f} | "
            f"{r['reference_mAP50-95']:.3f} / {r['reference_mAP50']:.3f} | "
            f"{r['fast_mAP50-95']:.3f} / {r['fast_mAP50']:.3f} | {r['wall_s']:.1f} | {r['speed_line']} |"
        )
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    lines += [
        "",
        "| cfg | params (M) | GFLOPs @640 | official params / GFLOPs | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in info_rows:
        lines.append(
            f"| {r['cfg']} | {r['params_M']:.3f} | {r['gflops']:.2f} | {r['official_params_M']} / "
            f"{r['official_gflops']} | `{r['command']}` |"
        )
    write_results("core_acceptance", {"val": rows, "info": info_rows}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
