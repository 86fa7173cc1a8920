"""VisDrone-DET -> YOLO: labels, image copies (or links) and a data YAML.

Native annotations have one object a line: `left,top,width,height,score,category,
truncation,occlusion` in pixels. Category 0 (ignored regions) and 11 (others) and rows
with score 0 are dropped; boxes are clipped to the image; class = category - 1. Rows
that repeat an earlier box of the same class exactly (after conversion) are dropped too,
since the YOLO label checks would reject them as duplicates.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from ..errors import DataError
from .config import IMAGE_SUFFIXES
from .images import image_size

LOGGER = logging.getLogger("pruned_yolo")

VISDRONE_NAMES = (
    "pedestrian",
    "people",
    "bicycle",
    "car",
    "van",
    "truck",
    "tricycle",
    "awning-tricycle",
    "bus",
    "motor",
)

# drop reasons, in the order they are checked and printed
DROP_REASONS = {
    "malformed": "malformed rows",
    "ignored": "ignored regions (category 0)",
    "others": "'others' (category 11)",
    "unknown": "unknown categories",
    "score0": "rows with score 0",
    "empty": "boxes empty after clipping",
    "duplicate": "duplicate rows (same class and box as an earlier row)",
}

# official folder names: VisDrone2019-DET-train, -val, -test-dev (test-challenge has no annotations)
_SPLIT_SUFFIXES = (("test-dev", "test"), ("train", "train"), ("val", "val"))


Row = tuple[int, float, float, float, float]


def parse_visdrone_line(line: str, width: int, height: int) -> tuple[Row | None, str]:
    """One annotation row -> ((class, cx, cy, w, h) normalised, 'kept') or (None, drop reason)."""
    fields = [f.strip() for f in line.strip().rstrip(",").split(",")]
    try:
        left, top, w, h = (float(v) for v in fields[:4])
        score, category = int(float(fields[4])), int(float(fields[5]))
    except (ValueError, IndexError):
        return None, "malformed"
    if category == 0:
        return None, "ignored"
    if category == 11:
        return None, "others"
    if not 1 <= category <= 10:
        return None, "unknown"
    if score == 0:
        return None, "score0"
    x1, y1 = max(left, 0.0), max(top, 0.0)
    x2, y2 = min(left + w, float(width)), min(top + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None, "empty"
    return (category - 1, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height), "kept"


def convert_visdrone_split(
    images_dir: Path, annotations_dir: Path, out_images: Path, out_labels: Path, symlink: bool = False
) -> Counter:
    """Convert one split folder pair; returns counts (images, boxes, each drop reason, ...)."""
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    out_images.mkdir(parents=True, exist_ok=True)
    out_labels.mkdir(parents=True, exist_ok=True)
    stats: Counter = Counter()
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = {p.stem for p in images}
    for p in images:
        size = image_size(p)
        if size is None:
            LOGGER.warning("WARNING %s: unreadable image, skipped", p)
            stats["unreadable_images"] += 1
            continue
        height, width = size
        rows: list[str] = []
        seen: set[str] = set()
        ann = annotations_dir / f"{p.stem}.txt"
        if ann.is_file():
            for line in ann.read_text().splitlines():
                if not line.strip():
                    continue
                row, reason = parse_visdrone_line(line, width, height)
                text = None if row is None else "{} {:.6f} {:.6f} {:.6f} {:.6f}".format(*row)
                if text is not None and text in seen:  # VisDrone repeats some boxes (other occlusion flag)
                    reason, text = "duplicate", None
                stats["boxes" if text else reason] += 1
                if text:
                    rows.append(text)
                    seen.add(text)
        else:
            stats["images_without_annotations"] += 1
        dst = out_images / p.name
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if symlink:
            os.symlink(p.resolve(), dst)
        else:
            shutil.copyfile(p, dst)
        (out_labels / f"{p.stem}.txt").write_text("".join(r + "\n" for r in rows))
        stats["images"] += 1
    orphans = sum(1 for a in annotations_dir.glob("*.txt") if a.stem not in stems)
    if orphans:
        LOGGER.warning("WARNING %s: %d annotation files without an image, ignored", annotations_dir, orphans)
        stats["annotations_without_images"] += orphans
    return stats


def format_stats(split: str, stats: Counter) -> str:
    """'val: 3 images, 239 boxes kept; dropped: 4 ignored regions (category 0), ...'"""
    line = f"{split}: {stats['images']} images, {stats['boxes']} boxes kept"
    dropped = [f"{stats[k]} {words}" for k, words in DROP_REASONS.items() if stats[k]]
    line += "; dropped: " + (", ".join(dropped) if dropped else "none")
    extra = [
        f"{stats[k]} {k.replace('_', ' ')}"
        for k in ("images_without_annotations", "unreadable_images", "annotations_without_images")
        if stats[k]
    ]
    return line + (f" ({', '.join(extra)})" if extra else "")


def find_visdrone_splits(src: Path) -> dict[str, Path]:
    """{split: folder with images/ and annotations/}: SRC itself ('all') or its official split folders."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"VisDrone folder not found: {src}")
    if (src / "images").is_dir() and (src / "annotations").is_dir():
        return {"all": src}
    splits: dict[str, Path] = {}
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        if not ((d / "images").is_dir() and (d / "annotations").is_dir()):
            continue
        name = d.name.lower()
        for suffix, split in _SPLIT_SUFFIXES:
            if name.endswith(suffix):
                if split in splits:
                    raise DataError(f"{src}: two folders for the {split} split ({splits[split].name}, {d.name})")
                splits[split] = d
                break
    if not splits:
        raise DataError(
            f"{src}: expected images/ and annotations/ folders, or split folders such as "
            "VisDrone2019-DET-train/ and VisDrone2019-DET-val/ that contain them"
        )
    return splits


def convert_visdrone(src: str | Path, dst: str | Path, symlink: bool = False) -> Path:
    """Convert a VisDrone-DET folder to YOLO layout under `dst`; returns the data YAML written.

    A single split (SRC/images + SRC/annotations) goes to dst/images and dst/labels and is
    both train and val of the YAML; official split folders go to dst/images/{train,val,test}.
    """
    src, dst = Path(src), Path(dst)
    splits = find_visdrone_splits(src)
    dst.mkdir(parents=True, exist_ok=True)
    rel: dict[str, str] = {}
    for split, folder in splits.items():
        sub = "" if split == "all" else f"/{split}"
        stats = convert_visdrone_split(
            folder / "images", folder / "annotations", dst / f"images{sub}", dst / f"labels{sub}", symlink
        )
        if not stats["images"]:
            raise DataError(f"{folder / 'images'}: no readable images")
        LOGGER.info("%s", format_stats(split if split != "all" else folder.name, stats))
        rel[split] = f"images{sub}"
    if "all" in rel:
        train = val = rel["all"]
        LOGGER.info("a single split: written as both train and val of the data YAML")
    else:
        train, val = rel.get("train"), rel.get("val")
        if train is None or val is None:
            LOGGER.warning("WARNING only the %s split found: used as both train and val", "train" if train else "val")
            train = val = train or val or rel["test"]
    lines = [
        "# VisDrone-DET converted by `pruned-yolo convert visdrone`",
        f"# source: {src.resolve()}",
        "path: .",
        f"train: {train}",
        f"val: {val}",
    ]
    if "test" in rel:
        lines.append(f"test: {rel['test']}")
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(VISDRONE_NAMES)]
    yaml_path = dst / "data.yaml"
    yaml_path.write_text("\n".join(lines) + "\n")
    LOGGER.info("data YAML: %s", yaml_path)
    return yaml_path
