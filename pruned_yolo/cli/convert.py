"""pruned-yolo convert FORMAT SRC DST: other dataset formats -> YOLO layout + data YAML."""

from __future__ import annotations

HELP = "convert a dataset to YOLO format (visdrone: VisDrone-DET annotations)"

FORMATS = ("visdrone",)


def add_arguments(p):
    p.description = (
        "Convert a dataset to YOLO layout (images/, labels/, data.yaml). "
        "visdrone: SRC holds images/ and annotations/ (one split: written as both train and val of "
        "the data YAML), or official split folders such as VisDrone2019-DET-train/ and "
        "VisDrone2019-DET-val/ (-> train, val; -test-dev -> test). Category 0 (ignored regions), "
        "11 (others) and score-0 rows are dropped, boxes are clipped to the image, class = category - 1."
    )
    p.add_argument("format", choices=FORMATS, help="source annotation format")
    p.add_argument("src", help="source dataset folder")
    p.add_argument("dst", help="output folder (created)")
    p.add_argument("--symlink", action="store_true", help="link the images instead of copying them")


def run(args):
    if args.format == "visdrone":
        from ..data.visdrone import convert_visdrone

        out = convert_visdrone(args.src, args.dst, symlink=args.symlink)
    print(f"saved {out}")
    return 0
