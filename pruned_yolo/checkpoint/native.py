"""Our checkpoint format: one safetensors file, no pickle anywhere.

Tensors hold the state dict (float32); the safetensors header metadata holds JSON strings:
`format`, `version`, `arch` (the explicit architecture), `names` and `meta` (image size,
training and pruning history, ...). A checkpoint is rebuilt from the file alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, ConfigError
from ..models.registry import get_module
from ..models.yolo import YOLO, check_arch
from ..utils.files import atomic_write

FORMAT = "pruned-yolo-checkpoint"
VERSION = "1"
SUFFIX = ".safetensors"


def save_checkpoint(model: YOLO, path: str | Path, **meta) -> Path:
    """Write `model` (weights, arch, names, meta + `meta` overrides) atomically to `path`."""
    if model.is_fused:
        raise CheckpointError("cannot save a fused model (BatchNorms folded); save before fuse()")
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    info = {
        "format": FORMAT,
        "version": VERSION,
        "arch": json.dumps(model.arch()),
        "names": json.dumps(list(model.names)),
        "meta": json.dumps({**model.meta, **meta}),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=info))


def error_detail(e: BaseException, limit: int = 200) -> str:
    """`TypeName: message` on one line, cut to `limit` characters, for wrapping an unexpected exception."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_header(header: dict, source: str | Path) -> None:
    """Raise CheckpointError unless arch, names and meta are well-formed and consistent."""
    try:
        check_arch(header["arch"])
        check_geometry(header["arch"])
    except ConfigError as e:
        raise CheckpointError(f"{source}: invalid architecture in checkpoint ({e})") from None
    nc = header["arch"]["layers"][-1]["args"]["nc"]
    names = header["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{source}: class names must be a list of strings")
    if len(names) != nc:
        raise CheckpointError(f"{source}: {len(names)} class names for a model with {nc} classes")
    meta = header["meta"]
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: checkpoint metadata must be a mapping")
    if not isinstance(meta.get("history", []), list):
        raise CheckpointError(f"{source}: checkpoint metadata 'history' must be a list")


def read_header(path: str | Path) -> dict:
    """The decoded and validated metadata of a checkpoint (arch, names, meta), without the weights."""
    try:
        with safe_open(str(path), framework="pt") as f:
            info = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: safetensors file without pruned-yolo metadata")
    if info.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {info.get('version')} is not supported")
    try:
        header = {k: json.loads(info[k]) for k in ("arch", "names", "meta")}
    except (KeyError, ValueError, RecursionError) as e:  # ValueError: bad JSON, or an int of > 4300 digits
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({error_detail(e)})") from None
    check_header(header, path)
    return header


def _shape_mismatch(own: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]]) -> str | None:
    """What differs between the tensor names and shapes a model has and those a file gives."""
    missing = sorted(set(own) - set(given))
    extra = sorted(set(given) - set(own))
    shapes = [k for k in own if k in given and tuple(own[k]) != tuple(given[k])]
    if not (missing or extra or shapes):
        return None
    return "; ".join(
        f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes))
        if keys
    )


def build_for_checkpoint(arch: dict, shapes: dict[str, tuple[int, ...]], source: str | Path) -> YOLO:
    """Build `YOLO(arch)` for a checkpoint whose tensors have `shapes`, without trusting `arch`.

    The architecture is validated (`check_arch`, then `check_geometry`: feature map sizes and
    Detect strides), the model is built on the meta device (no memory) and its tensor shapes
    compared with the file's; only then are real tensors allocated, so their size is bounded
    by what the file holds. Any failure is a CheckpointError naming `source`.
    """
    try:
        check_arch(arch)
        check_geometry(arch)
        with torch.device("meta"):
            skeleton = YOLO(arch)
        detail = _shape_mismatch({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, shapes)
        if detail:
            raise CheckpointError(f"{source}: weights do not match the architecture ({detail})")
        return YOLO(arch)
    except CheckpointError:
        raise
    except ConfigError as e:
        raise CheckpointError(f"{source}: invalid architecture in checkpoint ({e})") from None
    except Exception as e:  # anything else a corrupt architecture provokes
        raise CheckpointError(f"{source}: cannot build the checkpoint's model ({error_detail(e)})") from None


def _map_size(name: str, args: dict, size: Any) -> int | None:
    """Side of the square feature map a layer outputs for input side(s) `size` (None: invalid)."""
    if name in ("Conv", "Focus"):
        if name == "Focus":
            if size % 2:  # the four pixel phases would differ in size
                return None
            size //= 2
        k, s, p = args.get("k", 1), args.get("s", 1), args.get("p")
        out = (size + 2 * (k // 2 if p is None else p) - k) // s + 1
        return out if out >= 1 else None
    if name in ("Bottleneck", "C3", "BottleneckCSP"):  # 1x1 convs and padded 3x3 convs of stride 1
        return size
    if name in ("SPP", "SPPF"):  # stride-1 max-pools padded by k // 2 keep the size for odd k only
        k = args.get("k", [5, 9, 13] if name == "SPP" else 5)
        return size if all(v % 2 for v in (k if isinstance(k, list) else [k])) else None
    if name == "Concat":
        return size[0] if all(v == size[0] for v in size) else None
    if name == "Upsample":
        return size * args.get("scale_factor", 2)
    raise KeyError(name)


def check_geometry(arch: dict) -> None:
    """Raise ConfigError unless feature maps line up (Concat inputs of one size) and every
    Detect level's stated stride is the network's real downsampling.

    Propagates the side of a square input of 2 and 3 times the largest Detect stride
    through the graph (pure Python; `arch` must have passed `check_arch`). Architectures
    with layer types it does not know are not checked.
    """
    layers = arch["layers"]
    detect = layers[-1]["args"]
    strides = [float(s) for s in detect["strides"]]
    for factor in (2, 3):
        image = factor * math.ceil(max(strides))
        sizes: list[Any] = []
        for i, layer in enumerate(layers[:-1]):
            f = layer["from"]
            srcs = [j if j >= 0 else i + j for j in ([f] if isinstance(f, int) else f)]
            size_in = [image if j == -1 else sizes[j] for j in srcs]
            name = get_module(layer["type"]).__name__
            try:
                out = _map_size(name, layer["args"], size_in if isinstance(f, list) else size_in[0])
            except KeyError:
                return
            if out is None:
                raise ConfigError(f"layer {i} ({layer['type']}): feature maps do not line up (input sides {size_in})")
            sizes.append(out)
        f = layers[-1]["from"]
        for level, (j, s) in enumerate(zip(f, strides)):
            side = sizes[j if j >= 0 else len(layers) - 1 + j]
            if side * s != image:
                raise ConfigError(
                    f"Detect level {level} states stride {s:g} but the network maps a {image}-pixel side to {side}"
                )


def load_native(path: str | Path) -> YOLO:
    """Load a model saved by `save_checkpoint`."""
    header = read_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (no __iter__)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt weights ({e})") from None
    model = build_for_checkpoint(header["arch"], shapes, path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt weights ({e})") from None
    load_state(model, state, path)
    model.names = list(header["names"])
    model.meta = dict(header["meta"])
    return model


def load_state(model: YOLO, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strictly load `state`; any missing, extra, mis-shaped or unusable tensor is a CheckpointError."""
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors ({', '.join(bad[:3])})")
    own = model.state_dict()
    detail = _shape_mismatch({k: tuple(v.shape) for k, v in own.items()}, {k: tuple(v.shape) for k, v in state.items()})
    if detail:
        raise CheckpointError(f"{source}: weights do not match the architecture ({detail})")
    try:
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: cannot load the weights ({error_detail(e)})") from None
