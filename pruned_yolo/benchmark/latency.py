"""Latency benchmarks: torch and ONNX Runtime runners, interleaved timing, robust statistics.

Interleaving: after the warm-up, each round times one run of every model, and the order
rotates from round to round, so that a drift in machine load (other processes, thermal
state, frequency scaling) hits all models alike and the ratios stay honest on a shared
machine. Medians and percentiles, never means, summarise the runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import PrunedYoloError
from ..export.onnx import hw_pair

RUNTIMES = ("torch", "onnxruntime")


class Runner:
    """One model on one runtime: `prepare(batch, h, w)` once, then `run()` per timed call.

    `run()` does a full forward pass on a fixed input and returns when the result is ready.
    """

    runtime = ""

    def __init__(self, name: str, gflops: float | None = None, params: int | None = None, source: str = ""):
        self.name, self.gflops, self.params, self.source = name, gflops, params, source

    def prepare(self, batch: int, h: int, w: int) -> None:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError


def random_input(batch: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random 8-bit pixels scaled to [0, 1], float32 NCHW: what a real pipeline feeds."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, 3, h, w), dtype=np.uint8).astype(np.float32) / 255


class TorchRunner(Runner):
    """A fused eval copy of the model under `torch.inference_mode`, decoded output only."""

    runtime = "torch"

    def __init__(self, model, name: str = "model", device: str | torch.device = "cpu", half: bool = False, **kw):
        from ..utils.torch_utils import prepare_for_inference, select_device

        super().__init__(name, **kw)
        self.device = select_device(device)
        if half and self.device.type != "cuda":
            raise PrunedYoloError("--half needs a CUDA device")
        self.half = half
        self.model = prepare_for_inference(model, self.device, half)
        self.model.detect.export = True
        self.x: torch.Tensor | None = None

    def prepare(self, batch: int, h: int, w: int) -> None:
        x = torch.from_numpy(random_input(batch, h, w)).to(self.device)
        self.x = x.half() if self.half else x

    @torch.inference_mode()
    def run(self) -> None:
        self.model(self.x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class OrtRunner(Runner):
    """An ONNX Runtime session (see `export.ort_session`) on an .onnx file.

    Idle workers do not spin (`spinning=False`): spinning workers of one session would
    steal the cores from the next model's run in an interleaved benchmark.
    """

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, name: str | None = None, threads: int | None = None, **kw):
        from ..export import INPUT_NAME, ort_session

        super().__init__(name or Path(path).stem, **kw)
        self.path = Path(path)
        self.session = ort_session(self.path, threads, spinning=False)
        self.input_name = INPUT_NAME
        self.x: np.ndarray | None = None

    def prepare(self, batch: int, h: int, w: int) -> None:
        self.x = random_input(batch, h, w)
        shape = self.session.get_inputs()[0].shape
        fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int)]
        want = (batch, 3, h, w)
        if any(want[i] != d for i, d in fixed):
            raise PrunedYoloError(f"{self.path}: expects input {shape}, benchmark asks for {list(want)}")

    def run(self) -> None:
        self.session.run(None, {self.input_name: self.x})


class OrtFeedRunner(Runner):
    """An ONNX Runtime session on a file with any inputs, fed fixed random tensors of `shapes`.

    For timing parts of a model (one block with several inputs, as the latency tables of
    `pruning.latency` do); `prepare` ignores the batch and size, the shapes are fixed here.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        shapes: dict[str, tuple[int, ...]],
        name: str | None = None,
        threads: int | None = None,
        **kw,
    ):
        from ..export import ort_session

        super().__init__(name or Path(path).stem, **kw)
        self.path, self.shapes = Path(path), {k: tuple(int(d) for d in v) for k, v in shapes.items()}
        self.session = ort_session(self.path, threads, spinning=False)
        self.feed: dict[str, np.ndarray] = {}

    def prepare(self, batch: int, h: int, w: int) -> None:
        rng = np.random.default_rng(0)
        self.feed = {k: rng.random(v, dtype=np.float32) for k, v in self.shapes.items()}

    def run(self) -> None:
        self.session.run(None, self.feed)


class ModuleRunner(Runner):
    """Any torch module on fixed random inputs of `shapes` (a fused eval copy, `inference_mode`).

    The torch counterpart of `OrtFeedRunner`: `run()` calls `module(*inputs)`, or
    `module(list_of_inputs)` when `as_list` (Concat and Detect take a list).
    """

    runtime = "torch"

    def __init__(
        self, module: torch.nn.Module, shapes: list[tuple[int, ...]], name: str = "module", as_list: bool = False, **kw
    ):
        import copy

        super().__init__(name, **kw)
        self.module = copy.deepcopy(module).float().eval()
        for m in list(self.module.modules()):  # fold BatchNorms (Conv.fuse, idempotent)
            if callable(getattr(m, "fuse", None)):
                m.fuse()
        self.shapes, self.as_list = [tuple(int(d) for d in s) for s in shapes], as_list
        self.inputs: list[torch.Tensor] = []

    def prepare(self, batch: int, h: int, w: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.inputs = [torch.rand(s, generator=g) for s in self.shapes]

    @torch.inference_mode()
    def run(self) -> None:
        self.module(self.inputs) if self.as_list else self.module(*self.inputs)


@dataclass
class Timing:
    """The timed runs (ms) of one model and their robust summary."""

    name: str
    times_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.times_ms, q))

    @property
    def median_ms(self) -> float:
        return self.percentile(50)

    @property
    def p10_ms(self) -> float:
        return self.percentile(10)

    @property
    def p90_ms(self) -> float:
        return self.percentile(90)


