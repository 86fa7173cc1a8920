"""Resumable training state in one safetensors file, without pickle.

`weights/last_state.safetensors` holds, as tensors:

* `model.<name>`: the model state dict (fp32, BN buffers included);
* `ema.<name>`: the EMA model state dict;
* `optim.<param index>.<key>`: per-parameter optimizer state (momentum buffers, ...);
* `rng.torch` (and `rng.cuda.<i>`): torch generator states;

and in the header metadata one JSON document (`state`) with the rest: architecture and
class names, optimizer param groups and non-tensor optimizer state, scheduler and
GradScaler states, EMA update count, the next epoch, best fitness, the history of
per-epoch results, the training config and hyp, and the python / numpy RNG states.

The file is written atomically (temporary file + rename): a crash at any moment leaves
either the previous state or the new one, never a broken file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..utils.files import atomic_write

STATE_FORMAT = "pruned-yolo-train-state"
STATE_VERSION = 1


def _flat(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def _unflat(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def optimizer_to_parts(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and a JSON-able remainder."""
    tensors, plain_state = {}, {}
    for idx, entries in sd["state"].items():
        plain = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                plain[key] = value
        plain_state[str(idx)] = plain
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain_state}


def optimizer_from_parts(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in info["plain_state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": info["param_groups"]}


def rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    plain = {
        "python": [version, list(mt), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, plain


def set_rng_states(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    version, mt, gauss = plain["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_state(
    path: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    info: dict,
) -> Path:
    """Write a resumable state; `info` is any JSON-able dict (scheduler, scaler, epoch, ...)."""
    tensors = {**_flat("model", model_state), **_flat("ema", ema_state)}
    opt_tensors, opt_info = optimizer_to_parts(optimizer_state)
    rng_tensors, rng_plain = rng_states()
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, **info, "optimizer": opt_info, "rng": rng_plain}
    header = {"state": json.dumps(doc)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_state(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON document, all tensors) of a state file written by `save_state`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable training state ({e})") from None
    try:
        doc = json.loads(header["state"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a pruned-yolo training state") from None
    if doc.get("format") != STATE_FORMAT or doc.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: unsupported training state ({doc.get('format')} v{doc.get('version')})")
    return doc, tensors


def saved_epoch(path: str | Path) -> int:
    """The number of finished epochs recorded in a state file (reads the header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads((f.metadata() or {})["state"])
        return int(doc["epoch"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable training state ({e})") from None


def model_tensors(tensors: dict[str, torch.Tensor], which: str = "model") -> dict[str, torch.Tensor]:
    return _unflat(which, tensors)
