"""DistributedDataParallel on CPU: 2 processes (torchrun, gloo) against 1 process, same global batch.

Both runs do sparsity training (L1 subgradient and soft mask), which must stay identical on
every rank. The comparison has to be honest about what DDP changes. Each rank normalises with the
BatchNorm statistics of its own half batch (SyncBatchNorm is GPU-only in torch), and the
box/class losses are means over each rank's own targets. Both equal their single-process
values exactly when the two halves of the batch have the same content, so the dataset
here is 4 copies of one image (distinct files) with augmentation off: then 2 x 2 images
under DDP must give the single-process batch-of-4 result up to float rounding, and any
error in the gradient all-reduce, the loss scaling by the world size, the batch split or
the distributed sampler shows up. The ranks must also hold bit-identical weights.

"Up to float rounding": the two runs sum the same gradients in a different order
(about 1e-7 relative after one step). A tiny network at 64 px (BatchNorm over 2 x 2
maps) amplifies that to percents within three steps; at 128 px it stays near 1e-4, so
the test trains at 128 px and requires the DDP / single-process weight difference to be
below 0.1 % of the weight update (measured: 8e-5).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pruned_yolo.training import TrainConfig, Trainer

from .conftest import ROOT, tiny_cfg

TORCHRUN = Path(sys.executable).with_name("torchrun")

NO_AUG = {
    **{k: 0.0 for k in ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective")},
    **{k: 0.0 for k in ("flipud", "fliplr", "mosaic", "mixup", "copy_paste")},
    "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 0.0005, "warmup_epochs": 0.0,
    "warmup_momentum": 0.8, "warmup_bias_lr": 0.1, "box": 0.05, "cls": 0.5, "obj": 1.0, "anchor_t": 4.0,
}  # fmt: skip

RANK_SCRIPT = r"""
import json, os, sys
from safetensors.torch import save_file
from pruned_yolo.training import Callback, TrainConfig, Trainer
from pruned_yolo.training.hooks import build_callback

out = sys.argv[2]

class Dump(Callback):
    def __init__(self):
        self.paths = []
    def on_batch_start(self, t):
        self.paths += [m["path"] for m in t.metas]
    def on_fit_end(self, t):
        r = t.rank
        save_file({k: v.contiguous() for k, v in t.net.state_dict().items()}, f"{out}/rank{r}.safetensors")
        with open(f"{out}/rank{r}.json", "w") as f:
            json.dump({"paths": self.paths, "world": t.world_size, "steps": t.optimizer_steps}, f)

config = TrainConfig(**json.loads(sys.argv[1]))
Trainer(config, callbacks=[*map(build_callback, config.callbacks), Dump()]).fit()
"""


# sparsity training on every rank: the L1 subgradient and the soft mask (epochs 1 and 2)
SPARSITY = {"s": 0.01, "schedule": "cosine", "mask": "soft", "mask_period": 1, "mask_alpha": 0.2}


def _same_image_dataset(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    im = cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), (5, 5), 2)
    cv2.rectangle(im, (20, 24), (80, 100), (20, 200, 40), -1)
    cv2.circle(im, (96, 40), 18, (200, 30, 30), -1)
    label = "0 0.3906 0.4844 0.4844 0.5938\n1 0.75 0.3125 0.2813 0.2813\n"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n if split == "train" else 1):
            cv2.imwrite(str(root / "images" / split / f"im{i}.png"), im)
            (root / "labels" / split / f"im{i}.txt").write_text(label)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    return root / "data.yaml"


def _config(data: Path, project: Path, name: str) -> dict:
    return dict(
        data=str(data), cfg=tiny_cfg(), epochs=3, imgsz=128, batch=4, nbs=4, hyp=NO_AUG, device="cpu",
        project=str(project), name=name, workers=0, threads=1, seed=0, noval=True, progress=False,
        callbacks=[{"name": "sparsity", "args": {"config": SPARSITY}}],
    )  # fmt: skip


@pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(), reason="no torchrun")
def test_ddp_two_processes_match_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNED_YOLO_CACHE", str(tmp_path / "cache"))
    data = _same_image_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env["PRUNED_YOLO_CACHE"] = str(tmp_path / "c")
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(
        [*cmd, json.dumps(_config(data, tmp_path / "runs", "ddp")), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]

    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] == 3
    # the distributed sampler gives each rank its own half of every epoch
    for e in range(3):
        a, b = r0["paths"][2 * e : 2 * e + 2], r1["paths"][2 * e : 2 * e + 2]
        assert sorted(a + b) == sorted(str(p) for p in (data.parent / "images" / "train").glob("*.png"))
    # every rank holds the same weights, bit for bit (BN running stats: broadcast from rank 0)
    w0, w1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    params = [k for k in w0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    for k in params:
        assert torch.equal(w0[k], w1[k]), k
    # rank 0 alone wrote the run folder and its checkpoints
    assert (tmp_path / "runs" / "ddp" / "weights" / "last.safetensors").is_file()
    assert not (tmp_path / "runs" / "ddp2").exists()

    # one process, same global batch of 4
    torch.set_num_threads(1)
    single_config = TrainConfig(**_config(data, tmp_path / "runs", "single"))
    single = Trainer(single_config)  # the sparsity callback is built from the config's spec
    single.fit()
    ws = single.net.state_dict()
    torch.manual_seed(0)
    from pruned_yolo.models import build_model

    init = build_model(tiny_cfg()).state_dict()  # the seed-0 initial weights of both runs
    num = den = 0.0
    for k in params:
        num += (w0[k] - ws[k]).double().pow(2).sum().item()
        den += (ws[k] - init[k]).double().pow(2).sum().item()
    rel = (num / den) ** 0.5
    print(f"DDP vs single: relative weight difference {rel:.2e} of the update")
    assert den > 0 and rel < 1e-3  # DDP - single is < 0.1 % of the update itself
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
