"""Validation data: letterboxed images batched by shape, with their labels.

Three letterbox modes:

* `auto` (default): each image is letterboxed to `imgsz` with the least padding that
  keeps both sides multiples of the stride (as single-image inference does); images
  with equal shapes are batched together, so the result does not depend on the batch size.
* `rect`: YOLOv5 val.py rectangular batches (images sorted by aspect ratio, one padded
  shape per batch, +0.5 stride of padding, no upscaling).
* `square`: every image letterboxed to imgsz x imgsz.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import PrunedYoloError
from .images import read_image
from .index import DatasetIndex
from .transforms import PAD_VALUE, collate_batch, letterbox, letterbox_shape, resize_long_side, to_tensor_layout

LOGGER = logging.getLogger("pruned_yolo")

LETTERBOX_MODES = ("auto", "rect", "square")


def rect_batch_shapes(shapes: np.ndarray, batch_size: int, imgsz: int, stride: int, pad: float) -> np.ndarray:
    """Per-batch (h, w) input shapes for images already sorted by aspect ratio (h / w)."""
    aspect = shapes[:, 0] / shapes[:, 1]
    n_batches = math.ceil(len(shapes) / batch_size)
    out = np.ones((n_batches, 2))
    for b in range(n_batches):
        ar = aspect[b * batch_size : (b + 1) * batch_size]
        lo, hi = ar.min(), ar.max()
        if hi < 1:
            out[b] = [hi, 1]
        elif lo > 1:
            out[b] = [1, 1 / lo]
    return (np.ceil(out * imgsz / stride + pad).astype(int) * stride).astype(int)


class ValDataset(Dataset):
    """Items: (CHW uint8 tensor, labels (n, 6: batch slot, class, cx, cy, w, h normalised), meta).

    `batches` lists the image indices of each batch (all of one input shape).
    """

    def __init__(
        self,
        index: DatasetIndex,
        imgsz: int = 640,
        batch_size: int = 16,
        stride: int = 32,
        mode: str = "auto",
        pad: float = 0.5,
    ):
        if mode not in LETTERBOX_MODES:
            raise PrunedYoloError(f"unknown letterbox mode '{mode}' (choose from {', '.join(LETTERBOX_MODES)})")
        self.imgsz, self.batch_size, self.stride, self.mode = imgsz, batch_size, stride, mode
        self.images, self.shapes, self.labels = list(index.images), index.shapes, list(index.labels)
        self.targets, self.batches = self._plan(pad)
        # images found unreadable at load time, shared with the loader workers: each is named once
        self._unreadable = torch.zeros(len(self.images), dtype=torch.uint8).share_memory_()

    def _plan(self, pad: float) -> tuple[list[tuple[int, int]], list[list[int]]]:
        n, bs = len(self.images), self.batch_size
        if self.mode == "rect" and n:
            order = np.argsort(self.shapes[:, 0] / self.shapes[:, 1], kind="stable")
            shapes = rect_batch_shapes(self.shapes[order], bs, self.imgsz, self.stride, pad)
            targets = [None] * n
            batches = [order[i : i + bs].tolist() for i in range(0, n, bs)]
            for b, idx in enumerate(batches):
                for i in idx:
                    targets[i] = tuple(int(v) for v in shapes[b])
            return targets, batches
        auto = self.mode == "auto"
        targets = [letterbox_shape(h, w, self.imgsz, auto=auto, stride=self.stride) for h, w in self.shapes.tolist()]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, t in enumerate(targets):
            groups[t].append(i)
        batches = [idx[j : j + bs] for _, idx in sorted(groups.items()) for j in range(0, len(idx), bs)]
        return targets, batches

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        im0 = read_image(self.images[i])
        missing = im0 is None
        if missing:  # passed the index check, but deleted or damaged since: no detections, its objects missed
            if not self._unreadable[i]:
                self._unreadable[i] = 1
                LOGGER.warning(
                    "WARNING %s: cannot be read any more, scored as an image without detections", self.images[i]
                )
            h0, w0 = (int(v) for v in self.shapes[i])
            im0 = np.full((h0, w0, 3), PAD_VALUE, dtype=np.uint8)
        h0, w0 = im0.shape[:2]
        if self.mode == "rect":
            im, r0 = resize_long_side(im0, self.imgsz)
            im, r1, pad = letterbox(im, self.targets[i], auto=False, scaleup=False)
        else:
            r0 = 1.0
            im, r1, pad = letterbox(im0, self.imgsz, auto=self.mode == "auto", stride=self.stride)
        labels = self.labels[i]
        target = torch.zeros((len(labels), 6))
        target[:, 1:] = torch.from_numpy(labels)
        meta = {"index": i, "path": str(self.images[i]), "shape0": (h0, w0), "ratio": r0 * r1, "pad": pad}
        if missing:
            meta["missing"] = True
        return torch.from_numpy(to_tensor_layout(im)), target, meta

    collate = staticmethod(collate_batch)


def val_loader(dataset: ValDataset, workers: int = 2) -> DataLoader:
    return DataLoader(dataset, batch_sampler=dataset.batches, num_workers=workers, collate_fn=ValDataset.collate)
