"""Checkpoints: our pickle-free safetensors format and the import of official `.pt` files."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..models.yolo import YOLO
from .native import SUFFIX, load_native, read_header, save_checkpoint
from .ultralytics import load_ultralytics, read_pt


def checkpoint_kind(path: str | Path) -> str:
    """'native' (safetensors) or 'ultralytics' (torch zip), decided by content, not by name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from None
    if head[:2] == b"PK":
        return "ultralytics"
    if len(head) == 8:
        return "native"
    raise CheckpointError(f"{path}: file too short to be a checkpoint")


def load_model(path: str | Path) -> YOLO:
    """Load a model from our `.safetensors` checkpoint or an official ultralytics `.pt`."""
    kind = checkpoint_kind(path)
    return load_ultralytics(path) if kind == "ultralytics" else load_native(path)


def converted_path(src: str | Path, dst: str | Path) -> Path:
    """Where `convert_checkpoint(src, dst)` writes: `dst` if it is a .safetensors file path, else
    `<src stem>.safetensors` in the folder `dst`. A new name with another suffix is refused (it
    is a file name, never a folder to create), as is overwriting `src`."""
    dst = Path(dst)
    if dst.suffix and dst.suffix != SUFFIX and not dst.is_dir():
        raise CheckpointError(f"{dst}: give a {SUFFIX} file or a folder")
    out = dst / (Path(src).stem + SUFFIX) if dst.is_dir() or not dst.suffix else dst
    if out.resolve() == Path(src).resolve():
        raise CheckpointError(f"{out} would overwrite the source checkpoint SRC")
    return out


def convert_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Convert any supported checkpoint to ours; `dst` is a file or a folder (see converted_path)."""
    out = converted_path(src, dst)
    return save_checkpoint(load_model(src), out)


__all__ = [
    "SUFFIX",
    "checkpoint_kind",
    "convert_checkpoint",
    "converted_path",
    "load_model",
    "load_native",
    "load_ultralytics",
    "read_header",
    "read_pt",
    "save_checkpoint",
]
