"""Fast COCO-protocol AP in numpy (same matching and 101-point interpolation as pycocotools).

Used for per-epoch validation; `coco.py` runs the official evaluator for reported numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..utils.boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100


@dataclass
class Matches:
    """Per-detection records of one image: class, score and TP flag per IoU threshold."""

    classes: np.ndarray  # (n,)
    scores: np.ndarray  # (n,)
    tp: np.ndarray  # (n, 10) bool


def match_image(dets: np.ndarray, gt_cls: np.ndarray, gt_xyxy: np.ndarray) -> Matches:
    """COCO greedy matching of one image's detections (x1, y1, x2, y2, conf, cls) to its ground truth.

    Per class, detections in decreasing score (at most 100) take the unmatched ground truth
    with the highest IoU above each threshold.
    """
    out_cls, out_score, out_tp = [], [], []
    for c in np.unique(np.concatenate([dets[:, 5].astype(int), gt_cls.astype(int)])):
        d = dets[dets[:, 5].astype(int) == c]
        if not len(d):
            continue
        d = d[np.argsort(-d[:, 4], kind="mergesort")[:MAX_DETS]]
        g = gt_xyxy[gt_cls.astype(int) == c]
        tp = np.zeros((len(d), len(IOU_THRESHOLDS)), dtype=bool)
        if len(g):
            ious = box_iou(d[:, :4], g)
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(g), dtype=bool)
                for k in range(len(d)):
                    cand = np.where(taken, -1.0, ious[k])
                    best = len(cand) - 1 - np.argmax(cand[::-1])  # ties: the last, as pycocotools
                    if cand[best] >= min(thr, 1 - 1e-10):
                        taken[best] = True
                        tp[k, t] = True
        out_cls.append(np.full(len(d), c))
        out_score.append(d[:, 4])
        out_tp.append(tp)
    if not out_cls:
        return Matches(np.zeros(0, int), np.zeros(0), np.zeros((0, len(IOU_THRESHOLDS)), bool))
    return Matches(np.concatenate(out_cls), np.concatenate(out_score), np.concatenate(out_tp))


@dataclass
class APResult:
    ap: np.ndarray  # (classes with ground truth, 10)
    classes: np.ndarray  # class ids of the rows of `ap`
    precision: float
    recall: float

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if len(self.ap) else 0.0

    @property
    def map(self) -> float:
        return float(self.ap.mean()) if len(self.ap) else 0.0


def _interpolated_ap(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """COCO AP per threshold from TP flags sorted by decreasing score: (n, T) -> (T,)."""
    tpc = np.cumsum(tp, 0, dtype=np.float64)
    fpc = np.cumsum(~tp, 0, dtype=np.float64)
    aps = np.zeros(tp.shape[1])
    for t in range(tp.shape[1]):
        if not len(tp):
            break
        rc = tpc[:, t] / n_gt
        pr = tpc[:, t] / (tpc[:, t] + fpc[:, t] + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        idx = np.searchsorted(rc, RECALL_POINTS, side="left")
        q = np.where(idx < len(pr), pr[np.minimum(idx, len(pr) - 1)], 0.0)
        aps[t] = q.mean()
    return aps


def _f1_operating_point(per_class: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[float, float]:
    """Mean precision and recall at the confidence that maximises the mean F1 (IoU 0.5)."""
    if not per_class:
        return 0.0, 0.0
    px = np.linspace(0, 1, 1000)
    p = np.zeros((len(per_class), len(px)))
    r = np.zeros_like(p)
    for i, (scores, tp50, n_gt) in enumerate(per_class):
        if not len(scores):
            continue
        tpc = np.cumsum(tp50)
        fpc = np.cumsum(~tp50)
        r[i] = np.interp(-px, -scores, tpc / n_gt, left=0)
        p[i] = np.interp(-px, -scores, tpc / (tpc + fpc), left=1)
    f1 = 2 * p * r / (p + r + 1e-16)
    k = int(np.convolve(f1.mean(0), np.ones(11) / 11, mode="same").argmax())
    return float(p[:, k].mean()), float(r[:, k].mean())


def compute_ap(matches: list[Matches], gt_classes: list[np.ndarray]) -> APResult:
    """Accumulate per-image matches (in image order) into per-class AP and P/R."""
    n_gt = np.bincount(np.concatenate([g.astype(int) for g in gt_classes] + [np.zeros(0, int)]))
    cls = np.concatenate([m.classes for m in matches]) if matches else np.zeros(0, int)
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    tp = np.concatenate([m.tp for m in matches]) if matches else np.zeros((0, len(IOU_THRESHOLDS)), bool)
    rows, ids, pr_inputs = [], [], []
    for c in np.nonzero(n_gt)[0]:
        sel = cls == c
        order = np.argsort(-scores[sel], kind="mergesort")
        tpc = tp[sel][order]
        rows.append(_interpolated_ap(tpc, n_gt[c]))
        ids.append(c)
        pr_inputs.append((scores[sel][order], tpc[:, 0], n_gt[c]))
    ap = np.array(rows).reshape(-1, len(IOU_THRESHOLDS))
    p, r = _f1_operating_point(pr_inputs)
    return APResult(ap, np.array(ids, dtype=int), p, r)
