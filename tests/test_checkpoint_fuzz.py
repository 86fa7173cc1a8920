"""Malformed checkpoints: every one must end in our error class, never in a traceback.

Seeded fuzzing of both loaders (byte mutations of an official-format `data.pkl`, byte and
structured mutations of a safetensors header) and one test per reported failure.
"""

from __future__ import annotations

import collections
import copy
import io
import json
import math
import pickle
import pickletools
import random
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pruned_yolo.checkpoint import load_model, read_header, save_checkpoint
from pruned_yolo.errors import CheckpointError, PrunedYoloError, UnsafeCheckpointError
from pruned_yolo.models import build_model

from .conftest import YOLOV5N_PT, tiny_cfg

# A small YOLOv5 in the official layout: every module type of the v6 models, 9 layers.
SMALL_CFG = {
    "nc": 2,
    "depth_multiple": 1.0,
    "width_multiple": 0.125,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]],
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "SPPF", [256, 5]],
    ],
    "head": [
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, 2], 1, "Concat", [1]],
        [-1, 1, "C3", [128, False]],
        [[7, 4], 1, "Detect", ["nc", "anchors"]],
    ],
}

# our classes, pickled under the names the official checkpoints use
_OFFICIAL_GLOBALS = {
    b"cpruned_yolo.models.yolo\nYOLO\n": b"cmodels.yolo\nModel\n",
    b"cpruned_yolo.models.detect\nDetect\n": b"cmodels.yolo\nDetect\n",
    b"cpruned_yolo.models.modules\nUpsample\n": b"ctorch.nn.modules.upsampling\nUpsample\n",
    b"cpruned_yolo.models.modules\n": b"cmodels.common\n",
}


def _official_tree(model, cfg: dict):
    """A copy of `model` laid out like an ultralytics Model: yaml, Detect anchors (stride units), fp16."""
    m = copy.deepcopy(model)
    det = m.detect
    stride = det._buffers.pop("stride")
    det.register_buffer("anchors", det._buffers.pop("anchor_px") / stride.view(-1, 1, 1))
    det.__dict__["stride"] = stride
    m.__dict__["yaml"] = copy.deepcopy(cfg)
    return m.half()


def _write_pt(path: Path, obj) -> Path:
    """torch.save `obj` (protocol 2, as YOLOv5 does) with the official global names."""
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=2)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                for ours, theirs in _OFFICIAL_GLOBALS.items():
                    data = data.replace(ours, theirs)
            dst.writestr(info.filename, data)
    return path


def _zip_entries(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def _write_zip(path: Path, entries, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries:
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = build_model(SMALL_CFG)
    model.names = ["cat", "dog"]
    return model


@pytest.fixture
def small_pt(small_model, tmp_path) -> Path:
    return _write_pt(tmp_path / "small.pt", {"epoch": 3, "model": _official_tree(small_model, SMALL_CFG), "ema": None})


def _check_outcome(path: Path, failures: list, label) -> None:
    """Loading must succeed (and the model run) or raise our error class."""
    try:
        model = load_model(path)
    except PrunedYoloError:
        return
    except Exception as e:  # what the test looks for
        failures.append((label, f"{type(e).__name__}: {str(e)[:160]}"))
        return
    try:
        side = 2 * math.ceil(float(model.stride.max()))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side))
    except Exception as e:  # a model that loads must run
        failures.append((label, f"loaded, then forward failed: {type(e).__name__}: {str(e)[:160]}"))


# -- fuzzing the official .pt loader -------------------------------------------------------

_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, ord("K"), ord("M"), ord("J"), ord("r"), ord("q"), ord("h"), ord("j")]
_EVIL = b"cos\nsystem\n(V{cmd}\ntR0"


