"""Ultralytics data YAML: `path`, `train`, `val` (folder, list file, or a list of those), `names`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..utils.yamlio import load_yaml

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}


@dataclass(frozen=True)
class DataConfig:
    """A resolved data YAML: absolute image sources and class names."""

    yaml_path: Path
    root: Path
    train: tuple[Path, ...]
    val: tuple[Path, ...]
    names: tuple[str, ...]

    @property
    def nc(self) -> int:
        return len(self.names)

    def images(self, split: str) -> list[Path]:
        """Sorted image files of `split` ('train' or 'val')."""
        sources = getattr(self, split, None)
        if not sources:
            raise DataError(f"{self.yaml_path}: no '{split}' split defined")
        return list_images(sources)


def _names(raw, path: Path) -> tuple[str, ...]:
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(f"{path}: 'names' keys must be class indices") from None
        if keys != list(range(len(keys))):
            raise DataError(f"{path}: 'names' indices must be 0..{len(keys) - 1} without gaps")
        return tuple(str(raw[k] if k in raw else raw[str(k)]) for k in keys)
    if isinstance(raw, list) and raw:
        return tuple(str(n) for n in raw)
    raise DataError(f"{path}: 'names' must be a non-empty list or a dict of index: name")


def _nc(value, path: Path) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DataError(f"{path}: 'nc' must be a whole number of classes, got {value!r}")


def load_data_config(path: str | Path) -> DataConfig:
    """Parse and check a data YAML; every missing path is one clear DataError."""
    path = Path(path)
    raw = load_yaml(path, what="data YAML", error=DataError, expected="a mapping with train, val and names")
    root = raw.get("path") or "."
    if not isinstance(root, str):
        raise DataError(f"{path}: 'path' must be a folder name, got {root!r}")
    root = Path(root)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    if not root.is_dir():
        raise DataError(f"{path}: dataset root '{root}' does not exist")
    names = _names(raw.get("names"), path)
    if "nc" in raw and _nc(raw["nc"], path) != len(names):
        raise DataError(f"{path}: nc={raw['nc']} but {len(names)} names given")
    splits = {}
    for split in ("train", "val"):
        entries = raw.get(split)
        entries = [] if entries is None else entries if isinstance(entries, list) else [entries]
        resolved = []
        for entry in entries:
            p = Path(str(entry))
            p = p if p.is_absolute() else root / p
            if not p.exists():
                raise DataError(f"{path}: {split} path '{p}' does not exist")
            resolved.append(p)
        splits[split] = tuple(resolved)
    if not splits["train"] and not splits["val"]:
        raise DataError(f"{path}: neither 'train' nor 'val' is defined")
    return DataConfig(path, root, splits["train"], splits["val"], names)


def list_images(sources: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Images under folders (recursively) and listed in .txt files (paths relative to the list)."""
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            files += [p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        elif src.suffix == ".txt":
            try:
                text = src.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise DataError(f"{src}: image list cannot be read ({type(e).__name__}: {e})") from None
            for line in text.splitlines():
                line = line.strip()
                if line:
                    p = Path(line)
                    files.append(p if p.is_absolute() else (src.parent / p))
        elif src.suffix.lower() in IMAGE_SUFFIXES:
            files.append(src)
        else:
            raise DataError(f"'{src}' is not an image folder, a .txt image list or an image")
    files = sorted({p.resolve() if not p.is_absolute() else p for p in files})
    if not files:
        raise DataError(f"no images found in {', '.join(map(str, sources))}")
    return files


def label_path(image: Path) -> Path:
    """images/a/b.jpg -> labels/a/b.txt (the last 'images' path part is replaced)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")
