"""Training data: augmented (mosaic, affine, HSV, flips, mixup) or letterboxed images with targets.

Determinism: every random decision of item `i` in epoch `e` (mosaic partners and centre,
affine parameters, HSV gains, flips, mixup) is drawn from
`np.random.default_rng([seed, e, i])` and nothing else, so an item is the same whatever
the worker count, the rank or the order in which items are asked for. The epoch lives in
shared memory: `set_epoch` before iterating reaches persistent loader workers too.
Shuffling is the sampler's job (`EpochSampler`, seeded by seed + epoch, or a
`DistributedSampler` whose `set_epoch` the trainer calls).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import PrunedYoloError
from .augment import (
    DEFAULT_HYP,
    augment_hsv,
    flip_lr,
    flip_ud,
    mixup,
    mosaic_canvas,
    random_affine,
    xywhn_to_xyxy,
    xyxy_to_xywhn,
)
from .images import _apply_exif_orientation, read_bytes, read_image
from .index import DatasetIndex
from .labels import EMPTY
from .transforms import PAD_VALUE, collate_batch, letterbox, to_tensor_layout

LOGGER = logging.getLogger("pruned_yolo")

CACHE_MODES = (None, "ram")
_JPEG = (".jpg", ".jpeg")


def _memory_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resized_shape(h0: int, w0: int, imgsz: int) -> tuple[int, int]:
    """(h, w) with the long side exactly imgsz and the aspect ratio kept."""
    r = imgsz / max(h0, w0)
    return (
        imgsz if h0 >= w0 else min(imgsz, max(1, math.ceil(h0 * r - 1e-6))),
        imgsz if w0 >= h0 else min(imgsz, max(1, math.ceil(w0 * r - 1e-6))),
    )


def read_resized(path: str | Path, shape0: tuple[int, int], imgsz: int, linear: bool = True) -> np.ndarray | None:
    """Decode an image (8-bit BGR, EXIF applied) and resize its long side to imgsz.

    Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg (still at least imgsz),
    which is several times faster than a full decode followed by a downscale.
    """
    h0, w0 = shape0
    im = None
    if Path(path).suffix.lower() in _JPEG:
        f = max(h0, w0) / imgsz
        flag = (
            cv2.IMREAD_REDUCED_COLOR_8
            if f >= 8
            else cv2.IMREAD_REDUCED_COLOR_4
            if f >= 4
            else cv2.IMREAD_REDUCED_COLOR_2
            if f >= 2
            else None
        )
        if flag is not None:
            data = read_bytes(path)
            im = cv2.imdecode(data, flag | cv2.IMREAD_IGNORE_ORIENTATION) if data is not None and data.size else None
            if im is not None:
                im = _apply_exif_orientation(im, path)
    if im is None:
        im = read_image(path)
    if im is None:
        return None
    h, w = resized_shape(*im.shape[:2], imgsz)
    if (h, w) != im.shape[:2]:
        interp = cv2.INTER_LINEAR if (linear or h > im.shape[0]) else cv2.INTER_AREA
        im = cv2.resize(im, (w, h), interpolation=interp)
    return im


class TrainDataset(Dataset):
    """Items: (uint8 CHW RGB image, float32 (n, 6) targets [0, class, cx, cy, w, h], meta dict).

    With `augment` a fraction `hyp['mosaic']` of the items are mosaics of 4 images, the
    others letterboxed images; both then get a random affine warp to imgsz x imgsz, HSV
    jitter and flips (and mosaics mixup with probability `hyp['mixup']`). Without
    `augment` items are letterboxed to imgsz x imgsz, as in validation, with `ratio`,
    `pad` and `shape0` in meta to map predictions back. `cache='ram'` decodes every image
    once (long side = imgsz) and keeps it in memory.
    """

    def __init__(
        self,
        index: DatasetIndex,
        imgsz: int = 640,
        hyp: dict | None = None,
        augment: bool = True,
        cache: str | None = None,
        stride: int = 32,
        seed: int = 0,
    ):
        if cache not in CACHE_MODES:
            raise PrunedYoloError(f"unknown image cache '{cache}' (choose from: ram, or none)")
        if imgsz % stride:
            raise PrunedYoloError(f"image size {imgsz} is not a multiple of the stride {stride}")
        unknown = set(hyp or {}) - set(DEFAULT_HYP)
        self.hyp = {**DEFAULT_HYP, **{k: float(v) for k, v in (hyp or {}).items() if k in DEFAULT_HYP}}
        self.warp = {k: self.hyp[k] for k in ("degrees", "translate", "scale", "shear", "perspective")}
        if unknown:
            LOGGER.debug("TrainDataset ignores hyp keys %s", sorted(unknown))
        self.imgsz, self.augment, self.stride, self.seed = imgsz, augment, stride, int(seed)
        self.images = [Path(p) for p in index.images]
        self.shapes = np.asarray(index.shapes, dtype=np.int64).reshape(-1, 2)
        self.labels = [np.asarray(lb, dtype=np.float32).reshape(-1, 5) for lb in index.labels]
        self.cache = cache
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        # images found unreadable during training, shared with the loader workers: each is named once
        self._unreadable = torch.zeros(len(self.images), dtype=torch.uint8).share_memory_()
        self._ram: list[np.ndarray | None] | None = None
        if cache == "ram":
            self._cache_ram()

    # ---------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws the next items use (call before iterating)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return len(self.images)

    # ---------------------------------------------------------------- images
    def _decode(self, i: int) -> np.ndarray | None:
        h0, w0 = (int(v) for v in self.shapes[i])
        im = read_resized(self.images[i], (h0, w0), self.imgsz, linear=self.augment)
        if im is None and not self._unreadable[i]:  # passed the index check, but deleted or damaged since
            self._unreadable[i] = 1
            LOGGER.warning(
                "WARNING %s: cannot be read any more, skipped (a blank image without labels takes its place)",
                self.images[i],
            )
        return im

    def _cache_ram(self) -> None:
        n = len(self.images)
        need = sum(h * w * 3 for h, w in (resized_shape(int(a), int(b), self.imgsz) for a, b in self.shapes))
        avail = _memory_available()
        if avail is not None and need > 0.8 * avail:
            LOGGER.warning(
                "WARNING --cache ram needs %.1f GB but only %.1f GB are available: images are not cached",
                need / 1e9,
                avail / 1e9,
            )
            self.cache = None
            return
        LOGGER.info("caching %d images in RAM (%.2f GB)", n, need / 1e9)
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            self._ram = list(pool.map(self._decode, range(n)))

    def load_image(self, i: int) -> np.ndarray | None:
        """BGR uint8 image `i` with its long side resized to imgsz (from the RAM cache if on);
        None if it cannot be read (named once in a warning)."""
        if self._ram is not None:
            return self._ram[i]
        return self._decode(i)

    def _image_and_labels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """`load_image(i)` and its labels; an unreadable image becomes a blank one without labels."""
        im = self.load_image(i)
        if im is None:
            h, w = resized_shape(*(int(v) for v in self.shapes[i]), self.imgsz)
            return np.full((h, w, 3), PAD_VALUE, dtype=np.uint8), EMPTY
        return im, self.labels[i]

    # ---------------------------------------------------------------- items
    def _mosaic(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.imgsz
        idx = [i, *rng.integers(0, len(self), 3).tolist()]
        center = rng.uniform(s / 2, 3 * s / 2, 2)
        ims, labels = zip(*(self._image_and_labels(j) for j in idx))
        canvas, labels = mosaic_canvas(list(ims), list(labels), s, (center[0], center[1]))
        return random_affine(canvas, labels, rng, (s, s), **self.warp)

    def _letterboxed(self, i: int) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float]]:
        im, labels = self._image_and_labels(i)
        h, w = im.shape[:2]
        im, r, (dw, dh) = letterbox(im, self.imgsz, auto=False, scaleup=self.augment, stride=self.stride)
        left, top = int(round(dw - 0.1)), int(round(dh - 0.1))
        uw, uh = int(round(w * r)), int(round(h * r))
        labels = xywhn_to_xyxy(labels, uw, uh, left, top)
        ratio = r * self.imgsz / float(max(self.shapes[i]))  # the long side is exactly imgsz * r
        return im, labels, ratio, (float(left), float(top))

    def __getitem__(self, i: int):
        i = int(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        hyp = self.hyp
        meta = {"path": str(self.images[i]), "index": i, "shape0": tuple(int(v) for v in self.shapes[i])}
        if self.augment and rng.random() < hyp["mosaic"]:
            im, labels = self._mosaic(i, rng)
            if rng.random() < hyp["mixup"]:
                im2, labels2 = self._mosaic(int(rng.integers(0, len(self))), rng)
                im, labels = mixup(im, labels, im2, labels2, rng)
            meta["mosaic"] = True
        else:
            im, labels, ratio, pad = self._letterboxed(i)
            if self.augment:
                s = self.imgsz
                im, labels = random_affine(im, labels, rng, (s, s), **self.warp)
            else:
                meta.update(ratio=ratio, pad=pad)
            meta["mosaic"] = False
        if self.augment:
            augment_hsv(im, rng, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])
            if rng.random() < hyp["flipud"]:
                im, labels = flip_ud(im, labels)
            if rng.random() < hyp["fliplr"]:
                im, labels = flip_lr(im, labels)
        h, w = im.shape[:2]
        targets = torch.zeros((len(labels), 6), dtype=torch.float32)
        if len(labels):
            targets[:, 1:] = torch.from_numpy(xyxy_to_xywhn(labels, w, h))
        return torch.from_numpy(to_tensor_layout(im)), targets, meta

    collate = staticmethod(collate_batch)


class EpochSampler(Sampler[int]):
    """Shuffles with a torch.Generator seeded by seed + epoch; the epoch is the dataset's
    (set by `TrainDataset.set_epoch`) unless `set_epoch` is called on the sampler."""

    def __init__(self, dataset, shuffle: bool = True, seed: int = 0):
        self.dataset, self.shuffle, self.seed = dataset, shuffle, int(seed)
        self._epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        if self._epoch is not None:
            return self._epoch
        return int(getattr(self.dataset, "epoch", 0))

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        if not self.shuffle:
            return iter(range(n))
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(n, generator=g).tolist())


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


def build_train_loader(dataset, batch_size, workers, shuffle=True, sampler=None, seed=0) -> DataLoader:
    """DataLoader over a TrainDataset: `EpochSampler` unless a sampler (e.g. DistributedSampler)
    is given; persistent workers (the epoch reaches them through shared memory)."""
    if sampler is None:
        sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed)
    workers = int(workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=TrainDataset.collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=False,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(int(seed)),
    )
