"""pruned-yolo convert-checkpoint: official .pt (or ours) -> our safetensors format."""

from __future__ import annotations

HELP = "convert a checkpoint (e.g. an official YOLOv5 .pt) to our pickle-free format"


def add_arguments(p):
    p.add_argument("src", help="input checkpoint (.pt or .safetensors)")
    p.add_argument("dst", help="output .safetensors file, or a folder (then <src stem>.safetensors in it)")


def run(args):
    from pathlib import Path

    from ..checkpoint import SUFFIX, convert_checkpoint
    from ..errors import PrunedYoloError

    dst = Path(args.dst)
    # a new name with a suffix is a file path: never create a folder called out/conv.pt/
    if dst.suffix and dst.suffix != SUFFIX and not dst.is_dir():
        raise PrunedYoloError(f"DST {dst}: give a {SUFFIX} file or a folder")
    out = dst / (Path(args.src).stem + SUFFIX) if dst.is_dir() or not dst.suffix else dst
    if out.resolve() == Path(args.src).resolve():
        raise PrunedYoloError(f"DST {out} would overwrite SRC")
    out = convert_checkpoint(args.src, out)
    print(f"saved {out}")
