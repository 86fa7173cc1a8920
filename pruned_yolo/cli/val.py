"""pruned-yolo val: COCO-protocol mAP of a checkpoint or an ONNX export on a dataset split."""

from __future__ import annotations

from .common import add_device, add_inference, add_weights, non_negative_int, output_file

HELP = "validate a checkpoint or an .onnx export (float or INT8): P, R, mAP50, mAP50-95 (pycocotools) and speed"


def add_arguments(p):
    from ..data.val_dataset import LETTERBOX_MODES
    from ..evaluation.coco import BACKENDS

    add_weights(p)
    p.add_argument("--data", required=True, help="data YAML (ultralytics format)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="split to evaluate")
    add_inference(p, conf=0.001, iou=0.6)
    # None: 640 for checkpoints and dynamic ONNX files, the input size of a static ONNX file
    p.set_defaults(imgsz=None)
    size = p._option_string_actions["--imgsz"]  # argparse has no public getter for an added action
    size.help += " (default: 640; a static .onnx file's own size)%(default).0s"  # .0s: no "(default: None)"
    p.add_argument(
        "--letterbox",
        default=None,
        choices=LETTERBOX_MODES,
        help="auto: per-image minimal padding; rect: YOLOv5 val.py batches; square: imgsz x imgsz "
        "(default: auto; square for a static-shape .onnx file)%(default).0s",
    )
    p.add_argument(
        "--bn-recal",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="re-estimate the checkpoint's BatchNorm statistics on N batches of the train split first (a "
        "checkpoint saved while its weights moved fast, e.g. mid-compress, scores too low with its own)",
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


def onnx_settings(model, imgsz: int | None, letterbox: str | None) -> tuple[int | tuple[int, int], str]:
    """(imgsz, letterbox mode) to validate an `OnnxModel`: a static file fixes both."""
    from ..errors import PrunedYoloError

    mode = model.letterbox_mode(letterbox)
    if not model.static:
        return imgsz or 640, mode
    h, w = model.input_hw
    if imgsz is not None and (imgsz, imgsz) != (h, w):
        raise PrunedYoloError(
            f"{model.path} has a static {h}x{w} input: --imgsz {imgsz} cannot be used (omit it, "
            "or re-export at that size or with --dynamic)"
        )
    return (h if h == w else (h, w)), mode


def run(args):
    import logging
    from pathlib import Path

    from ..errors import PrunedYoloError
    from ..evaluation.validator import Validator, dump_metrics, format_metrics
    from .common import setup_device

    log = logging.getLogger("pruned_yolo")
    device = setup_device(args)
    if Path(args.weights).suffix.lower() == ".onnx":
        from ..export.runtime import OnnxModel

        if args.half:
            raise PrunedYoloError("--half is for torch on CUDA; an .onnx file runs in ONNX Runtime on the CPU")
        if args.bn_recal:
            raise PrunedYoloError("--bn-recal is for checkpoints: an .onnx export has its BatchNorms fused")
        model = OnnxModel(args.weights, threads=args.threads)
        imgsz, letterbox = onnx_settings(model, args.imgsz, args.letterbox)
        device = "cpu"
        log.info(
            f"{model.path.name}: ONNX Runtime, {model.precision}, "
            + (
                f"static {model.input_hw[0]}x{model.input_hw[1]} input, letterbox {letterbox}"
                if model.static
                else "dynamic input"
            )
        )
    else:
        from ..checkpoint import load_model

        model = load_model(args.weights)
        imgsz, letterbox = args.imgsz or 640, args.letterbox or "auto"
        if args.bn_recal:
            train = Validator(args.data, "train", imgsz, args.batch, workers=args.workers, letterbox=letterbox)
            used = train.recalibrate_bn(model, args.bn_recal, device)
            log.info(f"BatchNorm statistics re-estimated on {used} train batches of {args.batch} images")
    validator = Validator(
        args.data,
        args.split,
        imgsz,
        args.batch,
        args.conf,
        args.iou,
        args.max_det,
        args.workers,
        letterbox=letterbox,
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
    if not isinstance(model, __import__("torch").nn.Module):
        metrics["onnxruntime"] = {"precision": model.precision, "imgsz": imgsz, "letterbox": letterbox}
    print(format_metrics(metrics, per_class=args.per_class))
    if args.json:
        dump_metrics(args.json, metrics)