def _mutate_pickle(data: bytes, rng: random.Random, boundaries: list[int], marker: Path) -> bytes:
    out = bytearray(data)
    if rng.random() < 0.05:  # splice a call to os.system at an opcode boundary
        at = rng.choice(boundaries)
        return bytes(out[:at] + _EVIL.replace(b"{cmd}", f"touch {marker}".encode()) + out[at:])
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        pos = rng.randrange(2, len(out) - 1)  # keep PROTO, keep STOP
        kind = rng.random()
        if kind < 0.55:
            out[pos] = rng.randrange(256)
        elif kind < 0.8:
            out[pos] = rng.choice(_INTERESTING)
        elif kind < 0.9:
            del out[pos]
        else:
            out.insert(pos, rng.randrange(256))
    return bytes(out)


def _fuzz_pt(pt: Path, tmp_path: Path, seeds: range) -> list:
    entries = _zip_entries(pt)
    pkl_name, pkl = next((n, d) for n, d in entries if n.endswith("data.pkl"))
    boundaries = [pos for _, _, pos in pickletools.genops(pkl)][1:-1]
    marker = tmp_path / "pwned"
    failures: list = []
    for seed in seeds:
        rng = random.Random(seed)
        mutated = _mutate_pickle(pkl, rng, boundaries, marker)
        path = _write_zip(tmp_path / "fuzz.pt", [(n, mutated if n == pkl_name else d) for n, d in entries])
        _check_outcome(path, failures, seed)
        assert not marker.exists(), f"seed {seed}: a mutated pickle ran a command"
    return failures


def test_fuzzed_official_pickles_fail_cleanly(small_pt, tmp_path):
    assert load_model(small_pt).names == ["cat", "dog"]  # the unmutated file loads
    failures = _fuzz_pt(small_pt, tmp_path, range(250))
    assert not failures, f"{len(failures)} of 250 mutated pickles escaped: {failures[:10]}"


@pytest.mark.skipif(not YOLOV5N_PT.is_file(), reason="../shared/weights/yolov5n_v6.1.pt not present")
def test_fuzzed_yolov5n_pickles_fail_cleanly(tmp_path):
    pt = tmp_path / "yolov5n.pt"
    shutil.copy(YOLOV5N_PT, pt)
    failures = _fuzz_pt(pt, tmp_path, range(1000, 1030))
    assert not failures, f"{len(failures)} of 30 mutated yolov5n pickles escaped: {failures[:10]}"


# -- fuzzing the safetensors header --------------------------------------------------------


