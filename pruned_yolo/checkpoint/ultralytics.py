"""Import of official ultralytics YOLOv5 `.pt` checkpoints (v5.0 - v7.0) without ultralytics.

A `.pt` file is a zip holding a pickled dict whose `model` entry is a whole pickled
`models.yolo.Model`. We never let pickle import real classes: `find_class` resolves
names through an allowlist, and every allowed *module class* (ultralytics or torch.nn)
becomes an inert record of its pickled attributes. Tensors are rebuilt from the zip's
raw storages. Any other global (functions, unknown classes) aborts with a clear error.
From the records we read the model YAML, class names, strides, anchors and weights.

A corrupt or hostile file must end in a CheckpointError, never in a traceback or an
unbounded allocation: the pickle is scanned opcode by opcode before it is unpickled
(memo indices, lengths, frames), storages may not add up to more than the file holds,
tensors may not reach outside their storage, and the model is built only once its
architecture is known to match the weights (`native.build_for_checkpoint`).
"""

from __future__ import annotations

import codecs
import collections
import functools
import io
import math
import pickle
import pickletools
import reprlib
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, UnsafeCheckpointError
from ..models.config import arch_from_cfg
from ..models.yolo import MAX_DEPTH, MAX_LAYERS, MAX_LEVELS, YOLO
from .native import build_for_checkpoint, error_detail, load_state

# Bounds on what a checkpoint may make us allocate. The official data.pkl files are ~80 kB.
MAX_PICKLE_BYTES = 16 << 20
MAX_TENSOR_DIMS = 16
MAX_WALK_STEPS = 200_000  # module records and table entries walked for the state dict
MAX_YAML_NODES = 100_000  # values in the model YAML (an official one has ~300)

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


@functools.cache
def _record_class(module: str, name: str) -> type:
    return type(name, (_Record,), {"qualname": f"{module}.{name}"})


