"""Image reading: any depth or channel count to 8-bit BGR, EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image to HxWx3 uint8 BGR (grayscale, RGBA and 16-bit included); None if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    im = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if im is None:
        return None
    if im.dtype == np.uint16:
        im = (im / 257).round().astype(np.uint8)
    elif im.dtype != np.uint8:
        im = cv2.normalize(im, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if im.ndim == 2:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
    elif im.shape[2] == 4:
        im = cv2.cvtColor(im, cv2.COLOR_BGRA2BGR)
    elif im.shape[2] == 1:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
    return _apply_exif_orientation(im, path)


def _exif_orientation(path: str | Path) -> int:
    try:
        with Image.open(path) as img:
            return int(img.getexif().get(0x0112, 1))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1


# EXIF orientation -> sequence of (flip, rotation) making the image upright
_ORIENT = {
    2: lambda im: cv2.flip(im, 1),
    3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
    4: lambda im: cv2.flip(im, 0),
    5: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE), 1),
    6: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
    7: lambda im: cv2.flip(cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
    8: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


# formats whose EXIF orientation we honour (pixels and size alike)
_EXIF_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".mpo")


def _apply_exif_orientation(im: np.ndarray, path: str | Path) -> np.ndarray:
    # IMREAD_UNCHANGED ignores EXIF, so apply it here
    if Path(path).suffix.lower() not in _EXIF_SUFFIXES:
        return im
    fix = _ORIENT.get(_exif_orientation(path))
    return fix(im) if fix else im


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) after EXIF orientation, from the header only; None if unreadable."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = int(img.getexif().get(0x0112, 1)) if Path(path).suffix.lower() in _EXIF_SUFFIXES else 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
