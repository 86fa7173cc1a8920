"""Argument groups shared by several commands."""

from __future__ import annotations

import argparse


def add_weights(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--weights",
        required=required,
        metavar="W",
        help="checkpoint: ours (.safetensors) or an official ultralytics YOLOv5 .pt",
    )


def add_group_normalize(p: argparse.ArgumentParser) -> None:
    """`--group-normalize` of `prune` and `compress` (pruning.groups.GROUP_NORMALIZERS)."""
    p.add_argument(
        "--group-normalize",
        default="none",
        choices=["none", "mean"],
        help="mean: rank channels by their score relative to their group's mean (spreads pruning over layers)",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="", help="cpu, 0, cuda:1 ... (default: first GPU if any, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")


def add_inference(p: argparse.ArgumentParser, conf: float, iou: float) -> None:
    p.add_argument("--imgsz", type=int, default=640, help="inference size (pixels, long side)")
    p.add_argument("--batch", type=int, default=16, help="images per batch")
    p.add_argument("--conf", type=float, default=conf, help="confidence threshold")
    p.add_argument("--iou", type=float, default=iou, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--workers", type=int, default=2, help="data loading processes")


def setup_device(args: argparse.Namespace):
    from ..utils.torch_utils import select_device, set_cpu_threads

    set_cpu_threads(args.threads)
    device = select_device(args.device)
    if args.half and device.type != "cuda":
        from ..errors import PrunedYoloError

        raise PrunedYoloError("--half needs a CUDA device")
    return device
