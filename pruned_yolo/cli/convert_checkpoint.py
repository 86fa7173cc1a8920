"""pruned-yolo convert-checkpoint: official .pt (or ours) -> our safetensors format."""

from __future__ import annotations

HELP = "convert a checkpoint (e.g. an official YOLOv5 .pt) to our pickle-free format"


def add_arguments(p):
    p.add_argument("src", help="input checkpoint (.pt or .safetensors)")
    p.add_argument("dst", help="output .safetensors file, or a folder (then <src stem>.safetensors in it)")


def run(args):
    from ..checkpoint import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst)
    print(f"saved {out}")
