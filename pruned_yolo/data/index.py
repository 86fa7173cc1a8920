"""Indexing a split: which images are readable, their sizes and their checked labels."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import label_path
from .images import image_size
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


_COUNT_WORDS = {
    "corrupt_images": ("corrupt image", "corrupt images"),
    "bad_label_lines": ("bad label line", "bad label lines"),
}


def check_image(path: Path) -> str | None:
    """None if the image looks decodable, else the reason it is not."""
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"corrupt image ({type(e).__name__}: {e})"
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with path.open("rb") as f:
            f.seek(-2, 2)
            if f.read() != b"\xff\xd9":
                return "corrupt image (truncated JPEG: no end-of-image marker)"
    return None


def index_images(images: list[Path], nc: int, warn: bool = True) -> DatasetIndex:
    """Check every image and label; skip (and report once each) what cannot be used."""
    kept, shapes, labels, problems = [], [], [], []
    counts: Counter = Counter()
    for path in images:
        reason = check_image(path)
        size = image_size(path) if reason is None else None
        if reason is not None or size is None:
            problems.append(f"{path}: {reason or 'unreadable image'}")
            counts["corrupt_images"] += 1
            continue
        rows, label_problems = parse_label_file(label_path(path), nc)
        problems += label_problems
        counts["bad_label_lines"] += len(label_problems)
        kept.append(path)
        shapes.append(size)
        labels.append(rows)
    if warn:
        for p in problems:
            LOGGER.warning("WARNING %s", p)
    index = DatasetIndex(kept, np.array(shapes, dtype=np.int64).reshape(-1, 2), labels, problems, counts)
    if warn and index.summary():
        LOGGER.warning("%s", index.summary())
    return index
