"""YOLO label files: one `class cx cy w h` line per object, coordinates normalised to [0, 1]."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

EMPTY = np.zeros((0, 5), dtype=np.float32)


def parse_label_file(path: Path, nc: int) -> tuple[np.ndarray, list[str]]:
    """Read a label file; returns the valid rows (n, 5) and one message per skipped line.

    A missing file means "no objects". Lines with the wrong column count, a non-numeric or
    non-finite value (nan, inf), a class out of range, coordinates outside [0, 1] or a
    non-positive size, and exact duplicates are skipped and reported.
    """
    if not path.is_file():
        return EMPTY.copy(), []
    problems: list[str] = []
    rows: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        return EMPTY.copy(), [f"{path}: unreadable label file ({e})"]
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{n}"
        if len(parts) != 5:
            problems.append(f"{where}: expected 5 columns, got {len(parts)}")
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            problems.append(f"{where}: non-numeric value")
            continue
        if not all(math.isfinite(v) for v in values):  # nan, inf, 1e999: would stop int() and the loss
            problems.append(f"{where}: value not a finite number")
            continue
        c, cx, cy, w, h = values
        if c != int(c) or not 0 <= c < nc:
            problems.append(f"{where}: class {parts[0]} outside 0..{nc - 1}")
            continue
        if not all(0 <= v <= 1 for v in (cx, cy, w, h)):
            problems.append(f"{where}: coordinates not normalised to [0, 1]")
            continue
        if w <= 0 or h <= 0:
            problems.append(f"{where}: box of zero size")
            continue
        key = tuple(values)
        if key in seen:
            problems.append(f"{where}: duplicate box")
            continue
        seen.add(key)
        rows.append(values)
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    return labels, problems
