"""Training throughput: the full loop against the model's bare forward + backward + step.

    .venv/bin/python benchmarks/train_throughput.py [--cfg yolov5s] [--imgsz 640] [--batch 8]
        [--images 64] [--repeats 3] [--workers N]

Full loop: `Trainer.fit()` on coco128 train images (mosaic / affine / HSV / flip
augmentation, data loader workers, target building, YOLOv5 loss, backward, clipping,
SGD step and EMA update every batch: nominal batch = batch). Its per-batch time is the
time between consecutive `on_batch_end` events, so it includes waiting for data.

Bare: the same architecture in train mode on a random (batch, 3, imgsz, imgsz) tensor,
`sum of outputs` as the loss, backward and an SGD step.

The two are interleaved in one process: each epoch of the trainer (`--images` images) is
followed, at `on_train_epoch_end`, by as many bare steps; `--repeats` epochs. The first
`--skip` batches of every block are discarded (allocator and pipeline warm-up).
Reported ratio = median full step time / median bare step time (target <= 1.3).
Writes benchmarks/results/train_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as pruned_yolo does; must precede torch

import torch  # noqa: E402
from common import RESULTS, SHARED, machine_text, write_results  # noqa: E402

from pruned_yolo.data.config import load_data_config  # noqa: E402
from pruned_yolo.training import Callback, TrainConfig, Trainer  # noqa: E402

COCO128 = SHARED / "datasets" / "coco128" / "coco128.yaml"


class Interleave(Callback):
    def __init__(self, bare_steps: int, skip: int):
        self.bare_steps, self.skip = bare_steps, skip
        self.full: list[list[float]] = []
        self.bare: list[list[float]] = []
        self._last = None

    def on_epoch_start(self, t):
        self.full.append([])
        self._last = time.perf_counter()

    def on_batch_end(self, t):
        now = time.perf_counter()
        self.full[-1].append(now - self._last)
        self._last = now

    def on_train_epoch_end(self, t):
        net = copy.deepcopy(t.net).train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, nesterov=True)
        x = torch.rand(t.batch_per_rank, 3, t.config.imgsz, t.config.imgsz, device=t.device)
        times = []
        for _ in range(self.bare_steps):
            t0 = time.perf_counter()
            out = net(x)
            loss = sum(o.float().mean() for o in out)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
        self.bare.append(times)
        del net, opt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="yolov5s")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=64, help="images per full-loop block (one epoch)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved full / bare blocks")
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps discarded per block")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=str(RESULTS / "train_throughput"))
    args = ap.parse_args()

    data = load_data_config(COCO128)
    images = data.images("train")[: args.images]
    tmp = Path(tempfile.mkdtemp(prefix="throughput_"))
    (tmp / "train.txt").write_text("".join(f"{p}\n" for p in images))
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(data.names))
    (tmp / "data.yaml").write_text(f"path: {tmp}\ntrain: train.txt\nnames:\n{names}")

    n_steps = -(-len(images) // args.batch)
    cb = Interleave(bare_steps=n_steps, skip=args.skip)
    cfg = TrainConfig(
        data=str(tmp / "data.yaml"), cfg=args.cfg, epochs=args.repeats, imgsz=args.imgsz, batch=args.batch,
        nbs=args.batch, hyp="scratch-low", workers=args.workers, project=str(tmp / "runs"), nosave=True,
        progress=False, seed=0,
    )  # fmt: skip
    t0 = time.time()
    trainer = Trainer(cfg, callbacks=[cb])
    trainer.fit()
    wall = time.time() - t0

    full = [s for block in cb.full for s in block[args.skip :]]
    bare = [s for block in cb.bare for s in block[args.skip :]]
    full_med, bare_med = statistics.median(full), statistics.median(bare)
    result = {
        "model": args.cfg,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "workers": trainer.workers,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
        "full_step_s_median": round(full_med, 4),
        "bare_step_s_median": round(bare_med, 4),
        "full_images_per_s": round(args.batch / full_med, 3),
        "bare_images_per_s": round(args.batch / bare_med, 3),
        "ratio_full_over_bare": round(full_med / bare_med, 3),
        "target_ratio": 1.3,
        "full_step_s": [round(s, 3) for s in full],
        "bare_step_s": [round(s, 3) for s in bare],
        "blocks": args.repeats,
        "steps_per_block": n_steps,
        "skipped_per_block": args.skip,
        "wall_s": round(wall, 1),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": machine_text(),
        "command": "python benchmarks/train_throughput.py " + shlex.join(sys.argv[1:]),
    }
    md = f"""# Training throughput: full loop vs bare forward + backward

`{result["command"]}` ({result["machine"]}, {result["device"]}, {result["threads"]} torch threads,
{result["workers"]} data workers; load average at the end {result["loadavg_1m_at_end"]}).

{args.cfg} at {args.imgsz}, batch {args.batch}; {args.repeats} interleaved blocks of {n_steps} steps, the first
{args.skip} of each discarded.

| | median s/step | images/s |
| --- | --- | --- |
| full loop (data, augmentation, loss, backward, clip, SGD, EMA) | {full_med:.3f} | {args.batch / full_med:.2f} |
| bare forward + backward + SGD on random tensors | {bare_med:.3f} | {args.batch / bare_med:.2f} |

Ratio full / bare: **{full_med / bare_med:.3f}** (target <= 1.3).
"""
    write_results(Path(args.out).with_suffix(""), result, md)
    print(md)


if __name__ == "__main__":
    main()
