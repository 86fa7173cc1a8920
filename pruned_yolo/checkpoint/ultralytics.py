"""Import of official ultralytics YOLOv5 `.pt` checkpoints (v5.0 - v7.0) without ultralytics.

A `.pt` file is a zip holding a pickled dict whose `model` entry is a whole pickled
`models.yolo.Model`. We never let pickle import real classes: `find_class` resolves
names through an allowlist, and every allowed *module class* (ultralytics or torch.nn)
becomes an inert record of its pickled attributes. Tensors are rebuilt from the zip's
raw storages. Any other global (functions, unknown classes) aborts with a clear error.
From the records we read the model YAML, class names, strides, anchors and weights.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, UnsafeCheckpointError
from ..models.config import arch_from_cfg
from ..models.yolo import YOLO
from .native import load_state

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}

# Module classes that may appear in a YOLOv5 model pickle; each becomes a _Record.
_MODULE_CLASSES = {
    "models.yolo": {"Model", "DetectionModel", "Detect"},
    "models.common": {
        "Conv",
        "C3",
        "Bottleneck",
        "BottleneckCSP",
        "SPP",
        "SPPF",
        "Focus",
        "Concat",
        "DWConv",
        "Contract",
        "Expand",
    },
    "torch.nn.modules.conv": {"Conv2d"},
    "torch.nn.modules.batchnorm": {"BatchNorm2d"},
    "torch.nn.modules.activation": {"SiLU", "LeakyReLU", "Hardswish", "ReLU", "Sigmoid"},
    "torch.nn.modules.container": {"ModuleList", "Sequential", "ModuleDict"},
    "torch.nn.modules.pooling": {"MaxPool2d"},
    "torch.nn.modules.upsampling": {"Upsample"},
    "torch.nn.modules.linear": {"Identity"},
}


class _Record:
    """Inert stand-in for a pickled module: keeps the pickled attributes, runs no code."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_init_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"<record {self.qualname}>"


def _record_class(module: str, name: str) -> type:
    return type(name, (_Record,), {"qualname": f"{module}.{name}"})


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return torch.as_strided(storage, size, stride, offset)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow text codecs only
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise UnsafeCheckpointError(f"checkpoint uses codec '{encoding}', which is not allowed")
    return codecs.encode(text, encoding)


def _numpy_reconstruct():
    multiarray = getattr(np, "_core", None) or np.core
    return multiarray.multiarray._reconstruct, multiarray.multiarray.scalar


_SAFE_FUNCTIONS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _encode,
    ("pathlib", "PosixPath"): PurePosixPath,
    ("pathlib", "WindowsPath"): PureWindowsPath,
    ("pathlib", "Path"): PurePosixPath,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_FUNCTIONS[(_mod, "_reconstruct")], _SAFE_FUNCTIONS[(_mod, "scalar")] = _numpy_reconstruct()
for _np_type in ("float64", "float32", "int64", "int32", "bool_"):
    _SAFE_FUNCTIONS[("numpy", _np_type)] = getattr(np, _np_type)
for _mod in ("numpy.dtypes",):
    for _dt in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(np.dtypes, _dt):
            _SAFE_FUNCTIONS[(_mod, _dt)] = getattr(np.dtypes, _dt)


class _AllowlistUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._source = archive, prefix, source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_FUNCTIONS:
            return _SAFE_FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if name in _MODULE_CLASSES.get(module, ()):
            return _record_class(module, name)
        raise UnsafeCheckpointError(
            f"{self._source}: checkpoint references '{module}.{name}', which is not on the allowlist of "
            "classes; refusing to unpickle it"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self._source}: unsupported persistent id {pid!r}")
        _, dtype, key, _location, _numel = pid
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{self._source}: unsupported storage type {dtype!r}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}data/{key}")
            except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
                raise CheckpointError(f"{self._source}: truncated checkpoint (storage {key}: {e})") from None
            self._storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self._storages[key]


def read_pt(path: str | Path) -> dict:
    """Unpickle an ultralytics `.pt` file through the allowlist; returns the raw dict."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable torch zip checkpoint ({e})") from None
    pkl = next((n for n in names if n.endswith("data.pkl")), None)
    if pkl is None:
        raise CheckpointError(f"{path}: torch zip without data.pkl")
    prefix = pkl[: -len("data.pkl")]
    try:
        data = archive.read(pkl)
        obj = _AllowlistUnpickler(data, archive, prefix, str(path)).load()
    except (CheckpointError, ConfigError):
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path}: not a YOLOv5 training checkpoint (no 'model' entry)")
    return obj


def _state_dict(record: _Record, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a record tree the way nn.Module.state_dict would."""
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (record.__dict__.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
    for name, child in (record.__dict__.get("_modules") or {}).items():
        if isinstance(child, _Record):
            out.update(_state_dict(child, f"{prefix}{name}."))
    return out


def _names(raw: Any, nc: int) -> list[str]:
    if isinstance(raw, dict):
        return [str(raw[k]) for k in sorted(raw)]
    if isinstance(raw, (list, tuple)):
        return [str(n) for n in raw]
    return [str(i) for i in range(nc)]


def load_ultralytics(path: str | Path) -> YOLO:
    """Build our model from an official YOLOv5 `.pt` checkpoint."""
    ckpt = read_pt(path)
    rec = ckpt.get("ema") or ckpt["model"]
    if not isinstance(rec, _Record) or not isinstance(rec.__dict__.get("yaml"), dict):
        raise CheckpointError(f"{path}: the checkpoint's model carries no YAML config")
    cfg = dict(rec.yaml)
    arch = arch_from_cfg(cfg)
    seq = rec._modules.get("model")
    detect = list(seq._modules.values())[-1] if isinstance(seq, _Record) else None
    if detect is None or "anchors" not in (detect._buffers or {}):
        raise CheckpointError(f"{path}: no Detect layer with anchors found")
    stride = detect.__dict__.get("stride", rec.__dict__.get("stride"))
    stride = torch.as_tensor(stride, dtype=torch.float32)
    anchors = detect._buffers["anchors"].float() * stride.view(-1, 1, 1)  # stride units -> pixels
    det = arch["layers"][-1]["args"]
    det["anchors"] = [[round(float(v), 4) for v in row.flatten()] for row in anchors]
    det["strides"] = [float(s) for s in stride]
    model = YOLO(arch)
    state = {k: v for k, v in _state_dict(rec).items() if not k.endswith((".anchors", ".anchor_grid"))}
    load_state(model, state, path)
    model.names = _names(rec.__dict__.get("names"), model.nc)
    model.meta = {
        "source": {"format": "ultralytics", "file": Path(path).name, "epoch": ckpt.get("epoch")},
        "history": [],
    }
    return model
