"""pruned-yolo info: parameters, GFLOPs and per-layer widths."""

from __future__ import annotations

HELP = "show a model's parameters, GFLOPs and per-layer widths"


def add_arguments(p):
    from .common import imgsz, output_file, positive_int

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="W", help="checkpoint (ours or an official .pt)")
    src.add_argument("--cfg", metavar="C", help="model YAML path or shipped name (yolov5s, yolov5l-v4, ...)")
    p.add_argument("--nc", type=positive_int, default=None, help="number of classes for --cfg (default: the YAML's)")
    p.add_argument("--imgsz", type=imgsz, default=640, help="input size for the FLOP count")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write params, gflops and the widths as JSON")


def run(args):
    from ..checkpoint import load_model
    from ..models import build_model
    from ..models.summary import format_info, model_info
    from ..utils.files import write_json

    model = load_model(args.weights) if args.weights else build_model(args.cfg, args.nc)
    info = model_info(model, args.imgsz)
    print(format_info(info, name=args.weights or args.cfg))
    if args.json:
        write_json(args.json, {**info, "source": args.weights or args.cfg})
