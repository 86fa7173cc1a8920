"""pruned-yolo bench: latency of one or more models, interleaved, with medians and speed-ups."""

from __future__ import annotations

HELP = "measure inference latency on torch or ONNX Runtime; --compare models run interleaved"


def add_arguments(p):
    from ..benchmark.latency import RUNTIMES
    from .common import device, imgsz, non_negative_int, output_file, positive_int

    p.add_argument("--weights", required=True, metavar="W", help="reference model: checkpoint (ours, .pt) or .onnx")
    p.add_argument("--compare", nargs="+", default=[], metavar="W", help="more models, timed in the same run")
    p.add_argument(
        "--runtime",
        nargs="+",
        default=["onnxruntime"],
        choices=RUNTIMES,
        help="runtime(s); with two, every model runs on both",
    )
    p.add_argument("--imgsz", type=imgsz, default=640, help="square input size")
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward pass")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads per model (default: all cores)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="untimed runs per model first")
    p.add_argument("--runs", type=positive_int, default=50, help="timed runs per model")
    p.add_argument("--no-interleave", action="store_true", help="time each model's runs back to back")
    p.add_argument("--device", type=device, default="cpu", help="torch device: cpu, 0, cuda:1 ... (ONNX Runtime: CPU)")
    p.add_argument("--half", action="store_true", help="FP16 (torch on CUDA only)")
    p.add_argument("--onnx-dir", metavar="DIR", help="keep the exported .onnx files here (default: a temp folder)")
    p.add_argument(
        "--json", metavar="FILE", type=output_file, help="write per-model median_ms, p10/p90 and the ratios as JSON"
    )


def _names(weights: list[str], runtimes: list[str]) -> list[tuple[str, str, str]]:
    """(label, weights, runtime) per model; labels are file stems, made unique."""
    from pathlib import Path

    stems = [Path(w).stem for w in weights]
    labels = [s if stems.count(s) == 1 else f"{s}#{i}" for i, s in enumerate(stems)]
    short = {"torch": "torch", "onnxruntime": "ort"}
    out = []
    for label, w in zip(labels, weights):
        for rt in runtimes:
            out.append((f"{label} [{short[rt]}]" if len(runtimes) > 1 else label, w, rt))
    return out


def format_table(rows: list[dict], reference: str) -> str:
    lines = [f"{'model':<32} {'GFLOPs':>7} {'params':>11} {'median ms':>10} {'p10-p90 ms':>15} {'speed-up':>9}"]
    for r in rows:
        gf = f"{r['gflops']:.2f}" if r["gflops"] is not None else "-"
        pa = f"{r['params']:,}" if r["params"] is not None else "-"
        spread = f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f}"
        lines.append(f"{r['name']:<32} {gf:>7} {pa:>11} {r['median_ms']:>10.1f} {spread:>15} {r['speedup']:>8.2f}x")
    lines.append(f"speed-up = median of {reference} / median of the model (> 1: faster)")
    return "\n".join(lines)


def run(args):
    import logging
    import platform
    import tempfile
    from pathlib import Path

    import onnxruntime
    import torch

    from ..benchmark import benchmark_models, default_threads, make_runner, speedups
    from ..errors import PrunedYoloError
    from ..utils.files import write_json

    log = logging.getLogger("pruned_yolo")
    runtimes = list(dict.fromkeys(args.runtime))
    weights = [args.weights, *args.compare]
    for w in weights:
        if not Path(w).is_file():
            raise PrunedYoloError(f"weights not found: {w}")
    threads = default_threads(args.threads)
    models = {}
    with tempfile.TemporaryDirectory(prefix="pruned-yolo-bench-") as tmp:
        workdir = Path(args.onnx_dir or tmp)
        for label, w, rt in _names(weights, runtimes):
            log.info(f"preparing {label} ({rt})")
            stem = label.split(" [")[0]
            models[label] = make_runner(w, rt, args.imgsz, args.batch, threads, args.device, args.half, stem, workdir)
        log.info(
            f"timing {len(models)} model(s): {args.warmup} warm-up + {args.runs} runs each, "
            f"batch {args.batch}, {args.imgsz}x{args.imgsz}, {threads} thread(s), "
            f"{'back to back' if args.no_interleave else 'interleaved'}"
        )
        timings = benchmark_models(
            models, args.imgsz, args.batch, args.warmup, args.runs, not args.no_interleave, progress=log.info
        )
    ratios = speedups(timings)
    reference = next(iter(models))
    rows = []
    for label, runner in models.items():
        t = timings[label]
        rows.append(
            {
                "name": label,
                "weights": str(runner.source),
                "runtime": runner.runtime,
                "median_ms": round(t.median_ms, 3),
                "p10_ms": round(t.p10_ms, 3),
                "p90_ms": round(t.p90_ms, 3),
                "gflops": None if runner.gflops is None else round(runner.gflops, 3),
                "params": runner.params,
                "speedup": round(ratios[label]["speedup"], 4),
                "times_ms": [round(v, 3) for v in t.times_ms],
            }
        )
    print(format_table(rows, reference))
    if args.json:
        write_json(
            args.json,
            {
                "runtime": runtimes[0] if len(runtimes) == 1 else runtimes,
                "imgsz": args.imgsz,
                "batch": args.batch,
                "threads": threads,
                "warmup": args.warmup,
                "runs": args.runs,
                "interleave": not args.no_interleave,
                "reference": reference,
                "models": rows,
                "ratios": {k: round(v["speedup"], 4) for k, v in ratios.items()},
                "paired_ratios": {k: round(v["paired_speedup"], 4) for k, v in ratios.items() if "paired_speedup" in v},
                "environment": {
                    "cpu_count": __import__("os").cpu_count(),
                    "machine": platform.machine(),
                    "processor": platform.processor(),
                    "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__,
                },
            },
        )
    return 0