class _Allowed:
    """An allowed function as the unpickler sees it: callable (REDUCE), but no class (NEWOBJ
    fails) and immutable (BUILD fails), so a pickle cannot alter it for later loads."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Any):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise CheckpointError("a checkpoint tried to modify an allowed function")

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("a checkpoint tried to modify an allowed function")


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1'); allow text codecs only
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise UnsafeCheckpointError(f"checkpoint uses codec {reprlib.repr(encoding)}, which is not allowed")
    return codecs.encode(text, encoding)


def _pure_path(cls: type) -> Any:
    def make(*parts: Any) -> Any:
        if not all(isinstance(p, str) for p in parts):
            raise CheckpointError("a pickled path made of something else than strings")
        return cls(*parts)

    return make


# numpy values (e.g. `best_fitness`) are never used: arrays become inert records, so that no
# pickled shape, dtype or nested list can make numpy allocate; plain numeric scalars are decoded.
_NdarrayRecord = _record_class("numpy", "ndarray")


def _numpy_reconstruct(*_args: Any) -> _Record:
    return _NdarrayRecord()


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf" and isinstance(data, bytes) and len(data) == dtype.itemsize:
        return np.frombuffer(data, dtype=dtype)[0].item()
    return _record_class("numpy", "generic")()


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not (isinstance(spec, str) and len(spec) <= 8):
        raise CheckpointError(f"unsupported numpy dtype {reprlib.repr(spec)}")
    return np.dtype(spec)


def _numpy_number(kind: type) -> Any:
    def make(value: Any = 0) -> Any:
        if not isinstance(value, (bool, int, float)):  # a list would become an array of any size
            raise CheckpointError(f"unsupported numpy.{kind.__name__} value {reprlib.repr(value)}")
        return kind(value)

    return make


_SAFE_FUNCTIONS: dict[tuple[str, str], Any] = {
    # immutable builtin types, called on objects the pickle already holds
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch", "Size"): tuple,
    # functions, wrapped
    ("torch._utils", "_rebuild_parameter"): _Allowed(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Allowed(_rebuild_parameter),
    ("_codecs", "encode"): _Allowed(_encode),
    ("pathlib", "PosixPath"): _Allowed(_pure_path(PurePosixPath)),
    ("pathlib", "WindowsPath"): _Allowed(_pure_path(PureWindowsPath)),
    ("pathlib", "Path"): _Allowed(_pure_path(PurePosixPath)),
    ("numpy", "ndarray"): _NdarrayRecord,
    ("numpy", "dtype"): _Allowed(_numpy_dtype),
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_FUNCTIONS[(_mod, "_reconstruct")] = _Allowed(_numpy_reconstruct)
    _SAFE_FUNCTIONS[(_mod, "scalar")] = _Allowed(_numpy_scalar)
for _np_type in ("float64", "float32", "int64", "int32", "bool_"):
    _SAFE_FUNCTIONS[("numpy", _np_type)] = _Allowed(_numpy_number(getattr(np, _np_type)))
for _mod in ("numpy.dtypes",):
    for _dt in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(np.dtypes, _dt):
            _SAFE_FUNCTIONS[(_mod, _dt)] = getattr(np.dtypes, _dt)  # immutable types


# -- pickle pre-scan ---------------------------------------------------------------------
# opcode byte -> (name, argument kind, width): kind "fixed" (width bytes), "line", "lines2"
# (GLOBAL/INST: two lines), "sized" (a width-byte little-endian length, then that many bytes;
# width -4 is a signed 4-byte length), or None (no argument).
def _opcode_table() -> dict[int, tuple[str, str | None, int]]:
    sized = {
        pickletools.TAKEN_FROM_ARGUMENT1: 1,
        pickletools.TAKEN_FROM_ARGUMENT4: -4,
        pickletools.TAKEN_FROM_ARGUMENT4U: 4,
        pickletools.TAKEN_FROM_ARGUMENT8U: 8,
    }
    table = {}
    for op in pickletools.opcodes:
        if op.arg is None:
            kind, width = None, 0
        elif op.name in ("GLOBAL", "INST"):
            kind, width = "lines2", 0
        elif op.arg.n == pickletools.UP_TO_NEWLINE:
            kind, width = "line", 0
        elif op.arg.n in sized:
            kind, width = "sized", sized[op.arg.n]
        else:
            kind, width = "fixed", op.arg.n
        table[ord(op.code)] = (op.name, kind, width)
    return table


_OPCODES = _opcode_table()
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def scan_pickle(data: bytes, source: str | Path) -> None:
    """Walk the opcodes of `data` without running them; raise CheckpointError on anything that
    would make the unpickler fail late or allocate more than the data justifies: unknown
    opcodes, truncated arguments, a missing STOP, frames longer than the data, and memo
    indices out of sequence (the C unpickler sizes its memo table by the largest index).
    """
    end, pos, stores = len(data), 0, 0

    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"{source}: corrupt checkpoint pickle ({why} at byte {pos})")

    while pos < end:
        entry = _OPCODES.get(data[pos])
        if entry is None:
            raise fail(f"unknown opcode {data[pos]:#04x}")
        name, kind, width = entry
        start = pos + 1
        if kind is None:
            pos = start
        elif kind == "fixed":
            pos = start + width
        elif kind == "sized":
            n = abs(width)
            length = int.from_bytes(data[start : start + n], "little", signed=width < 0)
            if length < 0:
                raise fail(f"negative length in {name}")
            pos = start + n + length
        else:
            nl = data.find(b"\n", start)
            if kind == "lines2" and nl >= 0:
                nl = data.find(b"\n", nl + 1)
            if nl < 0:
                raise fail(f"unterminated {name}")
            pos = nl + 1
        if pos > end:
            raise fail(f"truncated {name}")
        if name == "STOP":
            return
        if name == "FRAME" and int.from_bytes(data[start:pos], "little") > end - pos:
            raise fail("frame longer than the data")
        if name in _MEMO_PUTS:
            arg = data[start:pos]
            try:
                index = int(arg) if name == "PUT" else int.from_bytes(arg, "little")
            except ValueError:
                raise fail("bad memo index") from None
            if not 0 <= index <= stores:
                raise fail(f"memo index {index} out of sequence")
            stores += 1
        elif name == "MEMOIZE":
            stores += 1
    raise fail("no STOP opcode")


class _AllowlistUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str, file_size: int):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._source = archive, prefix, source
        self._storages: dict[str, torch.Tensor] = {}
        self._storage_ids: set[int] = set()
        # storages are stored uncompressed: together they cannot exceed the file; tensor views
        # (logical sizes) get some slack for expanded buffers such as anchor grids
        self._storage_budget = file_size
        self._view_budget = 4 * file_size + (1 << 20)
        self._rebuild = _Allowed(self._rebuild_tensor)

    def _error(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self._source}: corrupt checkpoint ({why})")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_FUNCTIONS:
            return _SAFE_FUNCTIONS[(module, name)]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if name in _MODULE_CLASSES.get(module, ()):
            return _record_class(module, name)
        raise UnsafeCheckpointError(
            f"{self._source}: checkpoint references '{module}.{name}', which is not on the allowlist of "
            "classes; refusing to unpickle it"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self._error(f"unsupported persistent id {reprlib.repr(pid)}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise self._error(f"unsupported storage type {reprlib.repr(dtype)}")
        if not (isinstance(key, str) and 0 < len(key) <= 64 and "/" not in key):
            raise self._error(f"bad storage key {reprlib.repr(key)}")
        if not (_is_int(numel) and numel >= 0):
            raise self._error(f"bad size of storage {key}")
        if key in self._storages:
            storage = self._storages[key]
            if storage.dtype != dtype:
                raise self._error(f"storage {key} is used as {storage.dtype} and {dtype}")
            return storage
        try:
            info = self._archive.getinfo(f"{self._prefix}data/{key}")
        except KeyError:
            raise CheckpointError(f"{self._source}: truncated checkpoint (storage {key} is missing)") from None
        if info.file_size != numel * dtype.itemsize:
            raise self._error(f"storage {key} holds {info.file_size} bytes, not {numel} x {dtype}")
        self._storage_budget -= info.file_size
        if self._storage_budget < 0:
            raise self._error("its storages add up to more than the file size")
        try:
            raw = self._archive.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise CheckpointError(f"{self._source}: truncated checkpoint (storage {key}: {e})") from None
        if len(raw) != info.file_size:
            raise CheckpointError(f"{self._source}: truncated checkpoint (storage {key})")
        storage = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        self._storages[key] = storage
        self._storage_ids.add(id(storage))
        return storage

    def _rebuild_tensor(self, storage, offset, size, stride, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        """torch._utils._rebuild_tensor_v2, checked: the view must lie inside its storage."""
        if not (isinstance(storage, torch.Tensor) and id(storage) in self._storage_ids):
            raise self._error("a tensor without a storage")
        dims_ok = isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
        if not (dims_ok and len(size) <= MAX_TENSOR_DIMS and all(_is_int(v) and v >= 0 for v in (*size, *stride))):
            raise self._error(f"bad tensor size {reprlib.repr(size)} or stride {reprlib.repr(stride)}")
        if not (_is_int(offset) and offset >= 0):
            raise self._error(f"bad tensor offset {reprlib.repr(offset)}")
        numel = math.prod(size)
        if numel:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel():
                raise self._error(
                    f"a tensor of size {list(size)} needs {last + 1} elements, its storage holds {storage.numel()}"
                )
        self._view_budget -= numel * storage.element_size()
        if self._view_budget < 0:
            raise self._error("its tensors add up to far more than the file holds")
        return torch.as_strided(storage, tuple(size), tuple(stride), offset)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _naming(e: CheckpointError, path: Path) -> CheckpointError:
    """`e` (same class) with a message that starts with the checkpoint's path."""
    message = str(e)
    return e if message.startswith(str(path)) else type(e)(f"{path}: {message}")


