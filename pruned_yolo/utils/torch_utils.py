"""Seeding, device selection, parameter and FLOP counting."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import PrunedYoloError


def init_seeds(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; `deterministic` also asks torch / cuDNN for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def select_device(device: str | torch.device | None = None) -> torch.device:
    """'' or None -> cuda:0 when available else cpu; 'cpu', '0', 'cuda:1' as usual."""
    if isinstance(device, torch.device):
        return device
    device = (device or "").strip().lower()
    if device in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.isdigit():
        device = f"cuda:{device}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PrunedYoloError(f"device '{device}' requested but CUDA is not available")
    return torch.device(device)


def set_cpu_threads(threads: int | None = None) -> int:
    """Use `threads` intra-op threads (default: all cores), and return the number in use."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, imgsz: int | tuple[int, int] = 640, per_module: bool = False):
    """FLOPs (2 x multiply-accumulates) of one forward pass at `imgsz`, by torch's flop counter.

    With `per_module`, also returns {module name: flops} for the model's direct layers.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    p = next(model.parameters())
    x = torch.zeros(1, getattr(model, "in_channels", 3), h, w, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    total = counter.get_total_flops()
    if not per_module:
        return total
    flops = counter.get_flop_counts()
    layer_flops = {}
    for name, counts in flops.items():
        parts = name.split(".")
        # names look like "YOLO.model.3"; keep the direct layers only
        if len(parts) == 3 and parts[1] == "model":
            layer_flops[int(parts[2])] = sum(counts.values())
    return total, layer_flops


def gflops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float:
    return count_flops(model, imgsz) / 1e9


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running statistics of `model` from `batches` (in place).

    The statistics are reset and averaged over the batches with equal weight (momentum None);
    the momenta and the train/eval mode are restored. Returns the number of batches used (0:
    nothing changed)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    saved = {m: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in bns}
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    try:
        for x in batches:
            model(x)
            n += 1
    finally:
        model.train(was_training)
        for m, (mean, var, tracked, momentum) in saved.items():
            m.momentum = momentum
            if n == 0:  # no batch: the statistics as they were
                for buffer, value in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, tracked)):
                    buffer.copy_(value)
    return n


def prepare_for_inference(model: nn.Module, device: torch.device | str, half: bool = False) -> nn.Module:
    """A fused eval copy of `model` on `device` (the original is left untouched)."""
    model = copy.deepcopy(model)
    if hasattr(model, "fuse"):
        model.fuse()
    model = model.to(device).eval()
    return model.half() if half else model.float()


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for benchmark records and caches."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
