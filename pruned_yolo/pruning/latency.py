"""Prune to a latency measured on this machine's runtime, not to a FLOPs proxy.

    from pruned_yolo.pruning import prune_to_latency
    pruned, report = prune_to_latency(model, target_ms=12.0, imgsz=320, runtime="onnxruntime", threads=2)

The latency model: a per-block table, measured once per machine and runtime
------------------------------------------------------------------------------
Every top-level layer of the model (Conv, C3, SPPF, Concat, Upsample, Detect) is a *block*.
Each block is built alone at a grid of kept-width fractions f (`DEFAULT_FRACTIONS`; every
width scaled by f, in multiples of 8 like `--round-to 8` plans, the image channels never),
exported alone to ONNX with its BatchNorms fused, at the input resolution it has in the model
at `imgsz`, and timed by ONNX Runtime (or torch) with the benchmark machinery: sessions that
do not spin, warm-up, then all probes interleaved round by round (`benchmark_models`),
medians. A block's latency is then a function of one number, its *cost fraction* x: its
conv FLOPs over its unpruned conv FLOPs (channel count for the blocks without convs, Concat
and Upsample). The measured points (x, ms), made non-decreasing (pool-adjacent-violators:
noise must not make a smaller block look slower), are interpolated linearly in x.

Why blocks at a grid of uniform widths and not every conv at every (c_in, c_out): a block
timed alone holds what the runtime really runs for it (fused Conv+SiLU nodes, the residual
Adds, Concats, pools, the Detect decode); 6 variants of some 25 blocks are about 150 small
exports and sessions (a per-conv 2-D grid would be ten times as many); and interpolating in
the FLOPs fraction is exact for the compute-bound part of a block (linear in its FLOPs) and
within about 1% of its memory-bound part (linear in its widths, so in sqrt(x)). The variants
are timed in chunks of whole blocks (about 1 GB of sessions at a time; yolov5s at 640 needs
three), so that drift between chunks cannot bend one block's curve; fast probes get more
rounds (`OrtTimer`: about 2 s of timing per call, at most 10x the minimum), so the tables of
small models settle too.

Blocks timed alone do not add up to the whole model: each pays the runtime's fixed cost per
call (`overhead_ms`, measured on a one-node graph) and the copy of its output, which a whole
model pays once, and none sees the cache effects between blocks. With S(plan) the sum over
blocks of max(table_b(x_b(plan)) - overhead, 0), the prediction is

    predicted(plan) = dense_ms * (alpha + beta * S(plan))

where dense_ms is the dense model's latest measurement (so that load drift on a shared machine
moves the prediction with it), and alpha, beta start as the overhead share and the slope that
predict the dense model exactly (predicted(dense) = measured(dense)).

The planner
-----------
It searches the same global channel ranking as the GFLOPs targets (`Pruner.plan_for_cost`:
bisection on the ranking, then channels given back where they matter most; the predicted
latency never grows as channels go) for a plan predicted at `aim` x T (0.95 T) within 4%
under it. The plan is applied (`prune(plan=...)`, the same checks as every prune), the pruned
model exported and measured interleaved with the dense one (medians); if the measured latency
falls outside the window [0.9 T, 1.0 T], the measurement corrects the prediction: (alpha, beta)
become the line through the two measured points (S, measured / dense of the same run) nearest
the goal, the dense model being one of them (a secant, so that what the table gets wrong about
the whole model is corrected where the planner looks, not only as a global factor), and the
planner runs again, at most `max_iterations` times. The result is the plan measured in the
window, else the best one (under T and closest to it first; the report says it missed).

Cache
-----
`cache_root() / "latency" / "<runtime>-<machine>-t<threads>-<h>x<w>.json"` (`cache_root`:
`$PRUNED_YOLO_CACHE`, else the user cache folder), where <machine> hashes the CPU model,
logical cores, OS, architecture and the runtime's version (a timer other than the real ones
gets its own files, named after it). Entries are keyed by the block's
exact explicit arguments and input shapes, so models sharing blocks share measurements, a
second run measures nothing, and a stale or corrupt file is re-measured, never trusted.

Timers
------
`timer(probes) -> [ms, ...]`: one median latency per `Probe` (a module, its input shapes,
and its kind: "block", "model" or "overhead"), the probes of one call measured together.
`OrtTimer` and `TorchTimer` are the real ones; tests pass a deterministic function.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils.torch_utils import cpu_model
from .channel import PAPER_FLOOR, floor_for_budget
from .groups import PruningError, single_thread
from .pruner import PrunePlan, Pruner, check_targets, prune

LOGGER = logging.getLogger("pruned_yolo")

TABLE_FORMAT = "pruned-yolo-latency-table"
TABLE_VERSION = 1
DEFAULT_FRACTIONS = (0.125, 0.25, 0.4, 0.6, 0.8, 1.0)
WINDOW = (0.9, 1.0)  # the measured latency must land in [0.9 T, 1.0 T]
AIM = 0.95  # the planner aims the prediction at 0.95 T ...
AIM_TOLERANCE = 0.04  # ... within 4% under it
PRUNER_KEYS = ("importance", "round_to", "per_layer_ratio", "group_reduction", "group_normalize")
WIDTH_KEYS = ("c1", "c2", "c_cv1", "c_cv2", "c_cv3", "c_hidden")
MULTI_INPUT = ("Concat", "Detect")
OUT_CONV = {"Conv": "conv", "Focus": "conv.conv", "C3": "cv3.conv", "SPP": "cv2.conv", "SPPF": "cv2.conv"}


# -- probes and timers ------------------------------------------------------------------


@dataclass(eq=False)
class Probe:
    """One thing to time: `module` (eval, float32, CPU, BatchNorms not yet fused) on random
    inputs of `shapes` (batch 1); `as_list`: the module takes one list of them (Concat, Detect).

    `kind`: "model" (a whole YOLO, one (1, 3, h, w) input), "block" (one layer alone) or
    "overhead" (a one-node graph: the runtime's fixed cost per call).
    """

    name: str
    module: nn.Module
    shapes: list[tuple[int, ...]]
    kind: str = "block"
    as_list: bool = False


Timer = Callable[[list[Probe]], Sequence[float]]


class _AddOne(nn.Module):
    """The overhead probe: one Add node on 8 numbers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def _fused(module: nn.Module) -> nn.Module:
    m = copy.deepcopy(module).float().eval()
    for sub in list(m.modules()):  # fold BatchNorms (Conv.fuse and YOLO.fuse are idempotent)
        if callable(getattr(sub, "fuse", None)):
            sub.fuse()
    return m


def export_block(probe: Probe, path: str | Path, opset: int | None = None) -> Path:
    """Export a block probe alone to ONNX (BatchNorms fused, inputs x0, x1, ..., output y)."""
    import warnings

    from ..export import DEFAULT_OPSET
    from ..models.detect import Detect

    m = _fused(probe.module)
    for sub in m.modules():
        if isinstance(sub, Detect):
            sub.export = True  # decoded boxes only, as in a model export
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(s, generator=gen) for s in probe.shapes]
    names = [f"x{i}" for i in range(len(xs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            m,
            (xs,) if probe.as_list else tuple(xs),
            str(path),
            dynamo=False,
            opset_version=opset or DEFAULT_OPSET,
            input_names=names,
            output_names=["y"],
            do_constant_folding=True,
        )
    return Path(path)


class _BaseTimer:
    runtime = ""

    def __init__(
        self,
        threads: int | None = None,
        runs: int = 15,
        warmup: int = 3,
        model_runs: int = 30,
        budget_s: float = 2.0,
        max_factor: int = 10,
    ):
        from ..benchmark import default_threads

        if runs < 1 or model_runs < 1 or warmup < 0 or max_factor < 1 or not budget_s >= 0:
            raise PruningError(f"need runs >= 1 and warmup >= 0, got runs={runs}/{model_runs}, warmup={warmup}")
        self.threads = default_threads(threads)
        self.runs, self.warmup, self.model_runs = int(runs), int(warmup), int(model_runs)
        self.budget_s, self.max_factor = float(budget_s), int(max_factor)

    def _runner(self, probe: Probe, name: str, workdir: Path):
        raise NotImplementedError

    def __call__(self, probes: list[Probe]) -> list[float]:
        from ..benchmark import benchmark_models

        if not probes:
            return []
        with tempfile.TemporaryDirectory(prefix="pruned-yolo-latency-") as tmp:
            runners = {f"{i}-{p.name}": self._runner(p, f"p{i}", Path(tmp)) for i, p in enumerate(probes)}
            models = [p for p in probes if p.kind == "model"]
            hw = tuple(models[0].shapes[0][2:]) if models else (32, 32)  # what OrtRunner checks
            least = self.model_runs if models else self.runs
            # a pilot after the warm-up sizes the timed rounds: at least `least`, more for fast
            # probes (up to `max_factor` x), about `budget_s` in all: medians of tiny models settle
            pilot = benchmark_models(runners, hw, 1, warmup=self.warmup, runs=3)
            round_s = sum(t.median_ms for t in pilot.values()) / 1e3
            runs = int(np.clip(self.budget_s / max(round_s, 1e-6), least, least * self.max_factor))
            timings = benchmark_models(runners, hw, 1, warmup=0, runs=runs)
        return [timings[k].median_ms for k in runners]


class OrtTimer(_BaseTimer):
    """ONNX Runtime medians: a model probe exported by `export_onnx` (exactly what `export`
    writes), a block by `export_block`; `threads` intra-op threads, no spinning, all probes
    of one call interleaved (`runs` rounds, `model_runs` when whole models are timed)."""

    runtime = "onnxruntime"

    def _runner(self, probe: Probe, name: str, workdir: Path):
        from ..benchmark import OrtFeedRunner, OrtRunner
        from ..export import export_onnx

        path = workdir / f"{name}.onnx"
        if probe.kind == "model":
            export_onnx(probe.module, path, tuple(probe.shapes[0][2:]), 1, source=probe.name)
            return OrtRunner(path, probe.name, self.threads)
        export_block(probe, path)
        return OrtFeedRunner(path, {f"x{i}": s for i, s in enumerate(probe.shapes)}, probe.name, self.threads)


class TorchTimer(_BaseTimer):
    """torch medians (CPU, fused eval copies under `inference_mode`), `threads` torch threads."""

    runtime = "torch"

    def _runner(self, probe: Probe, name: str, workdir: Path):
        from ..benchmark import ModuleRunner, TorchRunner

        if probe.kind == "model":
            return TorchRunner(probe.module, probe.name, "cpu")
        return ModuleRunner(probe.module, probe.shapes, probe.name, probe.as_list)

    def __call__(self, probes: list[Probe]) -> list[float]:
        n = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return super().__call__(probes)
        finally:
            torch.set_num_threads(n)


def make_timer(runtime: str = "onnxruntime", threads: int | None = None, **kw) -> _BaseTimer:
    """The real timer of `runtime` ('onnxruntime' or 'torch')."""
    from ..benchmark import RUNTIMES

    if runtime not in RUNTIMES:
        raise PruningError(f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    return (OrtTimer if runtime == "onnxruntime" else TorchTimer)(threads, **kw)


def _time(timer: Timer, probes: list[Probe]) -> list[float]:
    ms = [float(v) for v in timer(probes)]
    if len(ms) != len(probes) or not all(math.isfinite(v) and v > 0 for v in ms):
        raise PruningError(f"the timer must return one positive latency (ms) per probe, got {ms[:8]}")
    return ms


# -- blocks ---------------------------------------------------------------------------------


def scale_width(w: int, f: float) -> int:
    """`w` x `f`, in multiples of 8 from 8 channels up (as `round_to` 8 plans), at least 1, at most `w`."""
    if f >= 1:
        return int(w)
    v = w * f
    q = 8 if v >= 8 else 1
    return int(min(w, max(1, math.floor(v / q + 0.5) * q)))


@dataclass
class Block:
    """One top-level layer of a model, to be timed alone at scaled widths."""

    index: int
    type: str
    args: dict  # explicit args, from model.arch()
    shapes: list[tuple[int, int, int, int]]  # input shapes at the model's image size (batch 1)
    image_input: bool  # reads the network input, whose channels are never pruned

    def scaled(self, f: float) -> tuple[dict, list[tuple[int, ...]]]:
        a = copy.deepcopy(self.args)
        for k in WIDTH_KEYS:
            if k in a and not (k == "c1" and self.image_input):
                a[k] = scale_width(a[k], f)
        if "bottlenecks" in a:
            a["bottlenecks"] = [[scale_width(h, f), scale_width(o, f)] for h, o in a["bottlenecks"]]
        if "ch" in a:
            a["ch"] = [scale_width(c, f) for c in a["ch"]]
        c = (lambda n: n) if self.image_input else (lambda n: scale_width(n, f))
        return a, [(s[0], c(s[1]), s[2], s[3]) for s in self.shapes]

    def key(self, f: float) -> str:
        args, shapes = self.scaled(f)
        text = json.dumps({"v": TABLE_VERSION, "type": self.type, "args": args, "shapes": shapes}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def probe(self, f: float) -> Probe:
        from ..models.registry import get_module

        args, shapes = self.scaled(f)
        module = get_module(self.type)(**args).eval()
        return Probe(f"L{self.index}-{self.type}-f{f:g}", module, shapes, "block", self.type in MULTI_INPUT)


def _sources(m: nn.Module) -> list[int]:
    """Absolute indices of the layers feeding top-level layer `m` (-1: the network input)."""
    return [m.i + j if j < 0 else j for j in ([m.f] if isinstance(m.f, int) else m.f)]


def model_blocks(model: nn.Module, imgsz: int | tuple[int, int]) -> list[Block]:
    """The blocks of `model` with their input shapes at `imgsz` (from one small probe forward)."""
    from ..export.onnx import check_imgsz

    h, w = check_imgsz(model, imgsz)
    probe = 2 * int(model.stride.max())
    seen: dict[int, list[tuple[int, ...]]] = {}

    def hook(mod, args):
        x = args[0]
        seen[mod.i] = [tuple(t.shape) for t in (x if isinstance(x, (list, tuple)) else [x])]

    hooks = [m.register_forward_pre_hook(hook) for m in model.model]
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        with torch.no_grad(), single_thread():
            model(torch.zeros(1, model.in_channels, probe, probe, dtype=p.dtype, device=p.device))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    blocks = []
    for m, layer in zip(model.model, model.arch()["layers"]):
        srcs = _sources(m)
        shapes = [(1, s[1], s[2] * h // probe, s[3] * w // probe) for s in seen[m.i]]
        blocks.append(Block(m.i, layer["type"], layer["args"], shapes, -1 in srcs))
    return blocks


@torch.no_grad()
def probe_cost(probe: Probe) -> tuple[int, int]:
    """(conv FLOPs, input channels) of a probe, by one forward with hooks on its convs."""
    flops = [0]

    def hook(mod, args, out):
        flops[0] += 2 * mod.weight.numel() * out.shape[2] * out.shape[3]

    m = probe.module
    hooks = [c.register_forward_hook(hook) for c in m.modules() if isinstance(c, nn.Conv2d)]
    try:
        with single_thread():
            xs = [torch.zeros(s) for s in probe.shapes]
            m(xs) if probe.as_list else m(*xs)
    finally:
        for hk in hooks:
            hk.remove()
    return int(flops[0]), int(sum(s[1] for s in probe.shapes))


# -- the table and its cache -----------------------------------------------------------------


def machine_info(runtime: str) -> dict:
    """What a latency table depends on besides threads and size: CPU, cores, OS, runtime version."""
    cpu = cpu_model()
    if runtime == "onnxruntime":
        import onnxruntime

        version = onnxruntime.__version__
    else:
        version = torch.__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": platform.system(),
        "arch": platform.machine(),
        "runtime": runtime,
        "version": version,
    }


def timer_tag(timer: Timer | None) -> str:
    """'' for the real timers; else the timer's `cache_tag` or its name, so that the tables of
    another timer (a test's fake one) never mix with the measured ones."""
    if timer is None or type(timer) in (OrtTimer, TorchTimer):
        return ""
    tag = getattr(timer, "cache_tag", None) or getattr(timer, "__qualname__", None) or type(timer).__qualname__
    return "".join(c if c.isalnum() or c in "._" else "_" for c in str(tag))[:64]


def table_path(runtime: str, threads: int | None, imgsz: int | tuple[int, int], timer: Timer | None = None) -> Path:
    """The cache file of the latency table for this machine, runtime, thread count and size
    (and timer: see `timer_tag`)."""
    from ..benchmark import default_threads
    from ..data.cache import cache_root
    from ..export.onnx import hw_pair

    h, w = hw_pair(imgsz)
    info = machine_info(runtime)
    digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:12]
    tag = timer_tag(timer)
    name = f"{runtime}-{digest}-t{default_threads(threads)}-{h}x{w}" + (f"-{tag}" if tag else "")
    return cache_root() / "latency" / f"{name}.json"


def _read_table(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != TABLE_FORMAT or doc.get("version") != TABLE_VERSION:
            raise ValueError("another format or version")
        entries = doc["entries"]
        for e in entries.values():
            if not (float(e["ms"]) > 0 and int(e["flops"]) >= 0 and int(e["channels"]) > 0):
                raise ValueError("bad entry")
        float(doc["overhead_ms"])
        return doc
    except (OSError, ValueError, KeyError, TypeError) as e:
        LOGGER.warning(f"latency table {path} is unreadable ({e}): measuring again")
        return {}


def _monotone(y: np.ndarray) -> np.ndarray:
    """The non-decreasing least-squares fit of `y` (pool adjacent violators)."""
    pools: list[list[float]] = []
    for v in y:
        pools.append([float(v), 1.0])
        while len(pools) > 1 and pools[-2][0] > pools[-1][0]:
            v2, w2 = pools.pop()
            v1, w1 = pools.pop()
            pools.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([np.full(int(w), v) for v, w in pools])


@dataclass
class LatencyTable:
    """Measured latency of every block of a model as a function of its cost fraction x."""

    blocks: list[Block]
    xs: list[np.ndarray]  # per block: increasing cost fractions, last one 1.0
    ms: list[np.ndarray]  # per block: non-decreasing latency at those fractions
    overhead_ms: float
    runtime: str
    threads: int
    imgsz: tuple[int, int]
    path: Path | None = None
    measured: int = 0  # probes timed for this table (0: all from the cache)
    cached: int = 0  # probes read from the cache
    points: list[list[dict]] = field(default_factory=list)  # raw points per block, for reports

    def block_ms(self, x: np.ndarray) -> np.ndarray:
        """Latency of every block at cost fractions `x` (one per block), interpolated."""
        return np.array([np.interp(v, xs, ms) for v, xs, ms in zip(x, self.xs, self.ms)])

    def raw(self, x: np.ndarray) -> float:
        """Sum over blocks of their latency above the per-call overhead."""
        return float(np.maximum(self.block_ms(x) - self.overhead_ms, 0.0).sum())

    def summary(self) -> dict:
        return {
            "path": str(self.path) if self.path else None,
            "runtime": self.runtime,
            "threads": self.threads,
            "imgsz": list(self.imgsz),
            "blocks": len(self.blocks),
            "measured": self.measured,
            "cached": self.cached,
            "overhead_ms": self.overhead_ms,
            "dense_sum_ms": float(sum(ms[-1] for ms in self.ms)),
        }


def latency_table(
    model: nn.Module,
    imgsz: int | tuple[int, int] = 640,
    runtime: str = "onnxruntime",
    threads: int | None = None,
    timer: Timer | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    cache: bool = True,
    refresh: bool = False,
    max_chunk_mb: float = 1024.0,
) -> LatencyTable:
    """The latency table of `model`'s blocks, from the cache where it has them, else measured
    (and added to the cache). `refresh` measures everything again. Probes are timed in chunks
    of whole blocks holding about `max_chunk_mb` of runtime sessions at a time (all the
    variants of yolov5s at 640 hold over 1 GB)."""
    from ..benchmark import default_threads
    from ..export.onnx import hw_pair

    fractions = sorted({float(f) for f in fractions} | {1.0})
    if not all(0 < f <= 1 for f in fractions):
        raise PruningError(f"width fractions must be in (0, 1], got {fractions}")
    timer = timer or make_timer(runtime, threads)
    blocks = model_blocks(model, imgsz)
    path = table_path(runtime, threads, imgsz, timer) if cache else None
    doc = {} if refresh else _read_table(path)
    entries: dict[str, dict] = dict(doc.get("entries", {}))
    overhead = doc.get("overhead_ms")

    todo: dict[str, tuple[Block, float]] = {}
    for b in blocks:
        for f in fractions:
            k = b.key(f)
            if k not in entries and k not in todo:
                todo[k] = (b, f)
    n_cached = len({b.key(f) for b in blocks for f in fractions} - set(todo))
    probes = [b.probe(f) for b, f in todo.values()]
    if overhead is None:
        probes.append(Probe("overhead", _AddOne(), [(1, 8)], "overhead"))
    if probes:
        LOGGER.info(f"latency table: timing {len(todo)} block variants ({runtime}, {default_threads(threads)} threads)")
        ms = []
        for chunk in _chunks(probes, [b.index for b, _ in todo.values()], max_chunk_mb):
            ms += _time(timer, chunk)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        for (k, (b, f)), p, t in zip(todo.items(), probes, ms):
            flops, channels = probe_cost(p)
            entries[k] = {"type": b.type, "fraction": f, "ms": t, "flops": flops, "channels": channels, "time": now}
        if overhead is None:
            overhead = ms[-1]
        if path is not None:
            _write_table(path, runtime, threads, imgsz, entries, overhead)

    xs, ys, points = [], [], []
    for b in blocks:
        dense = entries[b.key(1.0)]
        by_x: dict[float, list[float]] = {}
        raw_points = []
        for f in fractions:
            e = entries[b.key(f)]
            x = e["flops"] / dense["flops"] if dense["flops"] else e["channels"] / dense["channels"]
            by_x.setdefault(round(x, 9), []).append(e["ms"])
            raw_points.append({"fraction": f, "x": x, "ms": e["ms"]})
        bx = np.array(sorted(by_x))
        xs.append(bx)
        ys.append(_monotone(np.array([float(np.median(by_x[v])) for v in bx])))
        points.append(raw_points)
    return LatencyTable(
        blocks,
        xs,
        ys,
        float(overhead),
        runtime,
        default_threads(threads),
        hw_pair(imgsz),
        path,
        measured=len(todo),
        cached=n_cached,
        points=points,
    )


def _probe_mb(p: Probe) -> float:
    """Rough memory of a runtime session for a probe: its weights and a dozen copies of its inputs."""
    inputs = sum(math.prod(sh) for sh in p.shapes)
    return 4 * (12 * inputs + sum(q.numel() for q in p.module.parameters())) / 1e6


def _chunks(probes: list[Probe], owners: list[int], max_mb: float) -> list[list[Probe]]:
    """Probes in consecutive chunks of whole blocks (a block's variants are always timed together,
    so drift between chunks cannot bend its curve), each under about `max_mb` of sessions."""
    chunks: list[list[Probe]] = [[]]
    size, last = 0.0, None
    for i, p in enumerate(probes):
        owner = owners[i] if i < len(owners) else last  # the overhead probe joins the last chunk
        mb = _probe_mb(p)
        if chunks[-1] and owner != last and size + mb > max_mb:
            chunks.append([])
            size = 0.0
        chunks[-1].append(p)
        size, last = size + mb, owner
    return chunks


def _write_table(path: Path, runtime: str, threads, imgsz, entries: dict, overhead: float) -> None:
    from ..benchmark import default_threads
    from ..export.onnx import hw_pair
    from ..utils.files import write_json

    current = _read_table(path)  # merge what another process may have added meanwhile
    merged = {**current.get("entries", {}), **entries}
    doc = {
        "format": TABLE_FORMAT,
        "version": TABLE_VERSION,
        "machine": machine_info(runtime),
        "runtime": runtime,
        "threads": default_threads(threads),
        "imgsz": list(hw_pair(imgsz)),
        "overhead_ms": float(overhead),
        "entries": merged,
    }
    try:
        write_json(path, doc)
    except OSError as e:
        LOGGER.warning(f"could not write the latency table cache {path}: {e}")


# -- prediction ------------------------------------------------------------------------------


class LatencyModel:
    """Predicted latency (ms) of any plan of one `Pruner`'s model, from a `LatencyTable`.

    Callable as `cost(cost_model, counts)` (the form `Pruner.plan_for_cost` takes): the plan's
    conv widths come from the cost model, each block's cost fraction x from them, and
    `offset + scale * table.raw(x)` is the prediction (`prune_to_latency` sets both from
    measurements of whole models).
    """

    def __init__(self, table: LatencyTable, pruner: Pruner):
        model = pruner.model
        if len(table.blocks) != len(model.model):
            raise PruningError("the latency table was measured on another model")
        self.table, self.offset, self.scale = table, table.overhead_ms, 1.0
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        self.conv_layer = np.array([int(n.split(".")[1]) for n in names])
        self.n_layers = len(model.model)
        index = {n: i for i, n in enumerate(names)}
        self.layers = [(m.i, m.type, _sources(m)) for m in model.model]
        self.out_conv = {
            i: index.get(f"model.{i}.{OUT_CONV[t]}") for i, t, _ in self.layers if t in OUT_CONV
        }  # layer -> the conv that writes its output
        self.in_channels = int(model.in_channels)
        cm = pruner.cost_model(())
        self.dense_flops, self.dense_channels = self._costs(cm, cm.sizes, all_active=True)

    def _costs(self, cm, counts, all_active: bool = False) -> tuple[np.ndarray, np.ndarray]:
        cin, cout = cm.widths(counts)
        flops = 2 * cm.kk_g * cin * cout * cm.hw * (1.0 if all_active else cm.active)
        block_flops = np.bincount(self.conv_layer, weights=flops, minlength=self.n_layers)
        width: dict[int, float] = {}
        channels = np.zeros(self.n_layers)
        for i, t, srcs in self.layers:
            ins = [self.in_channels if j < 0 else width.get(j, 0.0) for j in srcs]
            channels[i] = sum(ins)
            if t == "Concat":
                width[i] = sum(ins)
            elif t == "nn.Upsample":
                width[i] = ins[0]
            elif self.out_conv.get(i) is not None:
                width[i] = float(cout[self.out_conv[i]])
        return block_flops, channels

    def fractions(self, cm, counts) -> np.ndarray:
        """Cost fraction x of every block under the plan `counts` (kept channels per group)."""
        flops, channels = self._costs(cm, np.asarray(counts))
        x = np.ones(self.n_layers)
        conv = self.dense_flops > 0
        x[conv] = flops[conv] / self.dense_flops[conv]
        chan = ~conv & (self.dense_channels > 0)
        x[chan] = channels[chan] / self.dense_channels[chan]
        return x

    def raw(self, cm, counts) -> float:
        return self.table.raw(self.fractions(cm, counts))

    def __call__(self, cm, counts) -> float:
        return self.offset + self.scale * self.raw(cm, counts)


# -- the planner ------------------------------------------------------------------------------


def _model_probe(name: str, model: nn.Module, hw: tuple[int, int]) -> Probe:
    return Probe(name, model, [(1, int(model.in_channels), hw[0], hw[1])], "model")


def prune_to_latency(
    model: nn.Module,
    target_ms: float,
    imgsz: int | tuple[int, int] = 640,
    runtime: str = "onnxruntime",
    threads: int | None = None,
    timer: Timer | None = None,
    *,
    layers: int | list[str] = 0,
    max_iterations: int = 4,
    window: tuple[float, float] = WINDOW,
    aim: float = AIM,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    cache: bool = True,
    bias_compensation: bool = False,
    **prune_kwargs,
) -> tuple[nn.Module, dict]:
    """Prune `model` so that its latency measured on `runtime` lands in [0.9, 1.0] x `target_ms`.

    `imgsz`: the input size (batch 1) the latency is measured at (and GFLOPs counted at);
    `threads`: the runtime's intra-op threads (default: all cores); `timer`: a function
    `timer(probes) -> [ms, ...]` (see `Probe`), default the real one of `runtime`.
    `prune_kwargs`: the `Pruner` settings (`importance`, `round_to`, `per_layer_ratio`,
    `group_reduction`, `group_normalize`); `layers` removes that many Bottlenecks first.
    Returns the pruned model and the `prune` report with a `target` entry (as for the
    GFLOPs targets: `achieved` is the measured latency) and a `latency` entry: target,
    predicted and measured ms, the dense model's measured ms, whether the measured value is
    within the window, every iteration, and the table used. Raises PruningError for a target
    that is not a positive number, not below the measured dense latency, or below the
    predicted latency of the plan that keeps only the floors.
    """
    from ..benchmark import RUNTIMES, default_threads
    from ..export.onnx import check_imgsz

    others = {k: prune_kwargs.pop(k, None) for k in ("channel_ratio", "target_gflops", "target_flops_ratio")}
    others["target_params_ratio"] = prune_kwargs.pop("target_params_ratio", None)
    check_targets(**others, target_latency_ms=target_ms)
    unknown = set(prune_kwargs) - set(PRUNER_KEYS)
    if unknown:
        raise TypeError(f"prune_to_latency() got unexpected arguments: {', '.join(sorted(unknown))}")
    if runtime not in RUNTIMES:
        raise PruningError(f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    if not 0 < window[0] < window[1] <= 1.5 or not 0 < aim <= 1 or max_iterations < 1:
        raise PruningError(f"bad window {window}, aim {aim} or max_iterations {max_iterations}")
    target = float(target_ms)
    lo, hi = window[0] * target, window[1] * target
    hw = check_imgsz(model, imgsz)
    timer = timer or make_timer(runtime, threads)
    settings = {"runtime": runtime, "threads": default_threads(threads), "imgsz": list(hw)}

    table = latency_table(model, hw, runtime, threads, timer, fractions, cache)
    dense_probe = _model_probe("dense", model, hw)
    (dense_ms,) = _time(timer, [dense_probe])
    if target >= dense_ms:
        raise PruningError(
            f"target_latency_ms {target:.4g} is not below the model's measured {dense_ms:.4g} ms "
            f"({runtime}, {settings['threads']} threads, {hw[0]}x{hw[1]}): nothing to prune"
        )
    auto_floor = prune_kwargs.get("per_layer_ratio") is None
    prune_kwargs["per_layer_ratio"] = PAPER_FLOOR if auto_floor else prune_kwargs["per_layer_ratio"]
    with single_thread():
        pruner = Pruner(model, imgsz=imgsz, **prune_kwargs)
        removed = pruner.select_layers(layers) if isinstance(layers, int) else list(layers)
    lm = LatencyModel(table, pruner)
    o = table.overhead_ms
    cm0 = pruner.cost_model(())
    raw_dense = max(lm.raw(cm0, cm0.sizes), 1e-9)
    fit = _Fit(raw_dense, o / dense_ms)

    def calibrate(load_ms: float) -> None:  # the fit, in ms at the dense model's latest latency
        lm.offset, lm.scale = fit.alpha * load_ms, fit.beta * load_ms

    calibrate(dense_ms)
    if auto_floor:  # the budget's floor, with the latency fraction standing in for the cost fraction
        prune_kwargs["per_layer_ratio"] = pruner.fit_floor(floor_for_budget(target / dense_ms), lm, target, removed)
    full_pred, floor_pred = pruner.cost_range(lm, removed)
    if floor_pred > target:
        raise PruningError(
            f"target_latency_ms {target:.4g} is below the minimum reachable {floor_pred:.4g} ms (predicted "
            f"with every group at its floor, the dense model measured {dense_ms:.4g} ms; lower --per-layer-ratio "
            f"or --round-to, or remove layers)"
        )
    if removed and full_pred <= aim * target:
        raise PruningError(
            f"removing {len(removed)} Bottlenecks alone already gives {full_pred:.4g} ms (predicted), under the "
            f"target {target:.4g} ms: use fewer --layers"
        )

    iterations: list[dict] = []
    results: list[tuple[nn.Module, dict]] = []
    cm = pruner.cost_model(removed)
    load_ms = dense_ms
    for it in range(max_iterations):
        calibrate(load_ms)
        floor_now = pruner.cost_range(lm, removed)[1]
        plan, tol = _plan(pruner, lm, aim * target, floor_now, removed)
        counts = np.asarray(plan.channels.counts)
        raw = lm.raw(cm, counts)
        predicted = lm(cm, counts)
        if results and np.array_equal(counts, iterations[-1]["counts"]):
            pruned, report = results[-1]  # the same plan again: measure it again
        else:
            pruned, report = prune(model, plan=plan, imgsz=imgsz, bias_compensation=bias_compensation, **prune_kwargs)
        dense_i, measured = _time(timer, [dense_probe, _model_probe("pruned", pruned, hw)])
        within = lo <= measured <= hi
        iterations.append(
            {
                "iteration": it + 1,
                "predicted_ms": predicted,
                "measured_ms": measured,
                "dense_ms": dense_i,
                "table_sum_ms": raw,
                "fit": [fit.alpha, fit.beta],
                "gflops": report["after"]["gflops"],
                "params": report["after"]["params"],
                "within": within,
                "search_tolerance": tol,
                "counts": counts,
            }
        )
        results.append((pruned, report))
        LOGGER.info(
            f"latency iteration {it + 1}: predicted {predicted:.3f} ms, measured {measured:.3f} ms "
            f"(dense {dense_i:.3f} ms, window {lo:.3f}-{hi:.3f})"
        )
        if within:
            break
        load_ms = dense_i  # the machine as it is now
        fit.add(raw, measured / dense_i, aim * target / dense_i)
    for r in iterations:
        r["counts"] = [int(v) for v in r["counts"]]

    best = _best(iterations, target)
    pruned, report = results[best]
    chosen = iterations[best]
    latency = {
        "target_ms": target,
        "predicted_ms": chosen["predicted_ms"],
        "measured_ms": chosen["measured_ms"],
        "dense_ms": chosen["dense_ms"],
        "dense_ms_first": dense_ms,
        "window_ms": [lo, hi],
        "within": chosen["within"],
        "iterations": iterations,
        "chosen_iteration": best + 1,
        "predicted_floor_ms": floor_pred,
        "overhead_ms": o,
        "table": table.summary(),
        **settings,
    }
    report["latency"] = latency
    report["target"] = {
        "kind": "target_latency_ms",
        "metric": "latency_ms",
        "value": target,
        "achieved": chosen["measured_ms"],
        "fraction_of_target": chosen["measured_ms"] / target,
        "predicted": chosen["predicted_ms"],
        "within": chosen["within"],
    }
    extra = {"target_latency_ms": target, "latency_runtime": runtime, "latency_threads": settings["threads"]}
    report["settings"].update(extra)
    history = pruned.meta["history"][-1]
    history["settings"] = {**history["settings"], **extra}
    history["latency"] = {k: latency[k] for k in ("target_ms", "predicted_ms", "measured_ms", "dense_ms", "within")}
    if not chosen["within"]:
        LOGGER.warning(
            f"measured {chosen['measured_ms']:.3f} ms after {len(iterations)} iterations: outside the window "
            f"{lo:.3f}-{hi:.3f} ms (a noisy machine? try again or raise max_iterations)"
        )
    return pruned, report


class _Fit:
    """Measured latency over the dense model's (interleaved), as `alpha + beta * table_sum`.

    Before any pruned model is measured: the runtime's overhead plus the table sum scaled so
    that the dense model is predicted exactly. Then a secant: the line through the two measured
    points nearest the goal (the dense model counts as one), so that what the table gets wrong
    about the whole model (per-call overheads, cache effects, the Detect decode) is corrected
    where the planner looks, not only as a global factor. A line that does not rise with the
    table sum (noise) is not used.
    """

    def __init__(self, raw_dense: float, overhead_ratio: float):
        self.points = [(raw_dense, 1.0)]  # (table sum above overhead, measured / dense)
        self.raw_dense = raw_dense
        self.alpha = min(max(overhead_ratio, 0.0), 0.99)
        self.beta = (1.0 - self.alpha) / raw_dense

    def add(self, raw: float, ratio: float, goal: float) -> None:
        self.points.append((raw, ratio))
        near = sorted(self.points, key=lambda p: abs(p[1] - goal))
        pairs = [(a, b) for i, a in enumerate(near) for b in near[i + 1 :]]
        for a, b in pairs:  # the nearest pair far enough apart to give a slope
            if abs(a[0] - b[0]) >= 0.05 * self.raw_dense:
                beta = (a[1] - b[1]) / (a[0] - b[0])
                if beta > 0:
                    self.beta, self.alpha = beta, a[1] - beta * a[0]
                    return
        # no usable pair: keep the slope, move the line through the new point
        self.alpha = ratio - self.beta * raw


def _plan(pruner: Pruner, lm: LatencyModel, aim_ms: float, floor_pred: float, removed) -> tuple[PrunePlan, float]:
    """The plan predicted at `aim_ms` within AIM_TOLERANCE under it (a wider tolerance when the
    ranking steps are too coarse for it), or at the floors when those are predicted above it."""
    goal = max(aim_ms, floor_pred * (1 + 1e-9))
    tol = AIM_TOLERANCE
    while True:
        try:
            return pruner.plan_for_cost(lm, goal, removed, tol, "ms"), tol
        except PruningError:
            if tol >= 0.5:
                raise
            tol = min(0.5, 2 * tol)


def _best(iterations: list[dict], target: float) -> int:
    """The iteration measured in the window; else the one under the target closest to it; else the fastest."""
    inside = [i for i, r in enumerate(iterations) if r["within"]]
    if inside:
        return inside[-1]
    under = [i for i, r in enumerate(iterations) if r["measured_ms"] <= target]
    if under:
        return max(under, key=lambda i: iterations[i]["measured_ms"])
    return min(range(len(iterations)), key=lambda i: iterations[i]["measured_ms"])
