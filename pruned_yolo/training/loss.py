"""The YOLOv5 detection loss: CIoU box loss, IoU-target objectness, class BCE.

Pure functions and one small class, no training loop. `DetectionLoss(model, hyp, imgsz)`
is called on the raw training outputs of `model` (a list of (bs, na, ny, nx, no) maps)
and the batch targets (n, 6: image slot, class, cx, cy, w, h normalised to [0, 1]); it
returns `(loss * bs, [box, obj, cls] detached)` exactly as YOLOv5 does.

Target assignment (per pyramid level, vectorised over all targets and anchors):

* a ground truth matches an anchor when `max(r, 1/r) < anchor_t` for both ratios
  `r = gt_wh / anchor_wh` (in grid units);
* besides its own cell, a matched target is also assigned to the two neighbouring cells
  nearest to its centre (offset 0.5), so up to 3 cells per anchor;
* box regression: `xy = 2 * sigmoid - 0.5` (range -0.5..1.5 around the cell),
  `wh = (2 * sigmoid)^2 * anchor`; box loss = mean(1 - CIoU);
* objectness target = detached CIoU clamped at 0 (gr = 1), BCE per level weighted by
  [4.0, 1.0, 0.4] (P3, P4, P5);
* class BCE over the matched cells (label smoothing `label_smoothing`, default 0).

The gains `box`, `obj`, `cls` of the hyp file are given for 3 levels, 80 classes and
640 pixels; they are rescaled here (box *= 3/nl, cls *= nc/80 * 3/nl,
obj *= (imgsz/640)^2 * 3/nl) as YOLOv5's train.py does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LEVEL_BALANCE = {3: [4.0, 1.0, 0.4]}
LEVEL_BALANCE_DEFAULT = [4.0, 1.0, 0.25, 0.06, 0.02]


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired (cx, cy, w, h) boxes, (n, 4) x (n, 4) -> (n,)."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1_x2, b2_x2) - torch.max(b1_x1, b2_x1)).clamp(0) * (
        torch.min(b1_y2, b2_y2) - torch.max(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1_x2, b2_x2) - torch.min(b1_x1, b2_x1)  # enclosing box
    ch = torch.max(b1_y2, b2_y2) - torch.min(b1_y1, b2_y1)
    c2 = cw**2 + ch**2 + eps  # squared enclosing diagonal
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2  # squared centre distance
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def scaled_gains(hyp: dict, nl: int, nc: int, imgsz: int) -> dict[str, float]:
    """The hyp's box/obj/cls gains rescaled to `nl` levels, `nc` classes and `imgsz` pixels."""
    return {
        "box": float(hyp["box"]) * 3 / nl,
        "cls": float(hyp["cls"]) * nc / 80 * 3 / nl,
        "obj": float(hyp["obj"]) * (imgsz / 640) ** 2 * 3 / nl,
    }


class DetectionLoss:
    """YOLOv5 loss for a model whose last layer is `Detect` (see the module docstring).

    `hyp` needs `box`, `obj`, `cls` and `anchor_t`; `cls_pw`, `obj_pw` (BCE positive
    weights) and `label_smoothing` are optional. `imgsz` is the training image size.
    """

    def __init__(self, model: nn.Module, hyp: dict, imgsz: int = 640):
        detect = model.detect if hasattr(model, "detect") else model.module.detect
        device = next(detect.parameters()).device
        self.nc, self.nl, self.na = detect.nc, detect.nl, detect.na
        # anchors in grid units of each level
        self.anchors = (detect.anchor_px / detect.stride.view(-1, 1, 1)).to(device)
        self.gains = scaled_gains(hyp, self.nl, self.nc, imgsz)
        self.anchor_t = float(hyp.get("anchor_t", 4.0))
        self.balance = LEVEL_BALANCE.get(self.nl, LEVEL_BALANCE_DEFAULT[: self.nl])
        eps = float(hyp.get("label_smoothing", 0.0))
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps
        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp.get("cls_pw", 1.0))], device=device))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp.get("obj_pw", 1.0))], device=device))
        self.gr = 1.0
        g = 0.5
        self._offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device).float() * g

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = preds[0].device
        targets = targets.to(device)
        lbox = torch.zeros(1, device=device)
        lobj = torch.zeros(1, device=device)
        lcls = torch.zeros(1, device=device)
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        for i, p in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = p[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox = lbox + (1.0 - iou).mean()
                iou = iou.detach().clamp(0).to(tobj.dtype)
                if self.gr < 1:
                    iou = (1.0 - self.gr) + self.gr * iou
                tobj[b, a, gj, gi] = iou
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(n, device=device), tcls[i]] = self.cp
                    lcls = lcls + self.bce_cls(pcls, t)
            lobj = lobj + self.bce_obj(p[..., 4], tobj) * self.balance[i]
        lbox = lbox * self.gains["box"]
        lobj = lobj * self.gains["obj"]
        lcls = lcls * self.gains["cls"]
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor):
        """Per level: target classes, boxes (xy offset in cell, wh in grid units),
        indices (image, anchor, grid y, grid x) and the matched anchors."""
        na, nt = self.na, targets.shape[0]
        device = targets.device
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=device)
        ai = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[..., None]), 2)  # (na, nt, 7): + anchor index
        g = 0.5
        for i in range(self.nl):
            anchors, shape = self.anchors[i], preds[i].shape
            gain[2:6] = torch.tensor(shape, device=device)[[3, 2, 3, 2]].float()
            t = targets * gain  # to grid units
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                keep = torch.max(r, 1 / r).max(2)[0] < self.anchor_t
                t = t[keep]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                l, m = ((gxi % 1 < g) & (gxi > 1)).T
                sel = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[sel]
                offsets = (torch.zeros_like(gxy)[None] + self._offsets[:, None])[sel]
            else:
                t = targets[0]
                offsets = torch.zeros((0, 2), device=device)
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gi = gij[:, 0].clamp(0, shape[3] - 1)
            gj = gij[:, 1].clamp(0, shape[2] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
