"""Indexing a split: which images are readable, their sizes and their checked labels."""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import label_path
from .images import decode_jpeg_checked, image_size
from .labels import parse_label_file

LOGGER = logging.getLogger("pruned_yolo")


@dataclass
class DatasetIndex:
    """Readable images with their (h, w) sizes and labels (n, 5: class, cx, cy, w, h normalised)."""

    images: list[Path]
    shapes: np.ndarray  # (n, 2) original height, width
    labels: list[np.ndarray]
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> str:
        """'1 corrupt image, 3 bad label lines skipped' (empty when nothing was skipped)."""
        parts = []
        for key, (one, many) in _COUNT_WORDS.items():
            n = self.counts.get(key, 0)
            if n:
                parts.append(f"{n} {one if n == 1 else many}")
        return (", ".join(parts) + " skipped") if parts else ""

    def report(self) -> None:
        """Log one warning line per problem, then the summary line once."""
        for p in self.problems:
            LOGGER.warning("WARNING %s", p)
        if self.summary():
            LOGGER.warning("%s", self.summary())


_COUNT_WORDS = {
    "corrupt_images": ("corrupt image", "corrupt images"),
    "bad_label_lines": ("bad label line", "bad label lines"),
}

_PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def check_image(path: Path) -> str | None:
    """None if the image decodes completely, else the reason it does not.

    Header and chunk checks (`verify`: PNG CRCs and end chunk), then a real decode: JPEGs need
    their end-of-image marker and are decoded at 1/8 scale by OpenCV (which still reads every
    entropy-coded byte) with libjpeg's warnings captured, so that a file cut short, even one
    that still ends with the marker, and garbage after a valid header are caught; other
    formats are loaded by PIL, which fails on truncated data.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()
        jpeg = fmt in ("JPEG", "MPO") or path.suffix.lower() in (".jpg", ".jpeg")
        if jpeg:
            with path.open("rb") as f:
                f.seek(-2, 2)
                if f.read() != b"\xff\xd9":
                    return "corrupt image (truncated JPEG: no end-of-image marker)"
            im, loss = decode_jpeg_checked(np.fromfile(str(path), dtype=np.uint8))
            if loss:
                return f"corrupt image (truncated or damaged JPEG data, libjpeg: {loss})"
            if im is None:
                return "corrupt image (JPEG data cannot be decoded)"
        else:
            with Image.open(path) as img:
                img.load()
    except _PIL_ERRORS as e:
        return f"corrupt image ({type(e).__name__}: {e})"
    return None


def _index_one(path: Path, nc: int):
    reason = check_image(path)
    size = image_size(path) if reason is None else None
    if reason is not None or size is None:
        return path, None, None, [f"{path}: {reason or 'unreadable image'}"]
    rows, label_problems = parse_label_file(label_path(path), nc)
    return path, size, rows, label_problems


def _build_index(images: list[Path], nc: int, workers: int | None) -> DatasetIndex:
    workers = workers or min(8, os.cpu_count() or 1)
    if workers > 1 and len(images) > 8:
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes and file reads release the GIL
            results = list(pool.map(lambda p: _index_one(Path(p), nc), images))
    else:
        results = [_index_one(Path(p), nc) for p in images]
    kept, shapes, labels, problems = [], [], [], []
    counts: Counter = Counter()
    for path, size, rows, msgs in results:
        problems += msgs
        if size is None:
            counts["corrupt_images"] += 1
            continue
        counts["bad_label_lines"] += len(msgs)
        kept.append(path)
        shapes.append(size)
        labels.append(rows)
    counts = Counter({k: v for k, v in counts.items() if v})
    return DatasetIndex(kept, np.array(shapes, dtype=np.int64).reshape(-1, 2), labels, problems, counts)


def index_images(
    images: list[Path], nc: int, warn: bool = True, cache: bool = False, workers: int | None = None
) -> DatasetIndex:
    """Check every image and label; skip (and report once each) what cannot be used.

    With `cache=True` the result is stored under the user cache folder (see
    `pruned_yolo.data.cache`) and reused while no image or label file changed (same
    paths, sizes and mtimes, same nc); the problems found are reported again either way.
    """
    images = [Path(p) for p in images]
    index = None
    if cache:
        from .cache import cache_file, fingerprint, load_index_cache, save_index_cache

        cfile = cache_file(images, nc)
        key = fingerprint(images, [label_path(p) for p in images], nc)
        hit = load_index_cache(cfile, key)
        if hit is not None:
            index = DatasetIndex(*hit, from_cache=True)
            LOGGER.info("labels: %d images from cache %s", len(index), cfile)
    if index is None:
        index = _build_index(images, nc, workers)
        if cache:
            save_index_cache(cfile, key, index)
    if warn:
        index.report()
    return index


def load_or_build_index(images: list[Path], nc: int, warn: bool = True) -> DatasetIndex:
    """`index_images` with the label cache on."""
    return index_images(images, nc, warn=warn, cache=True)
