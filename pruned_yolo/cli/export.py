"""pruned-yolo export: a checkpoint to ONNX, checked against torch in ONNX Runtime."""

from __future__ import annotations

from .common import add_weights, device, imgsz, options_for, output_file, positive_float, positive_int

HELP = "export a checkpoint to ONNX (decoded outputs), checked with ONNX Runtime against torch"

FORMATS = ("onnx",)


def add_arguments(p):
    from ..export.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
    from ..export.quantize import QUANT_FORMATS

    add_weights(p)
    p.add_argument("--format", default="onnx", choices=FORMATS, help="export format")
    p.add_argument(
        "--out",
        metavar="FILE",
        type=output_file,
        help="output file (default: runs/export/<weights name>.<format>, never beside shared weights)",
    )
    p.add_argument(
        "--imgsz", type=imgsz, nargs="+", default=[640], metavar="N", help="input size: N or H W (multiples of 32)"
    )
    p.add_argument("--batch", type=positive_int, default=1, help="batch size of the exported input")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET}")
    p.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim (optional package)")
    p.add_argument("--half", action="store_true", help="FP16 weights (CUDA only)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, 0, cuda:1 ... (the device the export traces on)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch comparison")
    p.add_argument(
        "--tol", type=positive_float, default=1e-3, help="largest accepted |ONNX Runtime - torch| (see docs)"
    )
    q = p.add_argument_group("INT8 (static post-training quantization with ONNX Runtime)")
    q.add_argument("--int8", action="store_true", help="also write <out>_int8.onnx, calibrated on --data train images")
    q.add_argument("--data", metavar="D", help="data YAML whose train split calibrates --int8")
    q.add_argument("--calib-images", type=positive_int, default=200, help="calibration images (evenly spaced)")
    q.add_argument(
        "--quantize-head",
        action="store_true",
        help="quantize the Detect head convs too (default: float, like the decode after them, which always is)",
    )
    q.add_argument(
        "--int8-format", default="qdq", choices=QUANT_FORMATS, help="QDQ (ORT's recommendation) or QOperator"
    )
    q.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per channel)")
    q.add_argument("--reduce-range", action="store_true", help="7-bit weights (for x86 CPUs without VNNI)")


def run(args):
    import logging
    from pathlib import Path

    from ..checkpoint import load_model
    from ..errors import PrunedYoloError
    from ..export import export_onnx

    log = logging.getLogger("pruned_yolo")
    if len(args.imgsz) > 2:  # argparse's nargs cannot say "1 or 2"
        raise PrunedYoloError("--imgsz takes one value (square) or two (height width)")
    imgsz = tuple(args.imgsz) if len(args.imgsz) == 2 else args.imgsz[0]
    int8_options = (args.calib_images != 200, args.quantize_head, args.int8_format != "qdq", args.per_tensor)
    if args.int8:
        if not args.data:
            raise PrunedYoloError("--int8 needs --data D.yaml: its train images calibrate the quantization")
        if args.half:
            raise PrunedYoloError("--int8 quantizes the float32 export: drop --half")
        from ..export.quantize import calibration_images

        calibration_images(args.data, args.calib_images, log=False)  # data errors before anything is written
    elif args.data or any(int8_options) or args.reduce_range:
        raise PrunedYoloError("--data, --calib-images and the other INT8 options only apply with --int8")
    model = load_model(args.weights)
    out = Path(args.out) if args.out else Path("runs/export") / f"{Path(args.weights).stem}.{args.format}"
    if out.resolve() == Path(args.weights).resolve():
        raise PrunedYoloError(f"--out {out} would overwrite the weights")
    if args.int8 and int8_path(out).resolve() == Path(args.weights).resolve():
        raise PrunedYoloError(f"the INT8 file {int8_path(out)} would overwrite the weights: choose another --out")
    try:
        source = Path(args.weights).name
        path = export_onnx(**options_for(export_onnx, args, model=model, path=out, imgsz=imgsz, source=source))
    except PermissionError as e:
        raise PrunedYoloError(f"cannot write {out}: {e.strerror} (choose another place with --out)") from None
    size_mb = path.stat().st_size / 2**20
    print(f"exported {path} ({size_mb:.1f} MB, ONNX checker passed)")
    if args.half:
        log.info("FP16 export: ONNX Runtime comparison skipped (CPU runtime)")
    elif not args.no_verify:
        _verify(args, model, path, imgsz)
    if args.int8:
        _int8(args, path, imgsz)
    return 0


def _verify(args, model, path, imgsz):
    from ..errors import PrunedYoloError
    from ..export import verify_onnx
    from ..export.onnx import hw_pair

    check = verify_onnx(model, path)
    print(f"ONNX Runtime vs torch: {check}")
    if args.dynamic:
        h, w = hw_pair(imgsz)
        s = int(model.stride.max())
        other = (max(s, (h // 2) // s * s), max(s, (w * 3 // 4) // s * s))
        check2 = verify_onnx(model, path, other, batch=2)
        print(f"ONNX Runtime vs torch at batch 2, {other[0]}x{other[1]}: {check2}")
        check = max(check, check2, key=float)
    if not check.ok(args.tol):
        fp64 = verify_onnx(model, path, float64=True)
        raise PrunedYoloError(
            f"ONNX Runtime output differs from torch by {check.max_diff:.2e} > --tol {args.tol} (against torch "
            f"in float64: torch float32 is off by {fp64.torch32_vs_fp64:.2e}, ONNX Runtime by {fp64.ort_vs_fp64:.2e})"
        )


def int8_path(path):
    """Where `export --int8` writes the INT8 file: beside the float one, `<stem>_int8.onnx`."""
    return path.with_name(f"{path.stem}_int8.onnx")


def _int8(args, path, imgsz):
    from ..errors import PrunedYoloError
    from ..export.quantize import quantize_onnx

    out = int8_path(path)
    try:
        q = quantize_onnx(
            path,
            out,
            args.data,
            None if not args.dynamic else imgsz,
            args.calib_images,
            keep_head_float=not args.quantize_head,
            per_channel=not args.per_tensor,
            reduce_range=args.reduce_range,
            quant_format=args.int8_format,
        )
    except PermissionError as e:
        raise PrunedYoloError(f"cannot write {out}: {e.strerror} (choose another place with --out)") from None
    size = q.stat().st_size
    print(
        f"quantized {q} ({size / 2**20:.1f} MB, {size / path.stat().st_size:.2f}x the float file; "
        f"score it with: pruned-yolo val --weights {q} --data {args.data})"
    )
