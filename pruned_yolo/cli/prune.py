"""pruned-yolo prune: channel and layer pruning of a checkpoint, to a ratio, a budget or a measured latency."""

from __future__ import annotations

from pathlib import Path

from .common import add_group_normalize, add_weights, imgsz, output_file, positive_int

HELP = (
    "prune channels (coupled groups) and/or Bottlenecks of a checkpoint, to a ratio, a GFLOPs/params budget "
    "or a latency measured on this machine"
)


def add_arguments(p):
    from ..benchmark.latency import RUNTIMES
    from ..pruning.channel import PAPER_FLOOR, describe_floor_default
    from ..pruning.groups import GROUP_REDUCTIONS

    add_weights(p)
    how = p.add_argument_group("what to prune (one of the ratio and the targets; --layers combines with any)")
    how.add_argument("--channel-ratio", type=float, metavar="R", help="global fraction of channels to rank for pruning")
    how.add_argument(
        "--layers", type=int, default=0, metavar="K", help="remove the K lowest-scoring shortcut Bottlenecks"
    )
    how.add_argument("--target-gflops", type=float, metavar="G", help="GFLOPs at --imgsz to reach (within 2%% under)")
    how.add_argument("--target-flops-ratio", type=float, metavar="F", help="fraction of the model's GFLOPs to keep")
    how.add_argument(
        "--target-params-ratio", type=float, metavar="P", help="fraction of the model's parameters to keep"
    )
    how.add_argument(
        "--target-latency-ms",
        type=float,
        metavar="T",
        help="latency (ms, batch 1 at --imgsz) on --runtime to reach: measured within [0.9 T, T]",
    )
    lat = p.add_argument_group("latency target (--target-latency-ms)")
    lat.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES, help="runtime the latency is measured on")
    lat.add_argument("--threads", type=positive_int, default=None, help="runtime threads (default: all cores)")
    lat.add_argument(
        "--max-iterations", type=positive_int, default=4, help="plan, export and measure at most this many times"
    )
    p.add_argument(
        "--importance",
        default="bn-kernel",
        help="channel criterion: bn, bn-kernel, l1, a registered name, or package.module:function",
    )
    p.add_argument("--round-to", type=int, default=8, help="kept channels per group rounded to a multiple of this")
    p.add_argument(
        "--per-layer-ratio",
        type=float,
        help=f"keep at least max(2, ratio x channels) per group (default: {describe_floor_default()}; "
        f"{PAPER_FLOOR:g} for --channel-ratio)",
    )
    p.add_argument(
        "--group-reduction",
        default="mean",
        choices=GROUP_REDUCTIONS,
        help="how a coupled group's members' scores combine",
    )
    add_group_normalize(p)
    p.add_argument("--imgsz", type=imgsz, default=640, help="input size for GFLOPs (and the latency target)")
    p.add_argument(
        "--bias-compensation", action="store_true", help="fold pruned channels' constant output into consumers"
    )
    p.add_argument(
        "--out", required=True, help="output .safetensors file, or a folder (then <stem>_pruned.safetensors)"
    )
    p.add_argument(
        "--json", metavar="FILE", type=output_file, help="write the before/after figures and the settings as JSON"
    )


def output_path(out: str | Path, weights: str | Path) -> Path:
    """--out as the checkpoint file to write: a .safetensors file, or <stem>_pruned.safetensors in a folder."""
    from ..errors import PrunedYoloError

    out = Path(out)
    if out.suffix and out.suffix != ".safetensors" and not out.is_dir():
        raise PrunedYoloError(f"--out must be a .safetensors file or a folder, got {out}")
    dst = out / f"{Path(weights).stem}_pruned.safetensors" if out.is_dir() or not out.suffix else out
    if dst.resolve() == Path(weights).resolve():
        raise PrunedYoloError(f"--out {dst} would overwrite the input --weights")
    return dst


def run(args):
    from ..checkpoint import load_model, save_checkpoint
    from ..errors import PrunedYoloError
    from ..pruning import TARGETS, check_targets, format_latency, format_table, prune, prune_to_latency
    from ..utils.files import write_json

    targets = {k: getattr(args, k) for k in ("channel_ratio", *TARGETS)}
    check_targets(**targets)  # conflicts and ranges, checked where the library checks them
    if all(v is None for v in targets.values()) and not args.layers:
        raise PrunedYoloError(
            "nothing to prune: give --channel-ratio, --layers, --target-gflops, --target-flops-ratio, "
            "--target-params-ratio or --target-latency-ms"
        )
    dst = output_path(args.out, args.weights)
    model = load_model(args.weights)
    common = {
        "importance": args.importance,
        "round_to": args.round_to,
        "per_layer_ratio": args.per_layer_ratio,
        "imgsz": args.imgsz,
        "bias_compensation": args.bias_compensation,
        "group_reduction": args.group_reduction,
        "group_normalize": args.group_normalize,
    }
    if args.target_latency_ms is not None:
        pruned, report = prune_to_latency(
            model,
            args.target_latency_ms,
            runtime=args.runtime,
            threads=args.threads,
            layers=args.layers,
            max_iterations=args.max_iterations,
            **common,
        )
    else:
        pruned, report = prune(
            model,
            channel_ratio=args.channel_ratio,
            layers=args.layers,
            target_gflops=args.target_gflops,
            target_flops_ratio=args.target_flops_ratio,
            target_params_ratio=args.target_params_ratio,
            **common,
        )
    pruned.meta["history"][-1]["source"] = str(args.weights)
    save_checkpoint(pruned, dst)
    print(format_table(report))
    if "target" in report:
        t = report["target"]
        print(f"target {t['kind']} {t['value']:.4g}: reached {t['achieved']:.4g} ({t['fraction_of_target']:.2%} of it)")
    if "latency" in report:
        print(format_latency(report))
    print(f"saved {dst} ({report['time_s']:.1f}s)")
    if args.json:
        write_json(args.json, {**report, "weights": str(args.weights), "out": str(dst)})
