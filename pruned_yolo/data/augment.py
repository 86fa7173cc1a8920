"""Training augmentations: mosaic, random affine/perspective, HSV jitter, flips, mixup.

Every random draw comes from the `np.random.Generator` passed in, so the caller decides
what seeds it (the training dataset seeds one per (seed, epoch, item)). Labels travel as
(n, 5) float arrays `[class, x1, y1, x2, y2]` in pixels; every function is vectorised
over boxes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .transforms import PAD_VALUE

# hyp.scratch-low (YOLOv5 n/s): the defaults of the training dataset
DEFAULT_HYP: dict[str, float] = {
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "flipud": 0.0,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "mixup": 0.0,
}


def xywhn_to_xyxy(labels: np.ndarray, w: float, h: float, padw: float = 0.0, padh: float = 0.0) -> np.ndarray:
    """(n, 5) [class, cx, cy, w, h] normalised -> [class, x1, y1, x2, y2] pixels (scaled to w x h, shifted)."""
    out = np.empty((len(labels), 5), dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1] = w * (labels[:, 1] - labels[:, 3] / 2) + padw
    out[:, 2] = h * (labels[:, 2] - labels[:, 4] / 2) + padh
    out[:, 3] = w * (labels[:, 1] + labels[:, 3] / 2) + padw
    out[:, 4] = h * (labels[:, 2] + labels[:, 4] / 2) + padh
    return out


def xyxy_to_xywhn(labels: np.ndarray, w: int, h: int) -> np.ndarray:
    """(n, 5) [class, x1, y1, x2, y2] pixels -> [class, cx, cy, w, h] normalised, clipped to the image."""
    x1 = labels[:, 1].clip(0, w)
    y1 = labels[:, 2].clip(0, h)
    x2 = labels[:, 3].clip(0, w)
    y2 = labels[:, 4].clip(0, h)
    out = np.empty((len(labels), 5), dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1] = (x1 + x2) / 2 / w
    out[:, 2] = (y1 + y2) / 2 / h
    out[:, 3] = (x2 - x1) / w
    out[:, 4] = (y2 - y1) / h
    return out


def box_candidates(
    box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100, area_thr: float = 0.1, eps=1e-16
) -> np.ndarray:
    """Keep mask for boxes (4, n) `box2` transformed from `box1`: > wh_thr pixels wide and high,
    aspect ratio < ar_thr and at least area_thr of the (scaled) original area left."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def drop_degenerate(labels: np.ndarray, w: int, h: int, wh_thr: float = 2.0) -> np.ndarray:
    """Clip pixel xyxy labels to the image and drop boxes thinner than wh_thr pixels."""
    if not len(labels):
        return labels
    labels = labels.copy()
    labels[:, [1, 3]] = labels[:, [1, 3]].clip(0, w)
    labels[:, [2, 4]] = labels[:, [2, 4]].clip(0, h)
    keep = ((labels[:, 3] - labels[:, 1]) > wh_thr) & ((labels[:, 4] - labels[:, 2]) > wh_thr)
    return labels[keep]


def affine_matrix(
    rng: np.random.Generator,
    in_shape: tuple[int, int],
    out_shape: tuple[int, int],
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
) -> tuple[np.ndarray, float]:
    """3x3 matrix mapping input pixels to output pixels, and its isotropic scale.

    The input is centred on the origin, then perspective, rotation + scale, shear and a
    translation to a random point near the centre of the output (YOLOv5's order).
    """
    h_in, w_in = in_shape
    h_out, w_out = out_shape
    C = np.eye(3)
    C[0, 2], C[1, 2] = -w_in / 2, -h_in / 2
    P = np.eye(3)
    P[2, 0] = rng.uniform(-perspective, perspective)
    P[2, 1] = rng.uniform(-perspective, perspective)
    R = np.eye(3)
    a = rng.uniform(-degrees, degrees)
    s = rng.uniform(1 - scale, 1 + scale)
    R[:2] = cv2.getRotationMatrix2D(angle=a, center=(0, 0), scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * w_out
    T[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * h_out
    return T @ S @ R @ P @ C, s


def transform_boxes(boxes: np.ndarray, M: np.ndarray, perspective: bool) -> np.ndarray:
    """Transform (n, 4) xyxy boxes by the 3x3 matrix M; the result encloses the 4 warped corners."""
    n = len(boxes)
    if not n:
        return np.zeros((0, 4), dtype=np.float32)
    xy = np.ones((n * 4, 3))
    xy[:, :2] = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    xy = xy @ M.T
    xy = (xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]).reshape(n, 8)
    x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
    return np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1).astype(np.float32)


