"""Bias compensation: fold the constant output of pruned channels into their consumers.

A channel whose BatchNorm scale is ~0 outputs `SiLU(beta)` everywhere, a constant that
is not 0 when beta is not. Removing the channel drops that constant from every consumer;
compensation adds it back as a bias: a consumer conv W sees, from pruned input channel
j carrying the constant a_j, the per-output offset `delta_o = sum_j a_j * sum_taps W[o, j]`,
which goes into the consumer's BatchNorm running mean (`mu -= delta`, same BN output) or,
for a Detect conv, into its bias (`b += delta`).

The constants are read, not derived: the pruned channels' gammas are set to 0 and one
forward (of the real model, on a small input) records what each consumer conv
receives on those channels. This covers channels summed along a C3 residual chain,
concatenated, upsampled or max-pooled (a constant stays constant) without special cases.

Exact for 1x1 consumers; for k > 1 consumers the zero padding makes the constant
contribution smaller at the image border, so there it is approximate. The compensated
model equals the model whose pruned channels have gamma = 0 (exactly in the interior);
it approximates the original model only as far as the pruned gammas are small.
"""

from __future__ import annotations

import torch
from torch import nn

from .channel import ChannelPlan
from .groups import GroupSet


@torch.no_grad()
def zero_gammas(gs: GroupSet, plan: ChannelPlan) -> int:
    """Set gamma = 0 (beta kept) on every pruned channel of every group member; in place."""
    n = 0
    for g, idxs in zip(gs.groups, plan.pruned(gs)):
        if len(idxs) == 0:
            continue
        for m in g.members:
            m.unit.bn.weight[m.channels[idxs]] = 0.0
            n += len(idxs)
    return n


@torch.no_grad()
def compensate_bias(gs: GroupSet, plan: ChannelPlan, removed: set[str] | frozenset = frozenset()) -> dict:
    """Fold the constants of pruned channels into the consumers of `gs.model`, in place.

    Also zeroes the pruned channels' gammas (they are about to be removed anyway).
    Returns {'channels': compensated pruned channels, 'consumers': convs adjusted,
    'max_abs_constant': largest constant folded}.
    """
    model = gs.model
    pruned = plan.pruned(gs)
    zero_gammas(gs, plan)
    # which input channels of which consumer carry a pruned (now constant) group channel
    todo: dict[nn.Conv2d, tuple[object, list[torch.Tensor]]] = {}
    for g, idxs in zip(gs.groups, pruned):
        if len(idxs) == 0:
            continue
        sel = torch.zeros(g.size, dtype=torch.bool)
        sel[idxs] = True
        for c in g.consumers:
            if c.unit is not None and c.unit.name in removed:
                continue
            chans = c.channels[sel[c.group_channels]]
            todo.setdefault(c.conv, (c, []))[1].append(chans)
    if not todo:
        return {"channels": 0, "consumers": 0, "max_abs_constant": 0.0}
    seen: dict[nn.Conv2d, torch.Tensor] = {}

    def hook(mod, inputs, _out):
        x = inputs[0]
        seen[mod] = x[0, :, x.shape[2] // 2, x.shape[3] // 2].detach().clone()

    hooks = [conv.register_forward_hook(hook) for conv in todo]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        model(torch.zeros(1, getattr(model, "in_channels", 3), 64, 64, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    biggest, n_chan = 0.0, 0
    for conv, (consumer, chans) in todo.items():
        chans = torch.cat(chans).to(conv.weight.device)
        const = seen[conv][chans]  # (n,)
        taps = conv.weight[:, chans].sum(dim=(2, 3))  # (out, n)
        delta = taps @ const
        if consumer.unit is not None:
            consumer.unit.bn.running_mean -= delta
        else:  # Detect conv: has a bias
            conv.bias += delta
        biggest = max(biggest, float(const.abs().max()))
        n_chan += len(chans)
    return {"channels": sum(len(i) for i in pruned), "consumers": len(todo), "max_abs_constant": biggest}
