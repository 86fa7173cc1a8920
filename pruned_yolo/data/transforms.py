"""Deterministic image transforms shared by inference, validation and training."""

from __future__ import annotations

import math

import cv2
import numpy as np

PAD_VALUE = 114


def resize_long_side(im: np.ndarray, size: int, augment: bool = False) -> tuple[np.ndarray, float]:
    """Resize so that the long side equals `size`; returns the image and the scale."""
    h0, w0 = im.shape[:2]
    r = size / max(h0, w0)
    if r != 1:
        interp = cv2.INTER_LINEAR if (augment or r > 1) else cv2.INTER_AREA
        im = cv2.resize(im, (math.ceil(w0 * r), math.ceil(h0 * r)), interpolation=interp)
    return im, r


def _letterbox_geometry(h, w, new_shape, auto, scaleup, stride):
    nh, nw = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    r = min(nh / h, nw / w)
    if not scaleup:
        r = min(r, 1.0)
    uw, uh = int(round(w * r)), int(round(h * r))
    dw, dh = nw - uw, nh - uh
    if auto:
        dw, dh = dw % stride, dh % stride
    return r, (uh, uw), (dh, dw)


def letterbox_shape(
    h: int, w: int, new_shape: int | tuple[int, int] = 640, auto: bool = False, scaleup: bool = True, stride: int = 32
) -> tuple[int, int]:
    """Output (h, w) of `letterbox` for an (h, w) input, without touching pixels."""
    _, (uh, uw), (dh, dw) = _letterbox_geometry(h, w, new_shape, auto, scaleup, stride)
    return uh + dh, uw + dw


def letterbox(
    im: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    auto: bool = False,
    scaleup: bool = True,
    stride: int = 32,
    color: int = PAD_VALUE,
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to `new_shape` (h, w).

    `auto` pads only to the next multiple of `stride`. Returns the image, the scale and
    the (left, top) padding in pixels, which `unletterbox_boxes` inverts.
    """
    h, w = im.shape[:2]
    r, (uh, uw), (dh, dw) = _letterbox_geometry(h, w, new_shape, auto, scaleup, stride)
    dw, dh = dw / 2, dh / 2
    if (w, h) != (uw, uh):
        im = cv2.resize(im, (uw, uh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color, color, color))
    return im, r, (dw, dh)


def to_tensor_layout(im: np.ndarray) -> np.ndarray:
    """HWC BGR uint8 -> CHW RGB uint8, contiguous."""
    return np.ascontiguousarray(im[..., ::-1].transpose(2, 0, 1))


def collate_batch(batch):
    """Stack images; targets get the image's slot in the batch in column 0 (train and val loaders)."""
    import torch

    ims, targets, metas = zip(*batch)
    for slot, t in enumerate(targets):
        t[:, 0] = slot
    return torch.stack(ims), torch.cat(targets), list(metas)