def read_pt(path: str | Path) -> dict:
    """Unpickle an ultralytics `.pt` file through the allowlist; returns the raw dict."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except Exception as e:  # zipfile raises many types on a corrupt directory
        raise CheckpointError(f"{path}: not a readable torch zip checkpoint ({error_detail(e)})") from None
    pkl = next((i for i in infos if i.filename.endswith("data.pkl")), None)
    if pkl is None:
        raise CheckpointError(f"{path}: torch zip without data.pkl")
    if pkl.file_size > min(file_size, MAX_PICKLE_BYTES):
        raise CheckpointError(f"{path}: corrupt checkpoint (data.pkl of {pkl.file_size} bytes)")
    prefix = pkl.filename[: -len("data.pkl")]
    try:
        data = archive.read(pkl)
    except Exception as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({error_detail(e)})") from None
    scan_pickle(data, path)
    try:
        obj = _AllowlistUnpickler(data, archive, prefix, str(path), file_size).load()
    except CheckpointError as e:
        raise _naming(e, path) from None
    except Exception as e:  # a mutated pickle can raise nearly anything from the allowed callables
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({error_detail(e)})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path}: not a YOLOv5 training checkpoint (no 'model' entry)")
    return obj


def _state_dict(root: _Record) -> dict[str, torch.Tensor]:
    """Flatten a record tree the way nn.Module.state_dict would.

    Iterative, and bounded: a pickle can share one dict or record among many parents (or
    make cycles), so the walk stops after MAX_WALK_STEPS records and entries.
    """
    out: dict[str, torch.Tensor] = {}
    stack, steps = [(root, "")], 0
    while stack:
        record, prefix = stack.pop()
        attrs = record.__dict__
        groups = [attrs.get(g) or {} for g in ("_parameters", "_buffers", "_modules")]
        if not all(isinstance(g, dict) for g in groups):
            raise CheckpointError(f"module {prefix or 'model'} has a malformed parameter, buffer or module table")
        steps += 1 + sum(len(g) for g in groups)
        if steps > MAX_WALK_STEPS:
            raise CheckpointError("the module tree is too large (or cyclic)")
        for group in groups[:2]:
            out.update((f"{prefix}{name}", v) for name, v in group.items() if isinstance(v, torch.Tensor))
        stack.extend((child, f"{prefix}{name}.") for name, child in groups[2].items() if isinstance(child, _Record))
    return out


def _check_tensor(t: torch.Tensor, name: str) -> None:
    """A weight must be a plain view no larger than its storage (no stride-0 blow-up)."""
    if t.layout != torch.strided or t.device.type != "cpu":
        raise CheckpointError(f"tensor {name} is not a plain CPU tensor")
    if t.numel() * t.element_size() > t.untyped_storage().nbytes():
        raise CheckpointError(f"tensor {name} ({list(t.shape)}) is larger than its storage")


def _names(raw: Any, nc: int) -> list[str]:
    if raw is None:
        return [str(i) for i in range(nc)]
    if isinstance(raw, dict):
        if not all(_is_int(k) for k in raw) or set(raw) != set(range(len(raw))):
            raise CheckpointError("class names dict is not keyed 0..n-1")
        raw = [raw[k] for k in range(len(raw))]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(n, str) for n in raw):
        raise CheckpointError("class names must be a list of strings")
    if len(raw) != nc:
        raise CheckpointError(f"{len(raw)} class names for a model with {nc} classes")
    return list(raw)


def _count_nodes(node: Any, limit: int) -> int:
    """Nodes of a nested list/dict structure, counting shared ones each time; stops past `limit`."""
    count, stack = 0, [node]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def _check_cfg(cfg: dict) -> None:
    """Bound what expanding the model YAML may build: its size (a pickle can nest shared
    lists into exponentially large structures), row count, repeats and multipliers."""
    if _count_nodes(cfg, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise CheckpointError(f"the model YAML has more than {MAX_YAML_NODES} values")
    rows = cfg.get("backbone"), cfg.get("head")
    if not all(isinstance(r, list) for r in rows) or len(rows[0]) + len(rows[1]) > MAX_LAYERS:
        raise CheckpointError(f"model YAML needs backbone and head lists of at most {MAX_LAYERS} rows")
    for key in ("depth_multiple", "width_multiple"):
        v = cfg.get(key, 1.0)
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= 16):
            raise CheckpointError(f"model YAML {key} must be a number in (0, 16], got {reprlib.repr(v)}")
    for row in (*rows[0], *rows[1]):
        n = row[1] if isinstance(row, list) and len(row) == 4 else None
        if not (_is_int(n) and 1 <= n <= MAX_DEPTH):
            raise CheckpointError(f"model YAML row {reprlib.repr(row)} needs a repeat count in [1, {MAX_DEPTH}]")


def _stride_list(value: Any, nl: int) -> list[float]:
    if isinstance(value, torch.Tensor):
        if value.numel() > MAX_LEVELS or value.dim() != 1 or value.is_complex():
            raise CheckpointError("Detect stride must be a vector")
        value = value.tolist()
    if not (isinstance(value, (list, tuple)) and len(value) == nl):
        raise CheckpointError(f"Detect stride must list one value per level ({nl})")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value):
        raise CheckpointError("Detect strides must be positive numbers")
    return [float(v) for v in value]


def load_ultralytics(path: str | Path) -> YOLO:
    """Build our model from an official YOLOv5 `.pt` checkpoint."""
    path = Path(path)
    ckpt = read_pt(path)
    try:
        return _model_from_ckpt(ckpt, path)
    except CheckpointError as e:
        raise _naming(e, path) from None
    except ConfigError as e:
        raise CheckpointError(f"{path}: invalid model in checkpoint ({e})") from None
    except Exception as e:  # a corrupt record tree can trip up anything that reads it
        raise CheckpointError(f"{path}: corrupt checkpoint ({error_detail(e)})") from None


def _model_from_ckpt(ckpt: dict, path: Path) -> YOLO:
    ema, rec = ckpt.get("ema"), ckpt.get("model")
    rec = ema if isinstance(ema, _Record) else rec
    if not isinstance(rec, _Record) or not isinstance(rec.__dict__.get("yaml"), dict):
        raise CheckpointError(f"{path}: the checkpoint's model carries no YAML config")
    cfg = dict(rec.__dict__["yaml"])
    _check_cfg(cfg)
    arch = arch_from_cfg(cfg)
    modules = rec.__dict__.get("_modules")
    seq = modules.get("model") if isinstance(modules, dict) else None
    layers = seq.__dict__.get("_modules") if isinstance(seq, _Record) else None
    detect = list(layers.values())[-1] if isinstance(layers, dict) and layers else None
    buffers = detect.__dict__.get("_buffers") if isinstance(detect, _Record) else None
    anchors = buffers.get("anchors") if isinstance(buffers, dict) else None
    if not isinstance(anchors, torch.Tensor):
        raise CheckpointError(f"{path}: no Detect layer with anchors found")
    det = arch["layers"][-1]["args"]
    nl = len(det["anchors"])
    stride = torch.tensor(_stride_list(detect.__dict__.get("stride", rec.__dict__.get("stride")), nl))
    _check_tensor(anchors, "anchors")
    if anchors.dim() != 3 or anchors.shape[0] != nl or anchors.shape[2] != 2 or anchors.numel() > 2 * 64 * nl:
        raise CheckpointError(f"{path}: Detect anchors of shape {list(anchors.shape)} for {nl} levels")
    anchors = anchors.float() * stride.view(-1, 1, 1)  # stride units -> pixels
    if not torch.isfinite(anchors).all() or not (anchors > 0).all():
        raise CheckpointError(f"{path}: Detect anchors must be positive numbers")
    det["anchors"] = [[round(float(v), 4) for v in row.flatten()] for row in anchors]
    det["strides"] = stride.tolist()
    state = {k: v for k, v in _state_dict(rec).items() if not k.endswith((".anchors", ".anchor_grid"))}
    for name, tensor in state.items():
        _check_tensor(tensor, name)
    model = build_for_checkpoint(arch, {k: tuple(v.shape) for k, v in state.items()}, path)
    load_state(model, state, path)
    model.names = _names(rec.__dict__.get("names"), model.nc)
    epoch = ckpt.get("epoch")
    model.meta = {
        "source": {"format": "ultralytics", "file": path.name, "epoch": epoch if _is_int(epoch) else None},
        "history": [],
    }
    return model
