"""Batched inference on images: letterbox, forward, NMS, boxes back in original pixels."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.config import IMAGE_SUFFIXES, list_images
from ..data.images import image_size
from ..data.index import DatasetIndex, check_image
from ..data.labels import EMPTY
from ..data.val_dataset import ValDataset, val_loader
from ..errors import DataError
from ..utils.boxes import unletterbox_boxes
from ..utils.torch_utils import prepare_for_inference
from .nms import non_max_suppression

LOGGER = logging.getLogger("pruned_yolo")


@dataclass
class Detections:
    """Detections of one image, in original pixels: boxes (n, 4) xyxy, scores (n,), classes (n,)."""

    path: Path
    shape: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def to_dict(self, names: list[str]) -> dict:
        return {
            "image": self.path.name,
            "path": str(self.path),
            "height": self.shape[0],
            "width": self.shape[1],
            "detections": [
                {
                    "class": int(c),
                    "name": names[int(c)],
                    "confidence": round(float(s), 5),
                    "xyxy": [round(float(v), 2) for v in b],
                }
                for b, s, c in zip(self.boxes, self.scores, self.classes)
            ],
        }

    def to_yolo_lines(self, save_conf: bool = False) -> list[str]:
        h, w = self.shape
        lines = []
        for (x1, y1, x2, y2), s, c in zip(self.boxes, self.scores, self.classes):
            vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            line = f"{int(c)} " + " ".join(f"{v:.6f}" for v in vals)
            lines.append(line + (f" {s:.5f}" if save_conf else ""))
        return lines


def resolve_source(source: str | Path) -> list[Path]:
    """An image, a folder of images (recursive) or a .txt list -> image paths."""
    src = Path(source)
    if not src.exists():
        raise DataError(f"source not found: {src}")
    if src.is_file() and src.suffix.lower() not in IMAGE_SUFFIXES and src.suffix != ".txt":
        raise DataError(f"{src}: not an image (supported: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return list_images([src])


def output_names(images: list[Path]) -> dict[Path, str]:
    """A distinct output name (no suffix) per input image, for its annotated image and label files.

    The stem when no other input has it; else the path relative to the folder the clashing
    inputs share, with "_" for "/" (a/x.jpg, b/x.jpg -> a_x, b_x), with the suffix when
    that is what differs (x.jpg, x.png -> x_jpg, x_png); numbered (_2, _3) as a last resort.
    """
    images = list(dict.fromkeys(Path(p) for p in images))
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_stem.setdefault(p.stem, []).append(p)
    wanted: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            wanted[group[0]] = stem
            continue
        root = os.path.commonpath([os.path.abspath(p.parent) for p in group])
        rel = [Path(os.path.relpath(os.path.abspath(p), root)) for p in group]
        names = ["_".join(r.with_suffix("").parts) for r in rel]
        if len(set(names)) < len(names):
            names = ["_".join(r.parts).replace(".", "_") for r in rel]
        wanted.update(zip(group, names))
    out: dict[Path, str] = {}
    used: set[str] = set()
    for p in images:
        name, n = wanted[p], 2
        while name in used or (name != p.stem and name in by_stem):  # nor another input's own stem
            name, n = f"{wanted[p]}_{n}", n + 1
        used.add(name)
        out[p] = name
    return out


def _index_for_inference(images: list[Path]) -> DatasetIndex:
    kept, shapes, problems = [], [], []
    for p in images:
        size = image_size(p) if check_image(p) is None else None
        if size is None:
            problems.append(f"{p}: unreadable image, skipped")
            LOGGER.warning("WARNING %s", problems[-1])
            continue
        kept.append(p)
        shapes.append(size)
    if not kept:
        raise DataError("no readable images in the source")
    return DatasetIndex(kept, np.array(shapes).reshape(-1, 2), [EMPTY] * len(kept), problems)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    source: str | Path | list[Path],
    imgsz: int = 640,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 300,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    half: bool = False,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Iterator[Detections]:
    """Yield the detections of every image of `source`, in batches of same-shape images."""
    images = source if isinstance(source, list) else resolve_source(source)
    device = torch.device(device)
    net = prepare_for_inference(model, device, half)
    stride = int(max(model.stride.tolist())) if hasattr(model, "stride") else 32
    dataset = ValDataset(_index_for_inference(images), imgsz, batch_size, stride=stride, mode="auto")
    for ims, _, metas in tqdm(val_loader(dataset, workers), desc="predict", unit="batch", disable=not progress):
        x = ims.to(device)
        x = (x.half() if half else x.float()) / 255
        pred = net(x)
        pred = pred[0] if isinstance(pred, tuple) else pred
        dets = non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic, multi_label, max_det)
        for d, meta in zip(dets, metas):
            if meta.get("missing"):  # deleted or damaged since the check (named in a warning): skipped
                continue
            d = d.numpy()
            unletterbox_boxes(d, meta["ratio"], meta["pad"], meta["shape0"])
            yield Detections(Path(meta["path"]), meta["shape0"], d[:, :4], d[:, 4], d[:, 5].astype(int))
