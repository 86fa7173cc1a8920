"""Fine-tuning acceptance: yolov5n v6.1, 10 epochs on coco128 train2017, val2017 before/after.

    .venv/bin/python benchmarks/finetune_yolov5n.py [--epochs 10] [--batch 16]

Runs, in order (the exact commands are written to the results):
  1. pruned-yolo val   --weights yolov5n_v6.1.pt  (pycocotools on coco128 val2017)
  2. pruned-yolo train --weights yolov5n_v6.1.pt --hyp finetune (train2017, 640)
  3. pruned-yolo val   --weights <run>/weights/last.safetensors
Writes benchmarks/results/finetune_yolov5n.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, RUNS, SHARED, machine_text, write_results

DATA = SHARED / "datasets" / "coco128" / "coco128.yaml"
WEIGHTS = SHARED / "weights" / "yolov5n_v6.1.pt"
CLI = [sys.executable, "-m", "pruned_yolo"]


def rel(p: Path) -> str:
    return os.path.relpath(p, ROOT)


def sh(args: list[str]) -> float:
    print("$", shlex.join(args), flush=True)
    t = time.time()
    subprocess.run(args, cwd=ROOT, check=True)
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--hyp", default="finetune")
    ap.add_argument("--name", default="finetune_yolov5n")
    args = ap.parse_args()

    tmp = RUNS / "bench_finetune"
    tmp.mkdir(parents=True, exist_ok=True)
    val = ["val", "--data", rel(DATA), "--imgsz", str(args.imgsz), "--batch", "16"]
    before_cmd = [*val, "--weights", rel(WEIGHTS), "--json", rel(tmp / "before.json")]
    train_cmd = [
        "train", "--data", rel(DATA), "--weights", rel(WEIGHTS), "--hyp", args.hyp,
        "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch", str(args.batch),
        "--project", "runs/train", "--name", args.name, "--exist-ok", "--no-progress",
    ]  # fmt: skip
    run_dir = RUNS / "train" / args.name
    after_cmd = [*val, "--weights", rel(run_dir / "weights" / "last.safetensors"), "--json", rel(tmp / "after.json")]

    sh(CLI + before_cmd)
    if (run_dir / "weights" / "last_state.safetensors").exists():
        import shutil

        shutil.rmtree(run_dir)
    train_s = sh(CLI + train_cmd)
    sh(CLI + after_cmd)

    before = json.loads((tmp / "before.json").read_text())
    after = json.loads((tmp / "after.json").read_text())
    with open(run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    epoch_s = [float(r["time/epoch_s"]) for r in rows]
    keys = ("mAP50-95", "mAP50", "precision", "recall")
    result = {
        "model": "yolov5n v6.1 (official weights)",
        "data": "coco128: train on images/train2017 (128), evaluate on images/val2017 (128, disjoint)",
        "evaluator": before["evaluator"],
        "before": {k: before[k] for k in keys},
        "after": {k: after[k] for k in keys},
        "delta_mAP50-95": after["mAP50-95"] - before["mAP50-95"],
        "accepted": after["mAP50-95"] >= before["mAP50-95"] - 0.01,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "hyp": args.hyp,
        "seconds_per_epoch_train_loop": [round(s, 1) for s in epoch_s],
        "seconds_per_epoch_mean": round(sum(epoch_s) / len(epoch_s), 1),
        "train_wall_s": round(train_s, 1),
        "per_epoch_fast_mAP50-95": [float(r["metrics/mAP50-95"]) for r in rows],
        "commands": ["pruned-yolo " + shlex.join(c) for c in (before_cmd, train_cmd, after_cmd)],
        "machine": machine_text(),
    }
    md = [
        "# Fine-tuning acceptance: yolov5n v6.1 on coco128",
        "",
        f"{result['data']}; {args.epochs} epochs at {args.imgsz}, batch {args.batch}, hyp `{args.hyp}`;"
        f" mAP by {result['evaluator']} on val2017.",
        "",
        "| | mAP50-95 | mAP50 | P | R |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("before", "after"):
        m = result[name]
        md.append(f"| {name} | {m['mAP50-95']:.4f} | {m['mAP50']:.4f} | {m['precision']:.3f} | {m['recall']:.3f} |")
    md += [
        "",
        f"Delta mAP50-95: {result['delta_mAP50-95']:+.4f} (acceptance: >= -0.01: "
        f"{'pass' if result['accepted'] else 'FAIL'}).",
        "Seconds per epoch (training loop: data, augmentation, forward, loss, backward, step;"
        f" the per-epoch validation excluded; {result['machine']}): "
        f"mean {result['seconds_per_epoch_mean']}, per epoch {result['seconds_per_epoch_train_loop']};"
        f" whole `train` command {result['train_wall_s']} s.",
        "",
        "Commands (from the repository root, `.venv/bin/` prefix omitted):",
        "",
        "```bash",
        *result["commands"],
        "```",
        "",
        "Reproduce everything with `.venv/bin/python benchmarks/finetune_yolov5n.py`.",
        "",
    ]
    write_results("finetune_yolov5n", result, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
