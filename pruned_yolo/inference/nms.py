"""Non-maximum suppression without torchvision (OpenCV's batched NMS, or numpy)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..utils.boxes import box_iou, xywh2xyxy


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS on xyxy boxes; indices kept, by decreasing score (stable on ties)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_thres]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float, backend: str = "opencv"
) -> np.ndarray:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Returns kept indices sorted by decreasing score.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if backend == "opencv":
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
        keep = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.astype(np.float32).tolist(), classes.astype(np.int32).tolist(), -1.0, iou_thres
        )
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        return keep[np.argsort(-scores[keep], kind="stable")]
    # numpy: offset boxes by class so that different classes never overlap
    offset = classes[:, None].astype(np.float64) * (np.abs(boxes).max() * 2 + 1)
    return nms_numpy(boxes + offset, scores, iou_thres)


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
    class above `conf_thres`, otherwise only with its best class.
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    out = []
    pred = prediction.detach().float().cpu().numpy()
    for x in pred:
        x = x[x[:, 4] > conf_thres]
        cls_conf = x[:, 5:] * x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = np.nonzero(cls_conf > conf_thres)
            det = np.concatenate([box[i], cls_conf[i, j, None], j[:, None].astype(np.float32)], 1)
        else:
            j = cls_conf.argmax(1) if len(x) else np.zeros(0, dtype=np.int64)
            conf = cls_conf[np.arange(len(x)), j] if len(x) else np.zeros(0, dtype=np.float32)
            det = np.concatenate([box, conf[:, None], j[:, None].astype(np.float32)], 1)[conf > conf_thres]
        if classes is not None:
            det = det[np.isin(det[:, 5].astype(int), classes)]
        if len(det) > max_nms:
            det = det[np.argsort(-det[:, 4], kind="stable")[:max_nms]]
        groups = np.zeros(len(det), dtype=np.int64) if agnostic else det[:, 5].astype(np.int64)
        keep = batched_nms(det[:, :4], det[:, 4], groups, iou_thres, backend)[:max_det]
        out.append(torch.from_numpy(np.ascontiguousarray(det[keep], dtype=np.float32)))
    return out
