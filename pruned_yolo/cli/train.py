"""pruned-yolo train: train a detector from a model YAML or a checkpoint, or resume a run.

Also runs under torchrun: `torchrun --nproc_per_node N -m pruned_yolo train ...`.
"""

from __future__ import annotations

HELP = "train a detector (YOLOv5 recipe); --resume RUN_DIR continues an interrupted run"


def add_arguments(p):
    from ..training.config import OPTIMIZERS
    from .common import add_cache, add_output_folder

    p.add_argument("--data", help="data YAML (ultralytics format: path, train, val, names)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cfg", metavar="C", help="model YAML path or shipped name (yolov5n, yolov5s, ...): new model")
    src.add_argument("--weights", metavar="W", help="start from a checkpoint (ours or an official .pt)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue runs/train/expN from its last state")
    p.add_argument("--epochs", type=int, default=100, help="training epochs")
    p.add_argument("--imgsz", type=int, default=640, help="training and validation image size (pixels)")
    p.add_argument("--batch", type=int, default=16, help="global batch size (split over the processes)")
    p.add_argument(
        "--hyp", default="scratch-low", help="hyperparameters: YAML file or shipped scratch-low/scratch-high/finetune"
    )
    p.add_argument("--device", default="", help="cpu, 0, cuda:1 ... (default: first GPU if any, else cpu)")
    p.add_argument("--workers", type=int, default=None, help="data loading processes per rank (default min(8, cores))")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: cores / processes)")
    add_output_folder(p, "runs/train")
    p.add_argument("--seed", type=int, default=0, help="random seed (data augmentation, shuffling, init)")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (reproducible on CPU)")
    add_cache(p)
    p.add_argument("--plots", action="store_true", help="save the first training batches as images")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (CUDA DDP only)")
    lr = p.add_mutually_exclusive_group()
    lr.add_argument("--cos-lr", dest="lr_schedule", action="store_const", const="cos", help="cosine lr decay")
    lr.add_argument("--linear-lr", dest="lr_schedule", action="store_const", const="linear", help="linear lr decay")
    p.set_defaults(lr_schedule=None)
    p.add_argument(
        "--patience",
        type=int,
        default=0,
        help="stop after N epochs without a better fitness (0: no early stopping, as ultralytics' patience=0; >= 0)",
    )
    p.add_argument("--noval", action="store_true", help="validate only after the final epoch")
    p.add_argument("--nosave", action="store_true", help="write only the final checkpoint (no resume state)")
    p.add_argument("--optimizer", default="SGD", choices=OPTIMIZERS, help="optimizer")
    p.add_argument("--nbs", type=int, default=64, help="nominal batch size (gradient accumulation)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one log line per epoch)")
    sp = p.add_argument_group("sparsity training (Pruned-YOLO)")
    sp.add_argument(
        "--sparsity",
        type=float,
        default=None,
        metavar="S",
        help="L1 subgradient factor on every BatchNorm gamma (e.g. 0.02); off when absent",
    )
    add_schedule_and_mask_arguments(sp)


def add_schedule_and_mask_arguments(p) -> None:
    """The sparsity factor schedule and soft-mask options shared by `train` and `compress`."""
    from ..compress.sparsity import MASK_STATS, MASKS, SCHEDULES

    p.add_argument(
        "--sparsity-schedule",
        default="cosine",
        choices=SCHEDULES,
        help="cosine: s * (0.2 + 0.8 * (1 + cos(pi e / E)) / 2) per epoch; constant: s",
    )
    p.add_argument(
        "--mask",
        default="soft",
        choices=MASKS,
        help="mask of small-gamma channels (compress only: fade scales the planned channels to 0, gradual "
        "switches them off a few at a time, least important first)",
    )
    p.add_argument("--mask-period", type=int, default=2, help="apply the mask every N epochs (never at epoch 0)")
    p.add_argument("--mask-alpha", type=float, default=0.2, help="mask threshold = alpha * mean |gamma|")
    p.add_argument(
        "--mask-stats",
        default="keep",
        choices=MASK_STATS,
        help="soft mask: keep the BN running stats (output x0.1 exactly) or scale them too (literal rule)",
    )


def config_from_args(args):
    from ..errors import PrunedYoloError
    from ..training import TrainConfig
    from .common import options_for

    if not args.data:
        raise PrunedYoloError("--data is required (or --resume RUN_DIR)")
    if not args.cfg and not args.weights:
        raise PrunedYoloError("give --cfg (new model) or --weights (start from a checkpoint)")
    return TrainConfig(**options_for(TrainConfig, args, progress=not args.no_progress))


def sparsity_from_args(args):
    from ..compress.sparsity import SparsityConfig

    return SparsityConfig(
        args.sparsity, args.sparsity_schedule, args.mask, args.mask_period, args.mask_alpha, args.mask_stats
    )


def run(args):
    from ..compress.sparsity import SparsityCallback
    from ..training import Trainer

    if args.resume:
        trainer = Trainer.resume(args.resume)  # rebuilds the run's sparsity callback from its config
        if args.no_progress:
            trainer.config.progress = False
    else:
        config = config_from_args(args)
        sparsity = [SparsityCallback(sparsity_from_args(args), config.plots)] if args.sparsity is not None else []
        trainer = Trainer(config, sparsity)
    metrics = trainer.fit()
    if trainer.is_main and metrics:
        print(
            f"final (EMA, fast AP): P {metrics['precision']:.3f} R {metrics['recall']:.3f} "
            f"mAP50 {metrics['mAP50']:.3f} mAP50-95 {metrics['mAP50-95']:.3f}; weights in {trainer.wdir}"
        )
