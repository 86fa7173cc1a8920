"""Validation: run a model over a split and score it with the COCO protocol.

`Validator` indexes the split once, so training can call it every epoch cheaply.
Reported mAP comes from the official COCO evaluator when `official=True`, else from
the fast numpy implementation in `metrics.py` (same protocol; used per epoch).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.config import DataConfig, label_path, load_data_config
from ..data.index import DatasetIndex, index_images
from ..data.val_dataset import ValDataset, val_loader
from ..errors import DataError
from ..inference.nms import non_max_suppression
from ..utils.boxes import unletterbox_boxes, xywh2xyxy
from ..utils.files import write_json
from ..utils.torch_utils import prepare_for_inference, recalibrate_bn
from .coco import coco_evaluate, coco_ground_truth, detections_to_coco
from .metrics import compute_ap, match_image

LOGGER = logging.getLogger("pruned_yolo")


class Validator:
    """Scores models on one split of a dataset with fixed settings.

    The model is a torch detector or any callable that returns the same decoded eval
    output for a (bs, 3, h, w) batch in [0, 1], e.g. an ONNX export (`export.OnnxModel`).
    """

    def __init__(
        self,
        data: str | Path | DataConfig,
        split: str = "val",
        imgsz: int = 640,
        batch_size: int = 16,
        conf_thres: float = 0.001,
        iou_thres: float = 0.6,
        max_det: int = 300,
        workers: int = 2,
        letterbox: str = "auto",
        index: DatasetIndex | None = None,
    ):
        self.data = data if isinstance(data, DataConfig) else load_data_config(data)
        self.split = split
        if index is None:
            images = self.data.images(split)
            index = index_images(images, self.data.nc)
            if not len(index):
                raise DataError(
                    f"{self.data.yaml_path}: no usable {split} images: all {len(images)} are unreadable "
                    "(see the warnings above)"
                )
        self.index = index
        self._check_ground_truth()
        self.dataset = ValDataset(self.index, imgsz, batch_size, mode=letterbox)
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.workers = workers
        self.names = list(self.data.names)
        self._warned_names: set[tuple[str, ...]] = set()

    def recalibrate_bn(self, model: torch.nn.Module, batches: int, device: torch.device | str = "cpu") -> int:
        """Re-estimate `model`'s BatchNorm statistics (in place) on the first `batches` batches of this
        split, letterboxed as for validation; returns the number of batches used. For checkpoints whose
        running statistics trail their weights (saved in the middle of fast changes)."""
        device = torch.device(device)
        model.to(device)
        loader = itertools.islice(val_loader(self.dataset, self.workers), batches)
        return recalibrate_bn(model, (ims.to(device).float() / 255 for ims, *_ in loader))

    def _check_ground_truth(self) -> None:
        """Without images or objects to find, every mAP would be a meaningless 0 (or -1)."""
        where, split, index = self.data.yaml_path, self.split, self.index
        if not len(index):
            raise DataError(f"{where}: no usable {split} images")
        if any(len(lb) for lb in index.labels):
            return
        if not any(label_path(p).is_file() for p in index.images):
            raise DataError(
                f"{where}: no labels found for the {len(index)} {split} images (YOLO .txt files such as "
                f"{label_path(index.images[0])}): mAP needs ground truth"
            )
        raise DataError(
            f"{where}: the {split} labels contain no objects (every label file is empty or only has invalid "
            "lines): mAP needs ground truth"
        )

    def _check_model_classes(self, model: torch.nn.Module, nc: int | None = None) -> None:
        """The model's classes must be the data's: an error if their number differs, a warning for names."""
        net = getattr(model, "module", model)  # DistributedDataParallel
        if nc is None:
            nc = getattr(net, "nc", None)
        if isinstance(nc, int) and nc != len(self.names):
            raise DataError(
                f"{self.data.yaml_path}: the model predicts {nc} classes but the data has {len(self.names)}, "
                "so class indices would not correspond; fine-tune it on this data first (`pruned-yolo train "
                "--weights W --data D` gives it a new Detect head)"
            )
        names = getattr(net, "names", None)
        if not isinstance(names, (list, tuple)) or len(names) != len(self.names):
            return
        names = tuple(str(n) for n in names)
        if names == tuple(self.names) or names == tuple(str(k) for k in range(len(names))):  # equal, or unnamed
            return
        if names not in self._warned_names:
            self._warned_names.add(names)
            diff = [f"{k}: {a!r} vs {b!r}" for k, (a, b) in enumerate(zip(names, self.names)) if a != b]
            LOGGER.warning(
                "WARNING class names of the model differ from %s (%s%s): classes are scored by index",
                self.data.yaml_path,
                ", ".join(diff[:3]),
                f", and {len(diff) - 3} more" if len(diff) > 3 else "",
            )

    @torch.no_grad()
    def __call__(
        self,
        model: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
        device: torch.device | str = "cpu",
        half: bool = False,
        official: bool = True,
        coco_backend: str = "pycocotools",
        save_json: str | Path | None = None,
        progress: bool = True,
        prepared: bool = False,
    ) -> dict:
        device = torch.device(device)
        self._check_model_classes(model)
        if not prepared and isinstance(model, torch.nn.Module):  # else a runtime (export.OnnxModel): as it is
            model = prepare_for_inference(model, device, half)
        ds = self.dataset
        all_dets: list[np.ndarray | None] = [None] * len(ds)
        t_pre = t_inf = t_nms = 0.0
        loader = val_loader(ds, self.workers)
        bar = tqdm(loader, desc="val", unit="batch", disable=not progress, leave=False)
        t0 = time.perf_counter()
        for ims, _targets, metas in bar:
            x = ims.to(device, non_blocking=True)
            x = (x.half() if half else x.float()) / 255
            t1 = time.perf_counter()
            pred = model(x)
            pred = pred[0] if isinstance(pred, tuple) else pred
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t2 = time.perf_counter()
            if not any(d is not None for d in all_dets):  # first batch: also for models without `nc`
                self._check_model_classes(model, nc=pred.shape[-1] - 5)
            dets = non_max_suppression(pred, self.conf_thres, self.iou_thres, multi_label=True, max_det=self.max_det)
            for d, meta in zip(dets, metas):
                d = d.numpy()
                if meta.get("missing"):  # could not be read any more: its objects count as missed
                    d = d[:0]
                unletterbox_boxes(d, meta["ratio"], meta["pad"], meta["shape0"])
                all_dets[meta["index"]] = d
            t3 = time.perf_counter()
            t_pre, t_inf, t_nms = t_pre + t1 - t0, t_inf + t2 - t1, t_nms + t3 - t2
            t0 = time.perf_counter()
        n = max(len(ds), 1)
        speed = {"preprocess": 1e3 * t_pre / n, "inference": 1e3 * t_inf / n, "nms": 1e3 * t_nms / n}
        return self._score(all_dets, speed, official, coco_backend, save_json)

    def _score(self, all_dets, speed, official, coco_backend, save_json) -> dict:
        ds = self.dataset
        gt_cls, matches = [], []
        for dets, labels, (h, w) in zip(all_dets, ds.labels, ds.shapes.tolist()):
            boxes = xywh2xyxy(labels[:, 1:].astype(np.float64)) * np.array([w, h, w, h])
            gt_cls.append(labels[:, 0])
            matches.append(match_image(dets, labels[:, 0], boxes))
        fast = compute_ap(matches, gt_cls)
        metrics = {
            "mAP50": fast.map50,
            "mAP50-95": fast.map,
            "precision": fast.precision,
            "recall": fast.recall,
            "speed_ms": speed,
            "images": len(ds),
            "instances": int(sum(len(c) for c in gt_cls)),
            "evaluator": "fast",
            "fast": {"mAP50": fast.map50, "mAP50-95": fast.map},
        }
        per_class = {int(c): {"AP50": float(a[0]), "AP50-95": float(a.mean())} for c, a in zip(fast.classes, fast.ap)}
        results = [r for i, d in enumerate(all_dets) for r in detections_to_coco(i, d)]
        if official:
            coco = coco_evaluate(coco_ground_truth(ds.shapes, ds.labels, self.names), results, coco_backend)
            metrics.update({"mAP50": coco["mAP50"], "mAP50-95": coco["mAP50-95"], "evaluator": coco_backend})
            per_class = coco["per_class"]
        counts = np.bincount(np.concatenate(gt_cls + [np.zeros(0)]).astype(int), minlength=len(self.names))
        images_with = [sum(int((c == k).any()) for c in gt_cls) for k in range(len(self.names))]
        metrics["per_class"] = [
            {"class": self.names[k], "images": images_with[k], "instances": int(counts[k]), **v}
            for k, v in sorted(per_class.items())
        ]
        if save_json:
            stems = [Path(p).stem for p in ds.images]
            unique = len(set(stems)) == len(stems)  # x.jpg and x.png (or a/x, b/x): ids by index instead
            for r in results:
                i = r["image_id"]
                r["file_name"] = str(ds.images[i])
                r["image_id"] = (int(stems[i]) if stems[i].isnumeric() else stems[i]) if unique else i
            write_json(save_json, results)
        return metrics


def format_metrics(metrics: dict, per_class: bool = False) -> str:
    """ultralytics-like table: all classes, then optionally one row per class, then speed."""
    head = f"{'Class':>20}{'Images':>10}{'Instances':>11}{'P':>10}{'R':>10}{'mAP50':>10}{'mAP50-95':>10}"
    row = (
        f"{'all':>20}{metrics['images']:>10}{metrics['instances']:>11}{metrics['precision']:>10.3f}"
        f"{metrics['recall']:>10.3f}{metrics['mAP50']:>10.3f}{metrics['mAP50-95']:>10.3f}"
    )
    lines = [head, row]
    if per_class:
        for c in metrics["per_class"]:
            lines.append(
                f"{c['class']:>20}{c['images']:>10}{c['instances']:>11}{'':>10}{'':>10}"
                f"{c['AP50']:>10.3f}{c['AP50-95']:>10.3f}"
            )
    s = metrics["speed_ms"]
    lines.append(
        f"Speed: {s['preprocess']:.1f}ms pre-process, {s['inference']:.1f}ms inference, "
        f"{s['nms']:.1f}ms NMS per image ({metrics['evaluator']} mAP)"
    )
    return "\n".join(lines)


def dump_metrics(path: str | Path, metrics: dict) -> None:
    write_json(path, json.loads(json.dumps(metrics)))