def benchmark_models(
    models: dict[str, Runner],
    imgsz: int | tuple[int, int] = 640,
    batch: int = 1,
    warmup: int = 10,
    runs: int = 50,
    interleave: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Timing]:
    """Time every runner `runs` times after `warmup` untimed runs each.

    With `interleave`, round r times one run of each model, starting the round at model
    r mod n; otherwise each model's runs are back to back (one model after the other).
    """
    if not models:
        raise PrunedYoloError("nothing to benchmark")
    if runs < 1 or warmup < 0:
        raise PrunedYoloError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    h, w = hw_pair(imgsz)
    names = list(models)
    for name in names:
        models[name].prepare(batch, h, w)
        for _ in range(warmup):
            models[name].run()
    timings = {name: Timing(name) for name in names}

    def timed(name: str) -> None:
        t0 = time.perf_counter()
        models[name].run()
        timings[name].times_ms.append((time.perf_counter() - t0) * 1e3)

    if interleave:
        for r in range(runs):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                timed(name)
            if progress and (r + 1) % max(1, runs // 5) == 0:
                progress(f"round {r + 1}/{runs}")
    else:
        for name in names:
            for _ in range(runs):
                timed(name)
            if progress:
                progress(f"{name}: done")
    return timings


def speedups(timings: dict[str, Timing], reference: str | None = None) -> dict[str, dict[str, float]]:
    """Per model: `speedup` = reference median / model median (> 1: faster than the
    reference, the first model by default) and, when the runs were paired (same count),
    `paired_speedup` = median over runs of the per-run ratio, which cancels slow drifts."""
    names = list(timings)
    reference = reference or names[0]
    ref = timings[reference]
    out = {}
    for name in names:
        t = timings[name]
        r = {"speedup": ref.median_ms / t.median_ms}
        if len(t.times_ms) == len(ref.times_ms):
            r["paired_speedup"] = float(np.median(np.array(ref.times_ms) / np.array(t.times_ms)))
        out[name] = r
    return out


def make_runner(
    weights: str | Path,
    runtime: str,
    imgsz: int | tuple[int, int] = 640,
    batch: int = 1,
    threads: int | None = None,
    device: str = "cpu",
    half: bool = False,
    name: str | None = None,
    workdir: str | Path | None = None,
) -> Runner:
    """A runner for a checkpoint (ours or an official .pt) or an .onnx file.

    For onnxruntime a checkpoint is first exported (static shape `batch` x `imgsz`) into
    `workdir` (default: a fresh temporary folder). An .onnx file only runs on onnxruntime.
    """
    from ..export.onnx import check_imgsz, export_onnx, onnx_metadata

    if runtime not in RUNTIMES:
        raise PrunedYoloError(f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})")
    weights = Path(weights)
    if not weights.is_file():
        raise PrunedYoloError(f"weights not found: {weights}")
    name = name or weights.stem
    if weights.suffix == ".onnx":
        if runtime != "onnxruntime":
            raise PrunedYoloError(f"{weights}: an .onnx file runs only with --runtime onnxruntime")
        meta = onnx_metadata(weights)
        info = _onnx_info(meta, imgsz)
        return OrtRunner(weights, name, threads, source=str(weights), **info)

    from ..checkpoint import load_model
    from ..utils.torch_utils import count_params, gflops

    model = load_model(weights)
    h, w = check_imgsz(model, imgsz)
    info = {"gflops": gflops(model, (h, w)), "params": count_params(model), "source": str(weights)}
    if runtime == "torch":
        from ..utils.torch_utils import set_cpu_threads

        set_cpu_threads(threads)  # process-wide: every torch runner shares it
        return TorchRunner(model, name, device, half, **info)
    if half:
        raise PrunedYoloError("--half is for the torch runtime on CUDA; ONNX Runtime runs FP32 here")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="pruned-yolo-bench-"))
    path = export_onnx(model, workdir / f"{name}.onnx", (h, w), batch, source=weights.name)
    return OrtRunner(path, name, threads, **info)


def onnx_latency_ms(
    models: dict[str, str | Path],
    imgsz: int | tuple[int, int],
    runs: int = 30,
    threads: int | None = None,
    workdir: str | Path | None = None,
    warmup: int = 5,
) -> dict[str, float]:
    """ONNX Runtime median latency (ms, batch 1) of each checkpoint or .onnx, all interleaved in one run."""
    runners = {
        name: make_runner(path, "onnxruntime", imgsz, 1, threads, name=name, workdir=workdir)
        for name, path in models.items()
    }
    timings = benchmark_models(runners, imgsz, 1, warmup=warmup, runs=runs)
    return {name: t.median_ms for name, t in timings.items()}


def _onnx_info(meta: dict[str, str], imgsz) -> dict:
    """GFLOPs at the benchmark size (FLOPs scale with the pixel count) and params, from metadata."""
    h, w = hw_pair(imgsz)
    info = {"gflops": None, "params": None}
    if "params" in meta:
        info["params"] = int(meta["params"])
    if "gflops" in meta and "imgsz" in meta:
        import json

        mh, mw = json.loads(meta["imgsz"])
        info["gflops"] = float(meta["gflops"]) * (h * w) / (mh * mw)
    return info


def default_threads(threads: int | None) -> int:
    return threads or os.cpu_count() or 1
