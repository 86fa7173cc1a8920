"""pruned-yolo predict: detections on images, saved as annotated images, YOLO txt and JSON."""

from __future__ import annotations

from .common import add_device, add_inference, add_output_folder, add_weights, non_negative_int

HELP = "run detection on an image, a folder or a .txt list of images"


def add_arguments(p):
    add_weights(p)
    p.add_argument("--source", required=True, help="image file, folder or .txt list")
    add_inference(p, conf=0.25, iou=0.45)
    p.set_defaults(batch=1)
    p.add_argument("--classes", type=non_negative_int, nargs="+", help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--multi-label", action="store_true", help="allow several classes per box")
    add_output_folder(p, "runs/predict", "results")
    p.add_argument("--save-txt", action="store_true", help="write YOLO-format labels per image")
    p.add_argument("--save-conf", action="store_true", help="add the confidence to the --save-txt lines")
    p.add_argument("--save-json", action="store_true", help="write predictions.json with every detection")
    p.add_argument("--nosave", action="store_true", help="do not write annotated images")
    add_device(p)


def run(args):
    from pathlib import Path

    import cv2

    from ..checkpoint import load_model
    from ..data.images import read_image
    from ..inference import predict
    from ..inference.predictor import output_names, resolve_source
    from ..utils.files import increment_dir, write_json
    from ..utils.plotting import draw_boxes
    from .common import setup_device

    device = setup_device(args)
    model = load_model(args.weights)
    images = resolve_source(args.source)
    names = output_names(images)  # distinct even for x.jpg / x.png or a/x.jpg / b/x.jpg
    out = increment_dir(Path(args.project) / args.name, args.exist_ok)
    results, n_boxes = [], 0
    for det in predict(
        model,
        images,
        args.imgsz,
        args.conf,
        args.iou,
        args.max_det,
        args.batch,
        device,
        args.half,
        args.classes,
        args.agnostic_nms,
        args.multi_label,
        args.workers,
    ):
        n_boxes += len(det.boxes)
        name = names.get(det.path, det.path.stem)
        out.mkdir(parents=True, exist_ok=True)  # only once an image was read: a bad source writes nothing
        if not args.nosave:
            im = draw_boxes(read_image(det.path), det.boxes, det.classes, model.names, det.scores)
            cv2.imwrite(str(out / f"{name}.jpg"), im)
        if args.save_txt:
            (out / "labels").mkdir(exist_ok=True)
            lines = det.to_yolo_lines(args.save_conf)
            (out / "labels" / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
        if args.save_json:
            results.append({"id": name, **det.to_dict(model.names)})
    if args.save_json:
        write_json(out / "predictions.json", results)
    print(f"{n_boxes} detections; results saved to {out}")
