"""pruned-yolo compress: sparsity training, pruning and fine-tuning in rounds, to a budget."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from ..compress.pipeline import LR_PLANS, CompressConfig

HELP = "compress a checkpoint to a budget: K rounds of sparsity training, pruning, fine-tuning; writes a report"


def add_arguments(p):
    from ..compress.sparsity import MASK_TARGETS
    from ..pruning.channel import describe_floor_default
    from ..training.config import EMA_PLANS, OPTIMIZERS
    from . import common
    from .common import add_group_normalize
    from .train import add_schedule_and_mask_arguments

    p.add_argument("--weights", metavar="W", help="dense checkpoint to compress (ours or an official .pt)")
    p.add_argument("--data", help="data YAML (training on train, evaluation on val)")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--target-flops-ratio", type=float, metavar="F", help="final GFLOPs as a fraction of the dense")
    t.add_argument("--target-gflops", type=float, metavar="G", help="final GFLOPs at --imgsz")
    t.add_argument("--target-params-ratio", type=float, metavar="P", help="final parameters as a fraction")
    t.add_argument(
        "--target-latency-ms",
        type=float,
        metavar="T",
        help="ONNX Runtime latency (ms, batch 1, --threads) on this machine: made a GFLOPs budget by pruning the "
        "dense model to it once (measured), the final model timed again",
    )
    p.add_argument("--iterations", type=int, help="rounds K; round r prunes to target^(r/K)")
    p.add_argument("--sparsity-epochs", type=int, help="sparsity-training epochs per round")
    p.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs per round")
    p.add_argument("--importance", help="channel importance: bn, bn-kernel, l1 or pkg.mod:fn")
    add_group_normalize(p)
    p.add_argument(
        "--sparsity",
        type=float,
        help="L1 subgradient factor s on BatchNorm gammas (default 0: the fade alone; paper 0.02)",
    )
    add_schedule_and_mask_arguments(p)
    p.add_argument(
        "--mask-target",
        choices=MASK_TARGETS,
        help="channels the mask takes: threshold (alpha * mean |gamma|, the paper) or budget (those the round's "
        "pruning will remove)",
    )
    p.add_argument(
        "--fade-end",
        type=float,
        help="--mask fade / gradual: the whole plan is off at this fraction of the sparsity phase",
    )
    p.add_argument(
        "--max-map-drop",
        type=float,
        metavar="P",
        help="accuracy guard: stop at the last round within P mAP50-95 points (e.g. 0.01) of the dense model",
    )
    p.add_argument("--layers", type=int, default=0, help="shortcut Bottlenecks to remove in total (spread over rounds)")
    p.add_argument("--round-to", type=int, default=8, help="kept channel counts are multiples of this")
    p.add_argument(
        "--per-layer-ratio",
        type=float,
        help="floor: every channel group keeps at least max(2, ratio x its dense channels) "
        f"(default: {describe_floor_default()})",
    )
    p.add_argument(
        "--no-bias-compensation",
        dest="bias_compensation",
        action="store_false",
        help="do not fold the constant output of pruned channels into their consumers",
    )
    p.add_argument(
        "--distill",
        action=argparse.BooleanOptionalAction,
        help="learn from the dense model's outputs in every training phase",
    )
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term")
    p.add_argument("--teacher", metavar="W", help="distillation teacher (default: --weights)")
    p.add_argument("--imgsz", type=common.imgsz, help="training, evaluation and latency image size")
    p.add_argument("--batch", type=common.positive_int, help="training batch size")
    p.add_argument(
        "--nbs",
        type=common.positive_int,
        help="nominal batch: gradients accumulate to it before a step (default: --batch, a step per batch; "
        "YOLOv5's 64 gives 4x fewer steps at batch 16)",
    )
    p.add_argument("--hyp", help="hyperparameters of both training phases (file or shipped name)")
    p.add_argument(
        "--lr-plan",
        choices=LR_PLANS,
        help="per-phase: each training phase warms up and decays; continuous: one warm-up, lr0 held until the "
        "last fine-tuning, which decays (no restart); gentle: per-phase, with the biases' warm-up starting "
        "at lr 0 (not the hyp's warmup_bias_lr)",
    )
    p.add_argument("--sparsity-lr0", type=float, metavar="LR", help="lr0 of sparsity training (default: the hyp's)")
    p.add_argument("--finetune-lr0", type=float, metavar="LR", help="lr0 of fine-tuning (default: the hyp's)")
    p.add_argument(
        "--finetune-ema",
        choices=EMA_PLANS,
        help="weight average of the fine-tuning phases: fixed = YOLOv5's (decay 0.9999, tau 2000 steps: on a short "
        "run nearly the raw weights); run = over about three epochs of optimizer steps",
    )
    p.add_argument("--bn-lr-mult", type=float, help="lr multiplier of the BatchNorm weights in sparsity training")
    p.add_argument(
        "--bn-recal",
        type=common.non_negative_int,
        metavar="N",
        help="re-estimate the BatchNorm statistics on N training batches before each validation of the training "
        "phases (the running statistics trail fast-moving weights: fading channels, warm-up restarts; per-epoch "
        "scores then read too low; default 0: off: the last epoch's statistics are saved, and on a trained model "
        "they cost accuracy, 0.249 -> 0.226 with 8 batches on HIT-UAV)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer of both phases")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also quantize the final model to INT8 (ONNX Runtime, calibrated on train images), score and time it",
    )
    p.add_argument(
        "--parity",
        action="store_true",
        help="add the parity table (see `parity`) of the dense and final models to the report",
    )
    p.add_argument("--reference", nargs="*", default=[], metavar="W", help="dense models to plot beside (e.g. yolov5n)")
    p.add_argument("--latency-runs", type=int, default=30, help="ONNX Runtime timed runs per model (0: skip)")
    p.add_argument("--threads", type=common.positive_int, help="ONNX Runtime threads for the latency (default: cores)")
    p.add_argument("--device", type=common.device, help="cpu, 0, cuda:1 ... (default: first GPU if any, else cpu)")
    p.add_argument("--workers", type=common.non_negative_int, help="data loading processes")
    common.add_cache(p)
    p.add_argument("--seed", type=int, default=0, help="random seed")
    common.add_output_folder(p, "runs/compress")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted compress run")
    p.add_argument("--noval", action="store_true", help="no per-epoch validation inside the training phases")
    p.add_argument("--plots", action="store_true", help="training batch mosaics and gamma histograms")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", metavar="FILE", help="also write report.json to FILE")
    # one place for the defaults: the library's CompressConfig
    p.set_defaults(**{f.name: f.default for f in fields(CompressConfig) if f.default is not MISSING})
    p.set_defaults(reference=[])


def run(args):
    from ..compress import CompressConfig, compress
    from ..errors import PrunedYoloError
    from ..utils.files import write_json
    from .common import options_for

    if args.resume:
        report = compress(None, resume_dir=args.resume)
    else:
        if not args.weights or not args.data:
            raise PrunedYoloError("--weights and --data are required (or --resume RUN_DIR)")
        settings = options_for(CompressConfig, args, references=list(args.reference), progress=not args.no_progress)
        config = CompressConfig(**settings)
        report = compress(config)
    final = report["final"]
    print(
        f"final: {final['params']:,} params, {final['gflops']:.2f} GFLOPs, mAP50 {final['mAP50']:.4f}, "
        f"mAP50-95 {final['mAP50-95']:.4f} (dense {report['dense']['mAP50-95']:.4f}); "
        f"checkpoint {final['checkpoint']}, ONNX {final['onnx']}"
    )
    if report.get("guard"):
        from ..compress.report import guard_sentence

        print(guard_sentence(report["guard"]))
    if args.json:
        write_json(args.json, report)
