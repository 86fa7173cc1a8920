"""Argument groups shared by several commands, and the argparse `type=` checks they use.

Every check raises `argparse.ArgumentTypeError`, which the parser turns into one line,
`error: argument --opt: <problem>`, and exit code 2 (see main.py). Values that end up in a
config dataclass (`TrainConfig`, `CompressConfig`) are checked there instead, so that the
Python API gets the same checks.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

STRIDE = 32  # the largest stride of the YOLOv5 (P5) models: image sizes are multiples of it


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def int_at_least(minimum: int, note: str = "") -> Callable[[str], int]:
    """An integer >= `minimum` (`note` is appended to the error, e.g. what 0 means)."""

    def check(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{note}, got {value}")
        return value

    check.__name__ = f"int >= {minimum}"
    return check


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (confidence and IoU thresholds)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def imgsz(text: str) -> int:
    """An image size: a positive multiple of the stride (an error, never silently rounded)."""
    value = _number(text, int)
    if value < STRIDE or value % STRIDE:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of the model stride: a positive multiple of {STRIDE}, got {value}"
        )
    return value


def device(text: str) -> str:
    """'' (auto), cpu, 0, cuda:1 ...: anything torch.device accepts, checked at parse time."""
    from ..errors import PrunedYoloError
    from ..utils.torch_utils import select_device

    try:
        select_device(text)
    except RuntimeError:  # torch.device() could not parse it
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, 0, 1, cuda:0, mps ...)") from None
    except PrunedYoloError as e:  # e.g. CUDA asked for but not available
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def output_file(text: str) -> str:
    """A path to write a file to: anything but an existing folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, expected a file path")
    return text


def add_weights(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--weights",
        required=required,
        metavar="W",
        help="checkpoint: ours (.safetensors) or an official ultralytics YOLOv5 .pt",
    )


def add_output_folder(p: argparse.ArgumentParser, project: str, what: str = "run") -> None:
    """`--project/--name/--exist-ok`: where a command writes its folder (`project/name`, incremented)."""
    p.add_argument("--project", default=project, help=f"parent folder of the {what}")
    p.add_argument("--name", default="exp", help=f"{what} folder name (incremented if it exists)")
    p.add_argument("--exist-ok", action="store_true", help=f"reuse an existing {what} folder")


def add_cache(p: argparse.ArgumentParser) -> None:
    from ..data.dataset import CACHE_MODES

    modes = [m for m in CACHE_MODES if m]
    p.add_argument("--cache", choices=modes, default=None, help="decode every training image once and keep it in RAM")


def options_for(fn: Callable, args: argparse.Namespace, **values) -> dict:
    """Keyword arguments of `fn` (a function, or a config dataclass: its fields) taken from the
    parsed options of the same names (`values` win)."""
    import inspect

    given = vars(args) | values
    names = [n for n, prm in inspect.signature(fn).parameters.items() if prm.kind is not prm.VAR_KEYWORD]
    return {n: given[n] for n in names if n in given}


def add_group_normalize(p: argparse.ArgumentParser) -> None:
    """`--group-normalize` of `prune` and `compress` (pruning.groups.GROUP_NORMALIZERS)."""
    from ..pruning.groups import GROUP_NORMALIZERS

    p.add_argument(
        "--group-normalize",
        default="none",
        choices=GROUP_NORMALIZERS,
        help="mean: rank channels by their score relative to their group's mean (spreads pruning over layers)",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device, default="", help="cpu, 0, cuda:1 ... (default: first GPU if any, else cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: all cores)")


def add_inference(p: argparse.ArgumentParser, conf: float, iou: float) -> None:
    p.add_argument(
        "--imgsz", type=imgsz, default=640, help=f"inference size (pixels, long side; a multiple of {STRIDE})"
    )
    p.add_argument("--batch", type=positive_int, default=16, help="images per batch")
    p.add_argument("--conf", type=fraction, default=conf, help="confidence threshold, in [0, 1]")
    p.add_argument("--iou", type=fraction, default=iou, help="NMS IoU threshold, in [0, 1]")
    p.add_argument("--max-det", type=positive_int, default=300, help="maximum detections per image")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data loading processes (0: in the main one)")


def setup_device(args: argparse.Namespace):
    from ..utils.torch_utils import select_device, set_cpu_threads

    set_cpu_threads(args.threads)
    device = select_device(args.device)
    if args.half and device.type != "cuda":
        from ..errors import PrunedYoloError

        raise PrunedYoloError("--half needs a CUDA device")
    return device
