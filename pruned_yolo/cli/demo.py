"""pruned-yolo demo: the main job on a small built-in default (no downloads)."""

from __future__ import annotations

from pathlib import Path

HELP = "run the built-in demo (predict + val on ../shared data when present, else a synthetic image)"

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def add_arguments(p):
    p.add_argument("--out", default="runs/demo", help="output folder")


def run(args):
    import cv2
    import numpy as np

    from ..checkpoint import load_model
    from ..evaluation.validator import Validator, format_metrics
    from ..inference import predict
    from ..models import build_model
    from ..utils.plotting import draw_boxes

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = SHARED / "weights" / "yolov5n_v6.1.pt"
    data = SHARED / "datasets" / "coco128" / "coco128.yaml"
    if weights.is_file() and data.is_file():
        model = load_model(weights)
        images = sorted((data.parent / "images" / "val2017").glob("*.jpg"))[:4]
        print(format_metrics(Validator(data)(model)))
    else:
        model = build_model("yolov5n", nc=3)
        rng = np.random.default_rng(0)
        im = rng.integers(0, 255, (320, 480, 3), dtype=np.uint8)
        images = [out / "synthetic.jpg"]
        cv2.imwrite(str(images[0]), im)
    for det in predict(model, images, imgsz=640):
        cv2.imwrite(
            str(out / f"{det.path.stem}_pred.jpg"),
            draw_boxes(cv2.imread(str(det.path)), det.boxes, det.classes, model.names, det.scores),
        )
        print(f"{det.path.name}: {len(det.boxes)} detections")
    print(f"annotated images in {out}")