def random_affine(
    im: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    out_shape: tuple[int, int],
    area_thr: float = 0.1,
    **warp: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `im` (any size) into `out_shape` (h, w) with one random affine/perspective warp.

    `warp` holds the ranges of `affine_matrix` (degrees, translate, scale, shear, perspective).
    Boxes follow the warp (enclosing box of the warped corners), are clipped to the output
    and dropped when degenerate (see `box_candidates`).
    """
    M, s = affine_matrix(rng, im.shape[:2], out_shape, **warp)
    perspective = warp.get("perspective", 0.0)
    h, w = out_shape
    border = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
    if perspective:
        im = cv2.warpPerspective(im, M, dsize=(w, h), borderValue=border)
    else:
        im = cv2.warpAffine(im, M[:2], dsize=(w, h), borderValue=border)
    if len(labels):
        new = transform_boxes(labels[:, 1:5], M, bool(perspective))
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, w)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, h)
        keep = box_candidates(labels[:, 1:5].T * s, new.T, area_thr=area_thr)
        labels = np.concatenate((labels[keep, :1], new[keep]), 1).astype(np.float32)
    return im, labels


def augment_hsv(im: np.ndarray, rng: np.random.Generator, hgain=0.5, sgain=0.5, vgain=0.5) -> np.ndarray:
    """Random hue, saturation and value gains on a BGR uint8 image (in place; also returned)."""
    if not (hgain or sgain or vgain):
        return im
    r = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)
    return im


def flip_lr(im: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of an image and its pixel xyxy labels."""
    w = im.shape[1]
    labels = labels.copy()
    labels[:, [1, 3]] = w - labels[:, [3, 1]]
    return cv2.flip(im, 1), labels


def flip_ud(im: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertical flip of an image and its pixel xyxy labels."""
    h = im.shape[0]
    labels = labels.copy()
    labels[:, [2, 4]] = h - labels[:, [4, 2]]
    return cv2.flip(im, 0), labels


def mosaic_canvas(
    tiles: list[np.ndarray], tile_labels: list[np.ndarray], size: int, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Place 4 images around `center` (x, y) of a 2*size square canvas (YOLOv5 layout).

    `tile_labels` are (n, 5) normalised [class, cx, cy, w, h] of each tile; returns the
    canvas and the pixel xyxy labels on it (clipped to the canvas, not yet filtered).
    """
    s = size
    xc, yc = int(center[0]), int(center[1])
    canvas = np.full((2 * s, 2 * s, tiles[0].shape[2]), PAD_VALUE, dtype=np.uint8)
    out = []
    for k, (im, lb) in enumerate(zip(tiles, tile_labels)):
        h, w = im.shape[:2]
        if k == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, s * 2), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(s * 2, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, s * 2), min(s * 2, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = im[y1b:y2b, x1b:x2b]
        if len(lb):
            out.append(xywhn_to_xyxy(lb, w, h, x1a - x1b, y1a - y1b))
    labels = np.concatenate(out, 0) if out else np.zeros((0, 5), dtype=np.float32)
    labels[:, 1:] = labels[:, 1:].clip(0, 2 * s)
    return canvas, labels


def mixup(
    im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two equally sized images (ratio ~ Beta(32, 32)) and keep both label sets."""
    r = rng.beta(32.0, 32.0)
    im = cv2.addWeighted(im, r, im2, 1 - r, 0.0)
    return im, np.concatenate((labels, labels2), 0)
