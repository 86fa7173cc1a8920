"""Our checkpoint format: one safetensors file, no pickle anywhere.

Tensors hold the state dict (float32); the safetensors header metadata holds JSON strings:
`format`, `version`, `arch` (the explicit architecture), `names` and `meta` (image size,
training and pruning history, ...). A checkpoint is rebuilt from the file alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError, ConfigError
from ..models.yolo import YOLO
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


def read_header(path: str | Path) -> dict:
    """The decoded metadata of a checkpoint (arch, names, meta) without loading the weights."""
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
        return {k: json.loads(info[k]) for k in ("arch", "names", "meta")}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({e})") from None


def load_native(path: str | Path) -> YOLO:
    """Load a model saved by `save_checkpoint`."""
    header = read_header(path)
    try:
        model = YOLO(header["arch"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: invalid architecture in checkpoint ({e})") from None
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
    """Strictly load `state`; any missing, extra or mis-shaped tensor is a CheckpointError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shapes:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes))
            if keys
        )
        raise CheckpointError(f"{source}: weights do not match the architecture ({detail})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
