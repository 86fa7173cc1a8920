"""Image reading: any depth or channel count to 8-bit BGR, EXIF orientation applied."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


def read_bytes(path: str | Path) -> np.ndarray | None:
    """The file's bytes as a uint8 array; None if it cannot be read (deleted, unreadable, a folder)."""
    try:
        return np.fromfile(str(path), dtype=np.uint8)
    except (OSError, ValueError):
        return None


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image to HxWx3 uint8 BGR (grayscale, RGBA and 16-bit included); None if unreadable."""
    data = read_bytes(path)
    if data is None or data.size == 0:
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


# libjpeg warnings that mean pixels were lost (the decoder filled the rest with gray) rather than
# harmless oddities such as "N extraneous bytes before marker" (the image still decodes fully)
_JPEG_DATA_LOSS = re.compile(r"premature end|bad huffman code|bad arithmetic code|instead of RST", re.I)
# lines that libjpeg or OpenCV's decoder writes to stderr; anything else captured came from elsewhere
_DECODER_LINE = re.compile(r"^(Corrupt JPEG data|Premature end|Invalid SOS|Warning: unknown JFIF|Unknown Adobe|"
                           r"Inconsistent progression|Application transferred|\[ ?(WARN|ERROR|INFO))")  # fmt: skip
_STDERR_LOCK = threading.Lock()


def decode_jpeg_checked(data: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Decode JPEG bytes at 1/8 scale with OpenCV and say whether libjpeg lost data doing it.

    libjpeg reports a truncated or damaged scan only as a warning on stderr ("Corrupt JPEG data:
    premature end of data segment") and returns the image with the missing part gray, so a
    file cut short that still ends with the end-of-image marker decodes "fine". The decoder's
    stderr is captured for the duration of the decode (one decode at a time per process; what
    other threads print meanwhile is passed on) so that the problem can be tied to the file.
    Returns (image or None, the first data-loss message or None). The reduced decode still
    entropy-decodes every byte of every scan.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()  # Python's own pending output goes where it belongs
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                im = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION)
            except cv2.error:
                im = None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    others = [line for line in text.splitlines(keepends=True) if line.strip() and not _DECODER_LINE.match(line)]
    if others:  # another thread's output, caught in the window: pass it on
        os.write(2, "".join(others).encode())
    loss = next((line.strip() for line in text.splitlines() if _JPEG_DATA_LOSS.search(line)), None)
    return im, loss
