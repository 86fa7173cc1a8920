"""Label cache: the results of indexing a split, stored outside the (possibly read-only) dataset.

One `.npz` file per split (written with `allow_pickle=False`, read the same way) under
`cache_dir()`. Its name hashes the image list and `nc`; inside, a fingerprint of every
image's and label file's size and mtime says whether it is still valid. A stale or
unreadable cache is simply rebuilt (and overwritten), so files do not pile up.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from ..utils.files import atomic_path

LOGGER = logging.getLogger("pruned_yolo")

CACHE_VERSION = 2  # 2: JPEGs whose scan data ends early (libjpeg warnings) count as corrupt
CACHE_ENV = "PRUNED_YOLO_CACHE"


def cache_root() -> Path:
    """`$PRUNED_YOLO_CACHE`, else `$XDG_CACHE_HOME/pruned-yolo`, else `~/.cache/pruned-yolo`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pruned-yolo"


def cache_dir() -> Path:
    """Folder of the label caches: `cache_root() / 'labels'`."""
    return cache_root() / "labels"


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}"


def cache_file(images: list[Path], nc: int) -> Path:
    """The cache file of this image list (independent of file contents)."""
    h = hashlib.sha256(f"v{CACHE_VERSION} nc={nc}\n".encode())
    for p in images:
        h.update(str(p).encode() + b"\n")
    return cache_dir() / f"{h.hexdigest()[:20]}.npz"


def fingerprint(images: list[Path], label_files: list[Path], nc: int) -> str:
    """Hash of paths, sizes and mtimes of every image and label file, and nc."""
    h = hashlib.sha256(f"v{CACHE_VERSION} nc={nc}\n".encode())
    for im, lb in zip(images, label_files):
        h.update(f"{im}|{_stat(im)}|{lb}|{_stat(lb)}\n".encode())
    return h.hexdigest()


def save_index_cache(path: Path, key: str, index) -> bool:
    """Write `index` (a DatasetIndex) to `path`; False (with a warning) when that is impossible."""
    lengths = np.array([len(lb) for lb in index.labels], dtype=np.int64)
    labels = np.concatenate(index.labels, 0) if index.labels else np.zeros((0, 5), np.float32)
    arrays = {
        "version": np.array(CACHE_VERSION),
        "key": np.array(key),
        "images": np.array([str(p) for p in index.images], dtype=np.str_),
        "shapes": np.asarray(index.shapes, dtype=np.int64).reshape(-1, 2),
        "lengths": lengths,
        "labels": labels.astype(np.float32).reshape(-1, 5),
        "problems": np.array(list(index.problems), dtype=np.str_),
        "count_keys": np.array(list(index.counts.keys()), dtype=np.str_),
        "count_values": np.array(list(index.counts.values()), dtype=np.int64),
    }
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as e:
        LOGGER.warning("WARNING label cache not written to %s (%s)", path, e)
        return False
    return True


def load_index_cache(path: Path, key: str):
    """The cached (images, shapes, labels, problems, counts), or None if missing or stale."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION or str(z["key"]) != key:
                return None
            images = [Path(p) for p in z["images"].tolist()]
            shapes = z["shapes"].astype(np.int64).reshape(-1, 2)
            lengths = z["lengths"]
            labels_flat = z["labels"].astype(np.float32).reshape(-1, 5)
            problems = [str(p) for p in z["problems"].tolist()]
            counts = Counter(dict(zip(z["count_keys"].tolist(), (int(v) for v in z["count_values"]))))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # truncated (an interrupted copy, a full disk) or otherwise damaged: index again and overwrite
        LOGGER.warning("WARNING label cache %s cannot be read (%s: %s): rebuilt", path, type(e).__name__, e)
        return None
    if len(lengths) != len(images) or int(lengths.sum()) != len(labels_flat) or len(shapes) != len(images):
        return None
    labels = np.split(labels_flat, np.cumsum(lengths)[:-1]) if len(images) else []
    return images, shapes, [np.ascontiguousarray(lb) for lb in labels], problems, counts
