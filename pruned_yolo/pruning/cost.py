"""Parameters and FLOPs of a planned (not yet built) pruned model, counted analytically.

The budget search evaluates thousands of candidate plans, so it never builds or runs
them. Every Conv2d contributes `2 * k_h * k_w * c_in * c_out * H_out * W_out / groups`
FLOPs (what torch's flop counter reports for a convolution; BatchNorm, activations,
pools and upsampling are not counted, exactly as in `utils.torch_utils.count_flops`) and
`k_h * k_w * c_in * c_out / groups (+ c_out bias) (+ 2 c_out BatchNorm)` parameters.
A plan changes the widths linearly: a group that keeps `k` of its `n` channels removes
`n - k` output channels from each member and `multiplicity * (n - k)` input channels
from each consumer.

Output sizes: a YOLO model only runs on sizes that are multiples of its largest stride
(the Upsample + Concat joins need it), and there every conv output is exactly
`H / s x W / s` for the conv's stride `s` from the input. One small probe forward
(2 x the largest stride, one thread) gives each conv's `s`, so `measure` counts a model
at 640 without running it at 640; tests check it against torch's flop counter.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..utils.torch_utils import count_params
from .groups import GroupSet, PruningError, single_thread


def _size(imgsz: int | tuple[int, int]) -> tuple[int, int]:
    return (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))


def _max_stride(model: nn.Module) -> int:
    stride = getattr(model, "stride", None)
    return int(max(stride.tolist())) if stride is not None and len(stride) else 32


@torch.no_grad()
def conv_strides(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{conv module path: (stride_h, stride_w) from the input} for every Conv2d, by a probe forward."""
    probe = 2 * _max_stride(model)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: sizes.__setitem__(n, (o.shape[2], o.shape[3])))
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    try:
        with single_thread():
            model(torch.zeros(1, getattr(model, "in_channels", 3), probe, probe, dtype=p.dtype, device=p.device))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return {n: (probe // h, probe // w) for n, (h, w) in sizes.items()}


def conv_output_sizes(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> dict[str, int]:
    """{conv module path: H_out * W_out} for every Conv2d at input size `imgsz`."""
    h, w = _size(imgsz)
    s = _max_stride(model)
    if h % s or w % s:
        raise PruningError(f"image size {imgsz} must be a multiple of the model's largest stride {s}")
    return {n: (h // sh) * (w // sw) for n, (sh, sw) in conv_strides(model).items()}


def measure(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> dict[str, float]:
    """{'params', 'gflops'} of a real model: conv FLOPs as torch's counter gives them, at `imgsz`."""
    hw = conv_output_sizes(model, imgsz)
    flops = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            flops += 2 * m.weight.numel() * hw[name]  # weight: c_out x c_in / groups x k_h x k_w
    return {"params": count_params(model), "gflops": flops / 1e9}


class CostModel:
    """params(plan) and gflops(plan) for keep counts per group, with some units removed."""

    def __init__(
        self,
        gs: GroupSet,
        imgsz: int | tuple[int, int] = 640,
        removed: set[str] | frozenset = frozenset(),
        hw: dict[str, int] | None = None,
    ):
        model = gs.model
        hw = hw if hw is not None else conv_output_sizes(model, imgsz)  # {conv path: H_out * W_out}
        names = {m: n for n, m in model.named_modules()}
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        index = {c: i for i, c in enumerate(convs)}
        unit_of_conv = {u.conv: u for u in gs.units.values()}
        n_conv, n_grp = len(convs), len(gs.groups)
        self.groups = gs.groups
        self.sizes = np.array([g.size for g in gs.groups], dtype=np.int64)
        self.cin0 = np.array([c.in_channels for c in convs], dtype=np.float64)
        self.cout0 = np.array([c.out_channels for c in convs], dtype=np.float64)
        self.kk_g = np.array([c.kernel_size[0] * c.kernel_size[1] / c.groups for c in convs], dtype=np.float64)
        self.hw = np.array([hw[names[c]] for c in convs], dtype=np.float64)
        self.bias = np.array([c.bias is not None for c in convs], dtype=np.float64)
        self.bn = np.array([c in unit_of_conv for c in convs], dtype=np.float64)
        if any(c.groups != 1 for c in convs):
            raise NotImplementedError("grouped convolutions are not supported by the cost model")
        # active: convs that survive layer removal (units inside removed Bottlenecks vanish)
        self.active = np.array(
            [not (c in unit_of_conv and unit_of_conv[c].name in removed) for c in convs], dtype=np.float64
        )
        self.out_map = np.zeros((n_conv, n_grp))  # channels removed from c_out per channel pruned in group
        self.in_map = np.zeros((n_conv, n_grp))
        for g in gs.groups:
            for m in g.members:
                self.out_map[index[m.unit.conv], g.index] = 1.0
            for c in g.consumers:
                self.in_map[index[c.conv], g.index] += len(c.channels) / g.size

    def widths(self, keep: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        pruned = self.sizes - np.asarray(keep, dtype=np.float64)
        return self.cin0 - self.in_map @ pruned, self.cout0 - self.out_map @ pruned

    def cost(self, keep: np.ndarray | list[int]) -> dict[str, float]:
        """{'params', 'gflops'} of the model after keeping `keep[g]` channels in group g."""
        cin, cout = self.widths(keep)
        weights = self.kk_g * cin * cout
        params = weights + self.bias * cout + 2 * self.bn * cout
        flops = 2 * weights * self.hw
        return {
            "params": int(round(float((params * self.active).sum()))),
            "gflops": float((flops * self.active).sum()) / 1e9,
        }