def _split_safetensors(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join_safetensors(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + body


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


_REPLACEMENTS = [
    None,
    -1,
    0,
    1,
    3,
    2**31,
    10**9,
    2**70,
    1.5,
    -0.0,
    float("nan"),
    "x",
    "",
    [],
    {},
    True,
    [1, 2],
    {"a": 1},
]


def _mutate_tree(root, rng: random.Random):
    """One random edit of a JSON tree: delete, replace, nudge, duplicate or swap a node."""
    root = copy.deepcopy(root)
    paths = list(_paths(root))
    path = rng.choice(paths)
    if not path:
        return rng.choice(_REPLACEMENTS)
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    key, value = path[-1], parent[path[-1]]
    kind = rng.random()
    if kind < 0.15:
        del parent[key]
    elif kind < 0.55:
        parent[key] = copy.deepcopy(rng.choice(_REPLACEMENTS))
    elif kind < 0.75 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = rng.choice((value + 1, value - 1, value * 2, -value, value // 2 if isinstance(value, int) else 0))
    elif kind < 0.85 and isinstance(value, list):  # one entry more or less
        parent[key] = value + value[-1:] if rng.random() < 0.5 else value[:-1]
    else:
        other = root
        for k in rng.choice(paths):
            other = other[k]
        parent[key] = copy.deepcopy(other)
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint_bytes(tmp_path_factory) -> bytes:
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.names = ["a", "b", "c"]
    model.meta = {"imgsz": 64, "history": [{"step": "test"}]}
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors").read_bytes()


def test_fuzzed_safetensors_headers_fail_cleanly(tiny_checkpoint_bytes, tmp_path):
    header, body = _split_safetensors(tiny_checkpoint_bytes)
    n = int.from_bytes(tiny_checkpoint_bytes[:8], "little")
    path = tmp_path / "fuzz.safetensors"
    failures: list = []
    for seed in range(150):  # raw byte edits inside the JSON header
        rng = random.Random(seed)
        raw = bytearray(tiny_checkpoint_bytes)
        for _ in range(rng.choice((1, 1, 2, 3))):
            raw[8 + rng.randrange(n)] = rng.choice((rng.randrange(256), *b'"{}[],:\\09-ne '))
        path.write_bytes(bytes(raw))
        _check_outcome(path, failures, ("bytes", seed))
    for seed in range(250):  # structured edits of the decoded arch / names / meta, or of the header itself
        rng = random.Random(10_000 + seed)
        h = copy.deepcopy(header)
        key = rng.choice(("arch", "arch", "arch", "names", "meta", None))
        if key is None:
            h = _mutate_tree(h, rng)
        else:
            h["__metadata__"][key] = json.dumps(_mutate_tree(json.loads(h["__metadata__"][key]), rng))
        try:
            path.write_bytes(_join_safetensors(h, body))
        except (TypeError, ValueError):  # the edit made the header itself unserialisable
            continue
        _check_outcome(path, failures, ("tree", seed))
    assert not failures, f"{len(failures)} of 400 mutated headers escaped: {failures[:10]}"


# -- the reported failures, one by one -------------------------------------------------------


class _Reduce:
    """Pickles as `fn(*args)`."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _Storage:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


def _raw_pt(path: Path, obj, storages: dict[str, bytes], compression=zipfile.ZIP_STORED) -> Path:
    """A torch-zip checkpoint whose pickle is exactly `obj` (storages given as float32 bytes)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.persistent_id = lambda o: (
        ("storage", torch.FloatStorage, o.key, "cpu", o.numel) if isinstance(o, _Storage) else None
    )
    pickler.dump(obj)
    entries = [("archive/data.pkl", buf.getvalue())] + [(f"archive/data/{k}", v) for k, v in storages.items()]
    return _write_zip(path, entries, compression)


def _tensor(storage: _Storage, size: tuple, stride: tuple, offset: int = 0) -> _Reduce:
    return _Reduce(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, collections.OrderedDict())


def test_tensor_larger_than_its_storage(tmp_path):
    pt = _raw_pt(tmp_path / "big.pt", {"model": _tensor(_Storage("0", 4), (8,), (1,))}, {"0": bytes(16)})
    with pytest.raises(CheckpointError, match="needs 8 elements, its storage holds 4"):
        load_model(pt)


def test_stride_zero_view_far_larger_than_the_file(tmp_path):
    pt = _raw_pt(
        tmp_path / "wide.pt", {"model": _tensor(_Storage("0", 1), (1 << 20, 1 << 20), (0, 0))}, {"0": bytes(4)}
    )
    with pytest.raises(CheckpointError, match="add up to far more"):
        load_model(pt)


def _edit_official(model, tmp_path: Path, edit) -> Path:
    tree = _official_tree(model, SMALL_CFG)
    ckpt = {"epoch": 3, "model": tree, "ema": None}
    edit(ckpt, tree)
    return _write_pt(tmp_path / "edited.pt", ckpt)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda ckpt, tree: tree.yaml["backbone"][2].__setitem__(1, "1"), id="TypeError-repeats-str"),
        pytest.param(lambda ckpt, tree: tree.__dict__.__setitem__("_modules", ["x"]), id="AttributeError-modules"),
        pytest.param(lambda ckpt, tree: tree.model.__dict__.__setitem__("_modules", {}), id="IndexError-no-layers"),
        pytest.param(lambda ckpt, tree: tree.__dict__.__setitem__("names", {0: "a", "1": "b"}), id="TypeError-names"),
        pytest.param(lambda ckpt, tree: tree.__dict__.__setitem__("names", ["a"]), id="short-names"),
        pytest.param(lambda ckpt, tree: tree.yaml.__setitem__("width_multiple", 1e6), id="absurd-width"),
    ],
)
def test_mutated_official_pickles_raise_checkpoint_error(small_model, tmp_path, edit):
    with pytest.raises(CheckpointError, match="edited.pt"):
        load_model(_edit_official(small_model, tmp_path, edit))


def _huge_ndarray(ckpt, tree):
    ckpt["best_fitness"] = _Reduce(np.ndarray, (1 << 45,))  # 256 TiB if numpy were called


@pytest.mark.parametrize(
    "edit",
    [
        # RuntimeError before: `ckpt["ema"] or ckpt["model"]` took the truth value of a tensor
        pytest.param(lambda ckpt, tree: ckpt.__setitem__("ema", torch.ones(3)), id="RuntimeError-ema-tensor"),
        # MemoryError before: numpy.ndarray((2**45,)) was called; arrays are inert records now
        pytest.param(_huge_ndarray, id="MemoryError-ndarray"),
        pytest.param(lambda ckpt, tree: ckpt.__setitem__("epoch", [1, 2]), id="epoch-not-an-int"),
    ],
)
def test_unused_entries_of_official_pickles_are_harmless(small_model, tmp_path, edit):
    model = load_model(_edit_official(small_model, tmp_path, edit))
    assert model.names == ["cat", "dog"]
    assert model.meta["source"]["epoch"] in (3, None)


def _set(path: tuple, value):
    def edit(h):
        node = h
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return edit


def _delete(path: tuple):
    def edit(h):
        node = h
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]

    return edit


