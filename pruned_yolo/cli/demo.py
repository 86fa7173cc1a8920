"""pruned-yolo demo: the whole pipeline on generated data, in a few minutes on a CPU.

Needs no download: a synthetic dataset (coloured shapes on textured backgrounds, see
`pruned_yolo.data.synthetic`) is generated into `<out>/data` on first use; a small YOLOv5
is trained from scratch and validated (pycocotools); then `compress` halves its GFLOPs
(one round of sparsity training, pruning and fine-tuning with distillation from the
trained model) and writes its report (per-round table, ONNX Runtime latency, plot, ONNX
export). `--no-compress` stops after training.
"""

from __future__ import annotations

import time
from pathlib import Path

HELP = "train a small detector on synthetic shapes, compress it to half its GFLOPs, print the figures (no downloads)"

# The demo defaults, chosen so that a 2-core CPU reaches val mAP50 >= 0.8 within 5 minutes
# (measured numbers in the README): yolov5n on 128-pixel images of 3 shape classes, AdamW
# (converges in far fewer steps than SGD from scratch; no 0.1 bias lr in the warm-up,
# which suits SGD only), no mosaic (at 128 pixels it mostly makes objects tiny), and a
# short EMA ramp (tau 200 optimizer steps instead of 2000) so that the averaged weights
# already smooth the last epochs of such a short run; channels-last tensors.
DEMO_DATA = {"n_train": 800, "n_val": 100, "size": 128, "nc": 3, "seed": 0, "min_frac": 0.12, "max_frac": 0.4}
DEMO_MODEL = {"base": "yolov5n", "width_multiple": 0.25, "depth_multiple": 0.33}
DEMO_TRAIN = {"epochs": 15, "imgsz": 128, "batch": 16, "nbs": 16, "optimizer": "AdamW", "ema_tau": 200.0}
DEMO_HYP = {"lr0": 0.003, "lrf": 0.05, "warmup_epochs": 1.0, "warmup_bias_lr": 0.0, "mosaic": 0.0, "scale": 0.3}
# compress: one round to half the GFLOPs; AdamW at a third of the training lr, the sparsity
# factor and BatchNorm lr multiplier sized so that a 3-epoch sparsity phase moves the gammas
DEMO_COMPRESS = {
    "target_flops_ratio": 0.5,
    "iterations": 1,
    "sparsity_epochs": 3,
    "finetune_epochs": 4,
    "sparsity": 0.01,
    "bn_lr_mult": 3.0,
    "distill": True,
    "latency_runs": 20,
    "noval": True,
}
DEMO_COMPRESS_HYP = {"lr0": 0.001, "lrf": 0.2, "warmup_epochs": 0.5}


