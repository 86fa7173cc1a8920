"""Output distillation from the dense model during fine-tuning (beyond the paper).

The pruned student and the dense teacher share the Detect layout (pruning never touches
Detect outputs), so their raw maps (bs, na, ny, nx, 5 + nc) align cell by cell. The
distillation term, added to the detection loss in the `on_loss` event:

* objectness: BCE between the student's objectness logits and the teacher's objectness
  probabilities, over every cell, with YOLOv5's per-level balance;
* on the teacher's positive cells, weighted by the teacher's objectness probability:
  squared error between student and teacher box outputs (xy = 2 sigmoid - 0.5,
  wh = (2 sigmoid)^2, in grid/anchor units) and BCE between the class logits and the
  teacher's class probabilities.

Each term is scaled like its detection-loss counterpart (the loss's box/obj/cls gains,
x batch size) and the sum by `weight`. Without the gains the box term alone had 25x the
gradient norm of the whole detection loss on yolov5s (measured: 212 vs 8), so gradient
clipping shrank every other update, the sparsity penalty included, by as much.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..training.hooks import Callback, register_callback
from ..training.loss import LEVEL_BALANCE, LEVEL_BALANCE_DEFAULT


def _box(p: torch.Tensor) -> torch.Tensor:
    s = p[..., :4].sigmoid()
    return torch.cat((s[..., :2] * 2 - 0.5, (s[..., 2:4] * 2) ** 2), -1)


def distillation_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], pos_thres: float = 0.1, gains: dict | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-image distillation loss between raw training maps of a student and its teacher.

    `gains` ({"box", "obj", "cls"}, default 1 each) weight the three terms. Returns (loss
    summed over the weighted terms, per image; {term: weighted value}).
    """
    balance = LEVEL_BALANCE.get(len(student), LEVEL_BALANCE_DEFAULT)
    obj = box = cls = student[0].new_zeros(())
    for level, (ps, pt) in enumerate(zip(student, teacher)):
        pt = pt.detach().to(ps.dtype)
        t_obj = pt[..., 4].sigmoid()
        obj = obj + balance[level] * F.binary_cross_entropy_with_logits(ps[..., 4], t_obj)
        weight = torch.where(t_obj > pos_thres, t_obj, torch.zeros_like(t_obj))
        norm = weight.sum().clamp_min(1.0)
        box = box + (weight * (_box(ps) - _box(pt)).pow(2).sum(-1)).sum() / norm
        if ps.shape[-1] > 5:
            bce = F.binary_cross_entropy_with_logits(ps[..., 5:], pt[..., 5:].sigmoid(), reduction="none").mean(-1)
            cls = cls + (weight * bce).sum() / norm
    if gains:
        obj, box, cls = obj * gains["obj"], box * gains["box"], cls * gains["cls"]
    total = obj + box + cls
    return total, {"obj": float(obj.detach()), "box": float(box.detach()), "cls": float(cls.detach())}


@register_callback("distill")
class DistillationCallback(Callback):
    """Adds `weight * distillation_loss(student, teacher) * batch` to the training loss.

    `teacher` is a model or a checkpoint path; only a path makes the callback resumable by name."""

    def __init__(self, teacher: nn.Module | str | Path, weight: float = 1.0, pos_thres: float = 0.1):
        self.teacher_path = None if isinstance(teacher, nn.Module) else str(teacher)
        if self.teacher_path is not None:
            from ..checkpoint import load_model

            teacher = load_model(self.teacher_path)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight = weight
        self.pos_thres = pos_thres

    def spec_args(self) -> dict | None:
        if self.teacher_path is None:
            return None
        return {"teacher": self.teacher_path, "weight": self.weight, "pos_thres": self.pos_thres}

    def on_train_start(self, trainer) -> None:
        self.teacher.to(trainer.device)

    def on_loss(self, trainer) -> None:
        with torch.no_grad():
            out = self.teacher(trainer.imgs)
        raw = out[1] if isinstance(out, tuple) else out
        gains = getattr(trainer.loss_fn, "gains", None)
        loss, items = distillation_loss(trainer.preds, raw, self.pos_thres, gains)
        scale = self.weight * trainer.imgs.shape[0] * max(trainer.world_size, 1)
        trainer.loss = trainer.loss + loss * scale
        trainer.extra_loss_items["distill"] = float(loss.detach()) * self.weight
