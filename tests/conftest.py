"""Shared fixtures: the ../shared data, a tiny model and a tiny synthetic dataset."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no busy-waiting threads on a small CPU

from pathlib import Path

import cv2  # noqa: E402
import numpy as np
import pytest
import torch

from pruned_yolo.models import build_model, load_model_cfg

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COCO128 = SHARED / "datasets" / "coco128" / "coco128.yaml"
YOLOV5S_PT = SHARED / "weights" / "yolov5s_v6.0.pt"
YOLOV5N_PT = SHARED / "weights" / "yolov5n_v6.1.pt"

needs_shared = pytest.mark.skipif(not COCO128.is_file(), reason="../shared data not present")

torch.set_num_threads(2)


def tiny_cfg(nc: int = 3) -> dict:
    """yolov5n layout at 1/8 width: every layer type, a few thousand parameters."""
    cfg = dict(load_model_cfg("yolov5n"))
    cfg.update(nc=nc, width_multiple=0.125)
    return cfg


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def make_dataset(root: Path, n_train: int = 4, n_val: int = 2, nc: int = 3, size: int = 96, seed: int = 0) -> Path:
    """Write a tiny YOLO dataset (random rectangles) and return its data YAML."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size, int(size * rng.uniform(0.75, 1.25))
            im = np.full((h, w, 3), rng.integers(0, 255, 3), dtype=np.uint8)
            lines = []
            for _ in range(rng.integers(1, 4)):
                c = int(rng.integers(0, nc))
                bw, bh = rng.uniform(0.15, 0.5, 2)
                cx, cy = rng.uniform(bw / 2, 1 - bw / 2), rng.uniform(bh / 2, 1 - bh / 2)
                x1, y1 = int((cx - bw / 2) * w), int((cy - bh / 2) * h)
                x2, y2 = int((cx + bw / 2) * w), int((cy + bh / 2) * h)
                cv2.rectangle(im, (x1, y1), (x2, y2), [int(v) for v in rng.integers(0, 255, 3)], -1)
                lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}{i}.jpg"), im)
            (root / "labels" / split / f"{split}{i}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: class{i}" for i in range(nc))
    data = root / "data.yaml"
    data.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds")
