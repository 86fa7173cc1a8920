"""A synthetic detection dataset: coloured shapes on textured backgrounds.

`make_synthetic_dataset(root)` writes a YOLO-format dataset (images/{train,val},
labels/{train,val}, data.yaml) that a small model learns in minutes on a CPU, so the
whole pipeline (train, prune, fine-tune, validate) can be demonstrated without any
download. Classes are shapes (circle, square, triangle, cross); colours, sizes,
rotations and backgrounds are random, so the class must be read from the shape.
Everything is a function of the seed: the same call writes the same files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from ..utils.files import atomic_write

CLASSES = ("circle", "square", "triangle", "cross")
GENERATOR_VERSION = 1
_ROT = [(1, 0), (0, 1), (-1, 0), (0, -1)]  # cos, sin of 0, 90, 180, 270 degrees


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour noise, plus random stripes or blobs: texture that is not a shape."""
    coarse = rng.integers(0, 256, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    im = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), rng.uniform(0.8, 3))
    im += fine * rng.uniform(10, 40)
    kind = rng.integers(0, 3)
    if kind == 1:  # stripes
        period = rng.uniform(6, 30)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        im += wave[..., None] * rng.uniform(10, 35)
    elif kind == 2:  # thin random lines
        for _ in range(rng.integers(3, 10)):
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            color = [float(v) for v in rng.integers(0, 256, 3)]
            cv2.line(im, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return np.clip(im, 0, 255).astype(np.uint8)


def _contrasting_color(rng: np.random.Generator, bg: np.ndarray) -> tuple[int, int, int]:
    mean = bg.reshape(-1, 3).mean(0)
    for _ in range(20):
        c = rng.integers(0, 256, 3)
        if np.abs(c - mean).sum() > 180:
            break
    return tuple(int(v) for v in c)


def _polygon(cls: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if cls == 1:  # square
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * r / math.sqrt(2), y * r / math.sqrt(2)) for x, y in pts]
    elif cls == 2:  # triangle
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:  # cross (plus sign), arm half-width r / 3
        a, b = r, r / 3
        pts = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
    ca, sa = math.cos(angle), math.sin(angle)
    return np.array([(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts], dtype=np.float64)


def draw_shape(im: np.ndarray, cls: int, cx: float, cy: float, r: float, angle: float, color) -> np.ndarray:
    """Draw one shape; returns its tight box (x1, y1, x2, y2) in pixels."""
    if cls == 0:
        cv2.circle(im, (round(cx * 16), round(cy * 16)), round(r * 16), color, -1, cv2.LINE_AA, shift=4)
        return np.array([cx - r, cy - r, cx + r, cy + r])
    pts = _polygon(cls, cx, cy, r, angle)
    cv2.fillPoly(im, [np.round(pts * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)
    return np.array([*pts.min(0), *pts.max(0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def make_image(
    rng: np.random.Generator, size: int, nc: int, max_objects: int = 6, min_frac: float = 0.08, max_frac: float = 0.35
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One image (size x size-ish, BGR) and its labels (class, cx, cy, w, h normalised)."""
    h = size
    w = int(size * rng.uniform(0.8, 1.25))
    im = _background(rng, h, w)
    boxes: list[np.ndarray] = []
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):
            cls = int(rng.integers(0, nc))
            # radius: the object spans min_frac..max_frac of the short side
            r = max(rng.uniform(min_frac, max_frac) * min(h, w) / 2, 4.0)
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            angle = rng.uniform(0, 2 * math.pi)
            if cls == 0:
                box = np.array([cx - r, cy - r, cx + r, cy + r])
            else:
                pts = _polygon(cls, cx, cy, r, angle)
                box = np.array([*pts.min(0), *pts.max(0)])
            if all(_iou(box, b) < 0.05 for b in boxes):
                break
        else:
            continue
        color = _contrasting_color(rng, im[int(max(cy - r, 0)) : int(cy + r), int(max(cx - r, 0)) : int(cx + r)])
        box = draw_shape(im, cls, cx, cy, r, angle, color)
        box = np.clip(box, 0, [w, h, w, h])
        boxes.append(box)
        x1, y1, x2, y2 = box
        labels.append((cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
    if rng.random() < 0.5:  # mild blur / noise, as a camera would add
        im = cv2.GaussianBlur(im, (0, 0), rng.uniform(0.3, 1.0))
    return im, labels


def make_synthetic_dataset(
    root: str | Path,
    n_train: int = 400,
    n_val: int = 100,
    size: int = 160,
    nc: int = 3,
    seed: int = 0,
    max_objects: int = 6,
    min_frac: float = 0.08,
    max_frac: float = 0.35,
) -> Path:
    """Write the dataset under `root` (idempotent: an existing identical dataset is reused).

    Returns the path of its data YAML. `size` is the image height in pixels (widths vary
    between 0.8x and 1.25x); `nc` (1 to 4) picks the first classes of CLASSES; objects
    span `min_frac` to `max_frac` of the image's short side.
    """
    if not 1 <= nc <= len(CLASSES):
        raise ValueError(f"nc must be 1..{len(CLASSES)}")
    root = Path(root)
    spec = {
        "version": GENERATOR_VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "nc": nc,
        "seed": seed,
        "max_objects": max_objects,
        "min_frac": min_frac,
        "max_frac": max_frac,
    }
    marker = root / "synthetic.json"
    data_yaml = root / "data.yaml"
    if marker.is_file() and data_yaml.is_file():
        try:
            if json.loads(marker.read_text()) == spec:
                return data_yaml
        except json.JSONDecodeError:
            pass
    for split, n in (("train", n_train), ("val", n_val)):
        img_dir, lab_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        for old in img_dir.glob("*.jpg"):
            old.unlink()
        for old in lab_dir.glob("*.txt"):
            old.unlink()
        for i in range(n):
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
            im, labels = make_image(rng, size, nc, max_objects, min_frac, max_frac)
            cv2.imwrite(str(img_dir / f"{split}_{i:05d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
            text = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            (lab_dir / f"{split}_{i:05d}.txt").write_text(text)
    names = "\n".join(f"  {i}: {CLASSES[i]}" for i in range(nc))
    atomic_write(
        data_yaml,
        lambda p: p.write_text(
            f"# synthetic shapes (pruned_yolo.data.synthetic, seed {seed})\n"
            f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
        ),
    )
    atomic_write(marker, lambda p: p.write_text(json.dumps(spec) + "\n"))
    return data_yaml