# tiny_cfg layout: 0 Conv, 1 Conv, 2 C3, ... 11 Upsample, 12 Concat, 13 C3, ... 24 Detect
_LAYERS = ("arch", "layers")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_set((*_LAYERS, 1, "args", "c2"), None), id="null-width"),
        pytest.param(_set((*_LAYERS, 2, "args", "c1"), None), id="null-input-width"),
        pytest.param(_delete((*_LAYERS, 0, "args", "c2")), id="missing-arg"),
        pytest.param(_set((*_LAYERS, 0, "args"), []), id="args-not-a-mapping"),
        pytest.param(_set(("names",), 5), id="names-not-a-list"),
        pytest.param(_set(("names",), ["a"]), id="short-names-list"),
        pytest.param(_set((*_LAYERS, 12, "args", "dim"), 5), id="bad-concat-dim"),
        pytest.param(_set((*_LAYERS, 12, "from"), "x"), id="bad-concat-from"),
        pytest.param(_set((*_LAYERS, 2, "args", "bottlenecks"), [[8]]), id="bad-bottleneck-pair"),
        pytest.param(_set((*_LAYERS, 1, "type"), ["Conv"]), id="type-not-a-name"),
        pytest.param(_set((*_LAYERS, -1), "Detect"), id="layer-not-a-mapping"),
        pytest.param(_set((*_LAYERS, 11, "args", "scale_factor"), "2"), id="upsample-scale-str"),
        pytest.param(_set((*_LAYERS, -1, "args", "strides"), [8.0, 16.0, 64.0]), id="wrong-detect-stride"),
        pytest.param(_set((*_LAYERS, 14, "args", "p"), 3), id="padding-misaligns-concat"),
        pytest.param(_set(("meta",), 5), id="meta-not-a-mapping"),
        pytest.param(_set(("meta", "history"), 5), id="history-not-a-list"),
        pytest.param(_set(("meta", "deep"), "NEST"), id="deeply-nested-json"),
        pytest.param(_set(("meta", "imgsz"), "HUGE_INT"), id="int-with-5000-digits"),
    ],
)
def test_hand_edited_headers_raise_checkpoint_error(tiny_checkpoint_bytes, tmp_path, edit):
    header, body = _split_safetensors(tiny_checkpoint_bytes)
    decoded = {k: json.loads(header["__metadata__"][k]) for k in ("arch", "names", "meta")}
    edit(decoded)
    for k, v in decoded.items():
        text = json.dumps(v).replace('"NEST"', "[" * 100_000 + "]" * 100_000).replace('"HUGE_INT"', "9" * 5000)
        header["__metadata__"][k] = text
    path = tmp_path / "edited.safetensors"
    path.write_bytes(_join_safetensors(header, body))
    with pytest.raises(CheckpointError, match="edited.safetensors"):
        load_model(path)
    with pytest.raises(CheckpointError):
        read_header(path)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("opcode", [b"r", b"j"])  # LONG_BINPUT, LONG_BINGET
