"""Official COCO evaluation (pycocotools or faster-coco-eval) on ground truth built from YOLO labels."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..errors import PrunedYoloError

BACKENDS = ("pycocotools", "faster-coco-eval")


def coco_ground_truth(shapes: np.ndarray, labels: list[np.ndarray], names: list[str]) -> dict:
    """COCO-format ground truth; image ids are the positions in `shapes`/`labels`."""
    images, annotations = [], []
    for img_id, ((h, w), rows) in enumerate(zip(shapes.tolist(), labels)):
        images.append({"id": img_id, "height": int(h), "width": int(w)})
        for c, cx, cy, bw, bh in rows.tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": int(c),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": n} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(image_id: int, dets: np.ndarray) -> list[dict]:
    """(n, 6) xyxy, conf, cls in original pixels -> COCO result dicts."""
    out = []
    for x1, y1, x2, y2, conf, cls in dets.tolist():
        out.append(
            {
                "image_id": image_id,
                "category_id": int(cls),
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "score": round(conf, 5),
            }
        )
    return out


def coco_evaluate(gt: dict, results: list[dict], backend: str = "pycocotools") -> dict:
    """Run COCOeval on boxes; returns mAP50-95, mAP50 and per-class AP50-95 / AP50."""
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    elif backend == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        raise PrunedYoloError(f"unknown COCO backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if not results:
        return {"mAP50-95": 0.0, "mAP50": 0.0, "per_class": {}}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # T, R, K at area=all, maxDets=100
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k]
        if (p > -1).any():
            per_class[int(cat)] = {"AP50-95": float(p[p > -1].mean()), "AP50": float(p[0][p[0] > -1].mean())}
    return {"mAP50-95": float(ev.stats[0]), "mAP50": float(ev.stats[1]), "per_class": per_class}
