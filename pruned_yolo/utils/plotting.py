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