def test_huge_memo_index_allocates_nothing(tmp_path, opcode):
    index = (1 << 31).to_bytes(4, "little")
    payload = b"\x80\x02}q\x00(X\x05\x00\x00\x00modelN" + opcode + index + b"u."  # 24 bytes
    assert len(payload) == 24
    pt = _write_zip(tmp_path / "memo.pt", [("archive/data.pkl", payload)])

    def load():
        with pytest.raises(CheckpointError):
            load_model(pt)

    assert _peak_bytes(load) < 32 << 20


def test_storages_larger_than_the_file_are_refused(tmp_path):
    # 64 MiB of zeros deflate to ~64 kB: a storage may not be inflated beyond the file size
    obj = {"model": _tensor(_Storage("0", 16 << 20), (16 << 20,), (1,))}
    pt = _raw_pt(tmp_path / "inflated.pt", obj, {"0": bytes(64 << 20)}, zipfile.ZIP_DEFLATED)
    assert pt.stat().st_size < 1 << 20

    def load():
        with pytest.raises(CheckpointError, match="more than the file"):
            load_model(pt)

    assert _peak_bytes(load) < 16 << 20


def test_disallowed_global_in_a_mutated_pickle_never_runs(small_pt, tmp_path):
    entries = _zip_entries(small_pt)
    marker = tmp_path / "pwned"
    evil = _EVIL.replace(b"{cmd}", f"touch {marker}".encode())
    pkl_name, pkl = next((n, d) for n, d in entries if n.endswith("data.pkl"))
    pt = _write_zip(tmp_path / "evil.pt", [(n, pkl[:2] + evil + pkl[2:] if n == pkl_name else d) for n, d in entries])
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_model(pt)
    assert not marker.exists()


def test_long_output_file_name_saves_atomically(small_model, tmp_path):
    name = "m" * (242 - len(".safetensors")) + ".safetensors"
    assert len(name) == 242
    path = save_checkpoint(small_model, tmp_path / name)
    assert load_model(path).names == ["cat", "dog"]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def _laughs(depth: int = 4, width: int = 1000) -> list:
    """A list of `width**depth` floats that pickles into a few kB (every level is one shared list)."""
    node: list = [0.0] * width
    for _ in range(depth - 1):
        node = [node] * width
    return node


def test_nested_shared_lists_are_not_expanded(tmp_path):
    pt = _raw_pt(tmp_path / "laughs.pt", {"model": _Reduce(np.float64, _laughs())}, {})
    assert pt.stat().st_size < 64 << 10
    with pytest.raises(CheckpointError, match="numpy.float64"):
        load_model(pt)


def test_nested_shared_lists_in_the_model_yaml_are_refused(small_model, tmp_path):
    pt = _edit_official(small_model, tmp_path, lambda ckpt, tree: tree.yaml.__setitem__("extra", _laughs()))
    with pytest.raises(CheckpointError, match="more than 100000 values"):
        load_model(pt)


def test_allowed_functions_cannot_be_modified_by_a_pickle(tmp_path):
    from pathlib import PurePosixPath

    doc = PurePosixPath.__doc__
    # BUILD on the allowed global pathlib.PosixPath with slot state {"__doc__": "x"}: a setattr
    payload = b"\x80\x02cpathlib\nPosixPath\nN}X\x07\x00\x00\x00__doc__X\x01\x00\x00\x00xs\x86b."
    pt = _write_zip(tmp_path / "build.pt", [("archive/data.pkl", payload)])
    with pytest.raises(CheckpointError, match="modify an allowed function"):
        load_model(pt)
    assert PurePosixPath.__doc__ == doc
