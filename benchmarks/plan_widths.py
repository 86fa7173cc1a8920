"""Per-layer widths that each ranking plans for the HIT-UAV dense model (no training).

Prunes `yolov5s_hituav320.safetensors` to 50% of its GFLOPs and to yolov5n's GFLOPs at
320 px with several rankings and floors, and lists every conv's kept output channels beside
the dense model and yolov5n. It shows where a plan makes 8-16-channel bottlenecks (the
floor `per_layer_ratio` is the only guard) and which layers a ranking never prunes.

    .venv/bin/python benchmarks/plan_widths.py

Writes benchmarks/results/plan_widths.{json,md}.
"""

from __future__ import annotations

import torch
from common import SHARED, markdown_table, write_results
from torch import nn

from pruned_yolo import load_model
from pruned_yolo.models import build_model
from pruned_yolo.pruning import prune
from pruned_yolo.utils.torch_utils import gflops

DENSE = SHARED / "weights" / "yolov5s_hituav320.safetensors"
IMGSZ = 320
# (column, budget, pruning settings); "n" budgets are yolov5n's GFLOPs at IMGSZ
PLANS = [
    ("50 bn-kernel", 0.5, {}),
    ("50 bn-kernel floor .25", 0.5, {"per_layer_ratio": 0.25}),
    ("50 bn-kernel gn", 0.5, {"group_normalize": "mean"}),
    ("50 bn", 0.5, {"importance": "bn"}),
    ("n bn-kernel", "n", {}),
    ("n bn-kernel floor .25", "n", {"per_layer_ratio": 0.25}),
    ("n bn-kernel gn", "n", {"group_normalize": "mean"}),
]


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Output channels of every conv outside Detect, by module name."""
    return {
        name.removeprefix("model."): m.out_channels
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and ".24." not in name and "detect" not in name
    }


def main() -> None:
    torch.set_num_threads(1)
    dense = load_model(DENSE)
    nano = build_model("yolov5n", nc=len(dense.names))
    columns = {"dense": conv_widths(dense), "yolov5n": conv_widths(nano)}
    totals = {"dense": sum(p.numel() for p in dense.parameters()), "yolov5n": sum(p.numel() for p in nano.parameters())}
    budgets = {0.5: {"target_flops_ratio": 0.5}, "n": {"target_gflops": gflops(nano, IMGSZ)}}
    for label, budget, settings in PLANS:
        kwargs = {"importance": "bn-kernel", "imgsz": IMGSZ, **budgets[budget], **settings}
        pruned, _ = prune(load_model(DENSE), **kwargs)
        columns[label] = conv_widths(pruned)
        totals[label] = sum(p.numel() for p in pruned.parameters())
    layers = list(columns["dense"])
    rows = [{"layer": layer, **{c: w[layer] for c, w in columns.items()}} for layer in layers]
    rows.append({"layer": "params", **totals})
    doc = {"model": str(DENSE.name), "imgsz": IMGSZ, "plans": [p[0] for p in PLANS], "widths": rows}
    table = [("layer", "layer", "`{}`"), *[(c, c, "{:,}") for c in columns]]
    md = [
        "# Planned per-layer widths (no training)",
        "",
        f"`{DENSE.name}` pruned at {IMGSZ} px; kept output channels of every conv (Detect excluded). "
        "Command: `.venv/bin/python benchmarks/plan_widths.py`.",
        "",
        *markdown_table(rows, table),
    ]
    write_results("plan_widths", doc, md)


if __name__ == "__main__":
    main()
