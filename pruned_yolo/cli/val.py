"""pruned-yolo val: COCO-protocol mAP of a checkpoint on a dataset split."""

from __future__ import annotations

from .common import add_device, add_inference, add_weights, output_file

HELP = "validate a checkpoint: P, R, mAP50, mAP50-95 (pycocotools) and speed"


def add_arguments(p):
    from ..data.val_dataset import LETTERBOX_MODES
    from ..evaluation.coco import BACKENDS

    add_weights(p)
    p.add_argument("--data", required=True, help="data YAML (ultralytics format)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="split to evaluate")
    add_inference(p, conf=0.001, iou=0.6)
    p.add_argument(
        "--letterbox",
        default="auto",
        choices=LETTERBOX_MODES,
        help="auto: per-image minimal padding; rect: YOLOv5 val.py batches; square: imgsz x imgsz",
    )
    p.add_argument("--per-class", action="store_true", help="print AP per class")
    p.add_argument("--save-json", metavar="FILE", type=output_file, help="write COCO-format predictions to FILE")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write the metrics as JSON to FILE")
    p.add_argument(
        "--evaluator",
        default="pycocotools",
        choices=[*BACKENDS, "fast"],
        help="mAP implementation (fast: built-in, same protocol, used per epoch in training)",
    )
    add_device(p)


def run(args):
    from ..checkpoint import load_model
    from ..evaluation.validator import Validator, dump_metrics, format_metrics
    from .common import setup_device

    device = setup_device(args)
    model = load_model(args.weights)
    validator = Validator(
        args.data,
        args.split,
        args.imgsz,
        args.batch,
        args.conf,
        args.iou,
        args.max_det,
        args.workers,
        letterbox=args.letterbox,
    )
    official = args.evaluator != "fast"
    metrics = validator(
        model,
        device,
        args.half,
        official=official,
        coco_backend=args.evaluator if official else "pycocotools",
        save_json=args.save_json,
    )
    print(format_metrics(metrics, per_class=args.per_class))
    if args.json:
        dump_metrics(args.json, metrics)
