"""results.csv -> results.png: training losses, metrics and learning rates per epoch."""

from __future__ import annotations

import csv
from pathlib import Path

PANELS = (
    ("train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall"),
    ("lr/weights", "lr/bn", "lr/biases", "metrics/mAP50", "metrics/mAP50-95"),
)


def read_results(path: str | Path) -> list[dict[str, float]]:
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                try:
                    parsed[k.strip()] = float(v)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


def plot_results(csv_path: str | Path, out: str | Path | None = None) -> Path:
    """Draw every known column of `results.csv` (2 x 5 panels) into `results.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = Path(csv_path)
    out = Path(out) if out else csv_path.with_name("results.png")
    rows = read_results(csv_path)
    fig, axes = plt.subplots(2, 5, figsize=(15, 6), tight_layout=True)
    for r, panel in enumerate(PANELS):
        for c, key in enumerate(panel):
            ax = axes[r][c]
            xs = [row["epoch"] for row in rows if key in row]
            ys = [row[key] for row in rows if key in row]
            if xs:
                ax.plot(xs, ys, marker=".", linewidth=2, markersize=6)
            ax.set_title(key, fontsize=11)
            ax.set_xlabel("epoch")
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
