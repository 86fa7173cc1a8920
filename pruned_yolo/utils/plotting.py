"""Drawing boxes on images (annotated predictions, label previews)."""

from __future__ import annotations

import cv2
import numpy as np

_PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
    (200, 149, 255),
    (199, 55, 255),
]


def class_color(c: int) -> tuple[int, int, int]:
    return _PALETTE[int(c) % len(_PALETTE)]


def draw_boxes(
    im: np.ndarray, boxes: np.ndarray, classes: np.ndarray, names: list[str], scores: np.ndarray | None = None
) -> np.ndarray:
    """Draw xyxy pixel boxes with 'name conf' captions on a BGR image (returns a copy)."""
    im = np.ascontiguousarray(im.copy())
    lw = max(round(sum(im.shape[:2]) / 2 * 0.003), 1)
    for k, (box, c) in enumerate(zip(boxes, classes)):
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        color = class_color(int(c))
        cv2.rectangle(im, (x1, y1), (x2, y2), color, lw, cv2.LINE_AA)
        name = names[int(c)] if int(c) < len(names) else str(int(c))
        text = name if scores is None else f"{name} {scores[k]:.2f}"
        fs = max(lw / 3, 0.4)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, max(lw - 1, 1))
        top = y1 - th - 3 >= 0
        p2 = (x1 + tw, y1 - th - 3 if top else y1 + th + 3)
        cv2.rectangle(im, (x1, y1), p2, color, -1, cv2.LINE_AA)
        org = (x1, y1 - 2 if top else y1 + th + 2)
        cv2.putText(im, text, org, cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), max(lw - 1, 1), cv2.LINE_AA)
    return im


def plot_batch(imgs, targets, names, path, max_images: int = 16, paths=None, max_size: int = 1920):
    """Save a grid of the first `max_images` images of a batch with their boxes as a JPEG.

    imgs: (B, 3, H, W) RGB, uint8 or float in [0, 1] (tensor or array); targets: (N, 6)
    `[slot, class, cx, cy, w, h]` normalised (a 7th column, if any, is drawn as a score);
    paths: optional per-image file names written under each tile. Returns the path.
    """
    from pathlib import Path

    import torch

    if isinstance(imgs, torch.Tensor):
        imgs = imgs.detach().cpu().float().numpy() if imgs.dtype != torch.uint8 else imgs.cpu().numpy()
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().float().numpy()
    imgs = np.asarray(imgs)
    targets = np.asarray(targets, dtype=np.float32).reshape(-1, targets.shape[-1] if len(targets) else 6)
    if imgs.dtype != np.uint8:
        imgs = (imgs * (255 if imgs.max() <= 1.0 else 1)).clip(0, 255).astype(np.uint8)
    bs = min(len(imgs), max_images)
    _, _, h, w = imgs.shape
    ns = max(int(np.ceil(bs**0.5)), 1)
    scale = min(1.0, max_size / (ns * max(h, w)))
    th, tw = int(round(h * scale)), int(round(w * scale))
    grid = np.full((ns * th, ns * tw, 3), 255, dtype=np.uint8)
    names = list(names)
    for k in range(bs):
        tile = np.ascontiguousarray(imgs[k].transpose(1, 2, 0)[..., ::-1])  # RGB CHW -> BGR HWC
        if scale != 1:
            tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA)
        t = targets[targets[:, 0] == k]
        if len(t):
            boxes = np.stack(
                (
                    (t[:, 2] - t[:, 4] / 2) * tw,
                    (t[:, 3] - t[:, 5] / 2) * th,
                    (t[:, 2] + t[:, 4] / 2) * tw,
                    (t[:, 3] + t[:, 5] / 2) * th,
                ),
                1,
            )
            scores = t[:, 6] if t.shape[1] > 6 else None
            tile = draw_boxes(tile, boxes, t[:, 1].astype(int), names, scores)
        if paths is not None and k < len(paths):
            cv2.putText(
                tile, Path(str(paths[k])).name[:40], (5, th - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                cv2.LINE_AA,
            )  # fmt: skip
        r, c = divmod(k, ns)
        grid[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = tile
        cv2.rectangle(grid, (c * tw, r * th), ((c + 1) * tw - 1, (r + 1) * th - 1), (255, 255, 255), 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"cannot write {path}")
    return path
