"""Non-maximum suppression without torchvision (OpenCV's batched NMS, or numpy)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..utils.boxes import box_iou, xywh2xyxy


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_thres: float, max_det: int | None = None) -> np.ndarray:
    """Greedy NMS on xyxy boxes; indices kept, by decreasing score (stable on ties).

    With `max_det` it stops once that many boxes are kept: greedy NMS decides boxes in
    score order and never revisits a decision, so these are exactly the first `max_det` of
    the full result.
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and (max_det is None or len(keep) < max_det):
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_thres]
    return np.asarray(keep, dtype=np.int64)


def _opencv_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float) -> np.ndarray:
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), scores.astype(np.float32).tolist(), classes.astype(np.int32).tolist(), -1.0, iou_thres
    )
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_thres: float,
    backend: str = "opencv",
    max_det: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Returns kept indices sorted by decreasing score; with `max_det`, the first `max_det` of
    them, found without running NMS over every box. Greedy NMS costs up to (boxes x kept)
    IoUs, so an untrained or freshly pruned model, whose tens of thousands of low, scattered
    candidates mostly survive, made it take seconds per image. The decision for a box depends
    only on the boxes scoring above it, so NMS over the top-scoring prefix of the candidates
    gives a prefix of the full result: the prefix grows (x4) until `max_det` boxes are kept
    or it covers every box, which gives the same result as one NMS over all.
    """
    n = len(boxes)
    if n == 0 or (max_det is not None and max_det <= 0):
        return np.zeros(0, dtype=np.int64)
    if backend != "opencv":
        # numpy: offset boxes by class so that different classes never overlap
        offset = classes[:, None].astype(np.float64) * (np.abs(boxes).max() * 2 + 1)
        return nms_numpy(boxes + offset, scores, iou_thres, max_det)
    if max_det is None or n <= 4 * max_det:
        keep = _opencv_nms(boxes, scores, classes, iou_thres)
        return keep if max_det is None else keep[:max_det]
    order = np.argsort(-scores, kind="stable")  # the kernel's own order: by score, ties by index
    size = 4 * max_det
    while True:
        top = order[:size]
        keep = top[_opencv_nms(boxes[top], scores[top], classes[top], iou_thres)]
        if len(keep) >= max_det or size >= n:
            return keep[:max_det]
        size *= 4


def _top_by_score(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, by decreasing score, ties by index (a stable sort's first k),
    without sorting all of them."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th highest score
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)[: k - len(above)]
        idx = np.concatenate([above, tied])
        idx.sort()
    else:
        idx = np.arange(len(scores))
    return idx[np.argsort(-scores[idx], kind="stable")]


def non_max_suppression(
    prediction: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
    backend: str = "opencv",
) -> list[torch.Tensor]:
    """Decoded predictions (bs, N, 5 + nc) -> per image (n, 6): x1, y1, x2, y2, conf, class.

    conf = objectness x class probability; with `multi_label` a box is kept once per
    class above `conf_thres`, otherwise only with its best class. At most `max_nms`
    candidates (the highest conf) enter NMS, and NMS stops at `max_det` kept boxes (same
    result as running it to the end; see `batched_nms`): an untrained or freshly pruned
    model has tens of thousands of candidates per image at conf 0.001.
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    out = []
    pred = prediction.detach().float().cpu().numpy()
    for x in pred:
        x = x[x[:, 4] > conf_thres]
        cls_conf = x[:, 5:] * x[:, 4:5]
        if multi_label:  # (box, class) pairs above the threshold, in box-major order
            i, j = np.nonzero(cls_conf > conf_thres)
            conf = cls_conf[i, j]
        else:
            j = cls_conf.argmax(1) if len(x) else np.zeros(0, dtype=np.int64)
            conf = cls_conf[np.arange(len(x)), j] if len(x) else np.zeros(0, dtype=np.float32)
            i = np.flatnonzero(conf > conf_thres)
            j, conf = j[i], conf[i]
        if classes is not None:
            sel = np.isin(j, classes)
            i, j, conf = i[sel], j[sel], conf[sel]
        top = _top_by_score(conf, max_nms)  # only these are ever expanded into boxes
        i, j, conf = i[top], j[top], conf[top]
        det = np.concatenate([xywh2xyxy(x[i, :4]), conf[:, None], j[:, None].astype(np.float32)], 1)
        groups = np.zeros(len(det), dtype=np.int64) if agnostic else j.astype(np.int64)
        keep = batched_nms(det[:, :4], det[:, 4], groups, iou_thres, backend, max_det=max_det)
        out.append(torch.from_numpy(np.ascontiguousarray(det[keep], dtype=np.float32)))
    return out
