"""pruned-yolo parity: PyTorch float32 vs ONNX Runtime float32 vs ONNX Runtime INT8, in one table."""

from __future__ import annotations

HELP = "compare PyTorch fp32, ONNX Runtime fp32 and INT8: mAP, latency, size and output differences"


def add_arguments(p):
    from ..evaluation.coco import BACKENDS
    from .common import add_weights, imgsz, non_negative_int, output_file, positive_float, positive_int

    add_weights(p)
    p.add_argument("--compare", nargs="+", default=[], metavar="W", help="more checkpoints, in the same table")
    p.add_argument("--data", required=True, help="data YAML: validation split scored, train split calibrates INT8")
    p.add_argument("--imgsz", type=imgsz, default=640, help="square input size of the exports (and of validation)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads per runtime (default: all cores)")
    p.add_argument("--calib-images", type=positive_int, default=200, help="train images that calibrate INT8")
    p.add_argument("--runs", type=positive_int, default=30, help="timed runs per model and runtime (interleaved)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed runs first")
    p.add_argument(
        "--tol", type=positive_float, default=1e-3, help="largest accepted |ORT fp32 - PyTorch| (boxes / size, scores)"
    )
    p.add_argument(
        "--int8-tol", type=positive_float, default=0.02, help="largest accepted INT8 mAP50-95 drop below ORT fp32"
    )
    p.add_argument("--quantize-head", action="store_true", help="INT8: quantize the Detect head convs too (see export)")
    p.add_argument("--batch", type=positive_int, default=16, help="validation images per batch")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data loading processes (0: in the main one)")
    p.add_argument(
        "--evaluator", default="pycocotools", choices=[*BACKENDS, "fast"], help="mAP implementation (see val)"
    )
    p.add_argument("--onnx-dir", metavar="DIR", help="keep the float and INT8 .onnx files here (default: temporary)")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write the table data as JSON to FILE")


def run(args):
    from pathlib import Path

    from ..errors import PrunedYoloError
    from ..export.parity import format_parity, parity_report
    from ..utils.files import write_json
    from ..utils.torch_utils import set_cpu_threads
    from .common import options_for

    if args.onnx_dir and Path(args.onnx_dir).exists() and not Path(args.onnx_dir).is_dir():
        raise PrunedYoloError(f"--onnx-dir {args.onnx_dir} is a file, expected a folder")
    if not Path(args.data).is_file():
        raise PrunedYoloError(f"data YAML not found: {args.data}")
    set_cpu_threads(args.threads)
    report = parity_report(
        **options_for(parity_report, args, workdir=args.onnx_dir, keep_head_float=not args.quantize_head)
    )
    print(format_parity(report))
    if args.json:
        write_json(args.json, report)
    if not report["ok"]:
        raise PrunedYoloError(
            report["failures"][0]
            + (f" (and {len(report['failures']) - 1} more, see above)" if len(report["failures"]) > 1 else "")
        )
    return 0