def add_arguments(p):
    # checked while parsing (TrainConfig checks them too, but only after the data is generated)
    from .common import imgsz, non_negative_int, output_file, positive_int

    p.add_argument("--out", default="runs/demo", help="output folder (data/, train/, predictions)")
    p.add_argument("--epochs", type=positive_int, default=DEMO_TRAIN["epochs"], help="training epochs")
    p.add_argument("--imgsz", type=imgsz, default=DEMO_TRAIN["imgsz"], help="training and validation size")
    p.add_argument("--batch", type=positive_int, default=DEMO_TRAIN["batch"], help="batch size")
    p.add_argument(
        "--workers", type=non_negative_int, default=None, help="data loading processes (default: min(8, cores))"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="training seed")
    p.add_argument("--no-compress", action="store_true", help="stop after training (no compress stage)")
    p.add_argument("--json", metavar="FILE", type=output_file, help="write the final metrics and the wall time as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo_model_cfg(nc: int) -> dict:
    from ..models import load_model_cfg

    cfg = dict(load_model_cfg(DEMO_MODEL["base"]))
    cfg.update(nc=nc, width_multiple=DEMO_MODEL["width_multiple"], depth_multiple=DEMO_MODEL["depth_multiple"])
    return cfg


def run(args):
    import cv2

    from ..data.synthetic import make_synthetic_dataset
    from ..evaluation.validator import Validator, format_metrics
    from ..inference import predict
    from ..training import TrainConfig, Trainer, load_hyp
    from ..utils.files import write_json
    from ..utils.plotting import draw_boxes

    t0 = time.time()
    out = Path(args.out)
    data = make_synthetic_dataset(out / "data", **DEMO_DATA)
    t_data = time.time() - t0
    print(f"synthetic data: {DEMO_DATA['n_train']} train / {DEMO_DATA['n_val']} val images in {data.parent}")

    hyp = {**load_hyp("scratch-low"), **DEMO_HYP}
    config = TrainConfig(
        data=str(data),
        cfg=demo_model_cfg(DEMO_DATA["nc"]),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        nbs=DEMO_TRAIN["nbs"],
        optimizer=DEMO_TRAIN["optimizer"],
        ema_tau=DEMO_TRAIN["ema_tau"],
        channels_last=True,  # about 10% faster on CPU for this model
        hyp=hyp,
        workers=args.workers,
        project=str(out),
        name="train",
        exist_ok=True,
        seed=args.seed,
        noval=True,
        progress=not args.no_progress,
    )
    trainer = Trainer(config)
    trainer.fit()
    t_train = time.time() - t0 - t_data

    model = trainer.ema.ema
    validator = Validator(data, "val", args.imgsz, batch_size=32, workers=trainer.workers)
    metrics = validator(model, "cpu", progress=not args.no_progress)
    print(format_metrics(metrics))

    images = sorted((data.parent / "images" / "val").glob("*.jpg"))[:4]
    for det in predict(model, images, imgsz=args.imgsz, conf_thres=0.25):
        cv2.imwrite(
            str(out / f"{det.path.stem}_pred.jpg"),
            draw_boxes(cv2.imread(str(det.path)), det.boxes, det.classes, model.names, det.scores),
        )
    print(
        f"trained: val mAP50 {metrics['mAP50']:.3f}, mAP50-95 {metrics['mAP50-95']:.3f} (pycocotools, "
        f"{metrics['images']} images) after {time.time() - t0:.0f} s; weights {trainer.wdir / 'last.safetensors'}; "
        f"predictions in {out}"
    )
    result = {
        "mAP50": metrics["mAP50"],
        "mAP50-95": metrics["mAP50-95"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "evaluator": metrics["evaluator"],
        "data_s": round(t_data, 1),
        "train_s": round(t_train, 1),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "data": DEMO_DATA,
        "model": DEMO_MODEL,
        "hyp_overrides": DEMO_HYP,
        "weights": str(trainer.wdir / "last.safetensors"),
    }
    if not args.no_compress:
        result["compress"] = compress_stage(args, out, data, trainer.wdir / "last.safetensors", hyp)
    wall = time.time() - t0
    result["wall_s"] = round(wall, 1)
    if "compress" in result:
        c = result["compress"]
        print(
            f"demo: mAP50-95 {c['dense']['mAP50-95']:.3f} -> {c['final']['mAP50-95']:.3f} "
            f"(mAP50 {c['dense']['mAP50']:.3f} -> {c['final']['mAP50']:.3f}), "
            f"GFLOPs {c['dense']['gflops']:.3f} -> {c['final']['gflops']:.3f}, "
            f"ONNX Runtime latency {_ms(c['dense'])} -> {_ms(c['final'])} ms; wall time {wall:.0f} s; "
            f"report {c['report']}"
        )
    else:
        print(f"demo: val mAP50 {metrics['mAP50']:.3f}, mAP50-95 {metrics['mAP50-95']:.3f}; wall time {wall:.0f} s")
    if args.json:
        write_json(args.json, result)


def _ms(entry: dict) -> str:
    return "-" if entry.get("latency_ms") is None else f"{entry['latency_ms']:.2f}"


def compress_stage(args, out: Path, data: Path, weights: Path, train_hyp: dict) -> dict:
    """Compress the trained model to half its GFLOPs; returns the report's dense/final figures."""
    from ..compress import CompressConfig, compress

    print(f"compress: {weights} to {DEMO_COMPRESS['target_flops_ratio']:.0%} of its GFLOPs")
    config = CompressConfig(
        weights=str(weights),
        data=str(data),
        **DEMO_COMPRESS,
        imgsz=args.imgsz,
        batch=args.batch,
        nbs=DEMO_TRAIN["nbs"],
        optimizer=DEMO_TRAIN["optimizer"],
        hyp={**train_hyp, **DEMO_COMPRESS_HYP},
        workers=args.workers,
        seed=args.seed,
        project=str(out),
        name="compress",
        exist_ok=True,
        progress=not args.no_progress,
    )
    report = compress(config)
    run = Path(report["final"]["checkpoint"]).parent
    return {
        "dense": {k: report["dense"].get(k) for k in ("params", "gflops", "latency_ms", "mAP50", "mAP50-95")},
        "final": {k: report["final"].get(k) for k in ("params", "gflops", "latency_ms", "mAP50", "mAP50-95")},
        "rounds": report["rounds"],
        "report": str(run / "report.md"),
        "settings": {**DEMO_COMPRESS, "hyp_overrides": DEMO_COMPRESS_HYP},
    }
