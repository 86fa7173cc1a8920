"""The per-epoch results of a run: one `results.csv` row and one log line per epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..utils.files import atomic_write
from .optim import GROUP_NAMES

LOSS_NAMES = ("box_loss", "obj_loss", "cls_loss")
METRIC_NAMES = ("precision", "recall", "mAP50", "mAP50-95")


def epoch_row(epoch: int, losses: list[float], metrics: dict, lrs: list[float], seconds: float) -> dict[str, Any]:
    """The `results.csv` row of a finished epoch (1-based `epoch`); metrics only when validated."""
    row: dict[str, Any] = {"epoch": epoch}
    row.update({f"train/{n}": float(v) for n, v in zip(LOSS_NAMES, losses)})
    if metrics:
        row.update({f"metrics/{n}": metrics[n] for n in METRIC_NAMES})
    row.update({f"lr/{n}": lr for n, lr in zip(GROUP_NAMES, lrs)})
    row["time/epoch_s"] = round(seconds, 2)
    return row


def write_results(path: str | Path, history: list[dict]) -> Path:
    """`results.csv` of all rows so far (atomically): the known columns first, then the extra ones."""
    canonical = ["epoch", *(f"train/{n}" for n in LOSS_NAMES), *(f"metrics/{n}" for n in METRIC_NAMES)]
    canonical += [f"lr/{n}" for n in GROUP_NAMES] + ["time/epoch_s"]
    keys = [k for k in canonical if any(k in row for row in history)]
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write(path, lambda p: p.write_text(buf.getvalue()))


def epoch_line(epoch: int, epochs: int, row: dict, seconds: float) -> str:
    """The one log line of a finished epoch: losses, and the validation metrics when there are any."""
    losses = " ".join(f"{n} {row[f'train/{n}_loss']:.4f}" for n in ("box", "obj", "cls") if f"train/{n}_loss" in row)
    line = f"epoch {epoch}/{epochs}: loss {losses}"
    if "metrics/mAP50-95" in row:
        line += (
            f", P {row['metrics/precision']:.3f} R {row['metrics/recall']:.3f} "
            f"mAP50 {row['metrics/mAP50']:.3f} mAP50-95 {row['metrics/mAP50-95']:.3f}"
        )
    return f"{line} ({seconds:.1f}s)"


__all__ = ["LOSS_NAMES", "METRIC_NAMES", "epoch_line", "epoch_row", "write_results"]
