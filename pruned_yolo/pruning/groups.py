"""Coupled channel groups of a YOLO model, found by Torch-Pruning's DependencyGraph.

A *group* is a set of channels that must be pruned together, by the same indices:

* a plain Conv+BN: its own output channels (one member);
* a C3 block with shortcuts: the output of `cv1` and of every Bottleneck's `cv2` are
  added together along the residual chain, so they form one group with several members;
* consumers (convs reading the channels) lose the matching input channels: behind a
  Concat at the right offset, behind an SPP/SPPF once per max-pool branch (pools and
  Upsample pass channels through unchanged);
* Detect convs are consumers only: their outputs (anchors x (5 + classes)) are never pruned;
* the model input (and the Focus space-to-depth of it) is never pruned.

`build_groups` traces the model once with `tp.DependencyGraph` and converts every
`tp` group into a `ChannelGroup` holding our Conv+BN units, with the channel index of
every member and consumer aligned to the group's own channel numbering. It checks that
every Conv+BN of the model is the producer of exactly one group, so a pattern the graph
missed stops the run instead of producing a wrong model.

A group's importance per channel reduces its members' scores with the *mean* by default:
it keeps a residual group (2 to 10 members) on the same scale as a single conv, so that
one global threshold compares all groups fairly (a sum would make residual channels
nearly unprunable, a max lets one loud member keep a channel that the others ignore).
`max` and `sum` are available through `group_reduction`. `group_normalize="mean"` divides
each group's scores by their mean before the global ranking (as Torch-Pruning's default
normalizer does): channels then compete by their importance relative to their own layer,
which spreads the pruning more evenly over the layers.

What Torch-Pruning does here and what we add: tp traces the graph and yields the coupled
sets with index mappings (residual adds, Concat offsets, max-pool and Upsample pass-through);
its `_trace` leaves the model in eval mode, which we restore; during the trace Detect
returns its convs' raw outputs (no reshape nodes: they slowed every later group query
about tenfold); we pair each producing Conv2d with its BatchNorm and check that tp slices
both by the same indices, and that every Conv+BN is the producer of exactly one group.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ..errors import PrunedYoloError
from ..models.modules import C3, Bottleneck, Conv
from .importance import ImportanceFn, channel_scores

SUPPORTED_LAYERS = {"Conv", "Focus", "C3", "SPP", "SPPF", "Concat", "Upsample", "Detect"}

GROUP_REDUCTIONS = ("mean", "max", "sum")
GROUP_NORMALIZERS = ("none", "mean")  # "mean": divide each group's scores by their mean before ranking


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread: the pruning work is many tiny ops (tracing at 32x32,
    slicing), for which thread hand-offs cost more than they save, badly so on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class PruningError(PrunedYoloError):
    """The model cannot be pruned as asked (unsupported layer, impossible target, ...)."""


@dataclass(eq=False)
class ConvUnit:
    """One of our Conv modules: Conv2d + BatchNorm2d (+ SiLU), by its module path."""

    name: str  # e.g. "model.4.m.0.cv2"
    layer: int  # top-level layer index
    conv: nn.Conv2d
    bn: nn.BatchNorm2d

    @property
    def bn_name(self) -> str:
        return f"{self.name}.bn"


@dataclass(eq=False)
class Member:
    """A producer of the group: `unit`'s output channel `channels[j]` is group channel j."""

    unit: ConvUnit
    channels: torch.Tensor  # long, len == group.size


@dataclass(eq=False)
class Consumer:
    """A conv that reads the group: its input channel `channels[i]` carries group channel `group_channels[i]`."""

    name: str  # module path of the nn.Conv2d
    conv: nn.Conv2d
    channels: torch.Tensor  # long: input channel indices of `conv`
    group_channels: torch.Tensor  # long: the group channel each of them carries
    unit: ConvUnit | None  # the Conv+BN that owns `conv`; None for a Detect conv
    layer: int

    @property
    def multiplicity(self) -> int:
        """Input channels per group channel (4 behind SPPF: the input and three pools)."""
        return len(self.channels) // max(len(torch.unique(self.group_channels)), 1)


@dataclass(eq=False)
class ChannelGroup:
    """Coupled channels pruned by one set of indices."""

    index: int
    size: int
    members: list[Member]
    consumers: list[Consumer]
    root: nn.Conv2d  # the conv that roots the tp group (its output channels = group channels)

    @property
    def residual(self) -> bool:
        return len(self.members) > 1

    @property
    def layer(self) -> int:
        return min(m.unit.layer for m in self.members)

    def member_names(self) -> list[str]:
        return [m.unit.name for m in self.members]

    def describe(self) -> str:
        kind = "residual" if self.residual else "conv"
        return f"group {self.index} ({kind}, {self.size} ch): " + ", ".join(self.member_names())

    def importance(
        self,
        fn: ImportanceFn,
        reduction: str = "mean",
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> torch.Tensor:
        """Per group channel: the member scores (fn on each Conv+BN) reduced over members.

        Members whose unit name is in `exclude` (e.g. inside Bottlenecks being removed)
        do not vote.
        """
        rows = []
        for m in self.members:
            if m.unit.name in exclude:
                continue
            s = channel_scores(fn, m.unit.conv, m.unit.bn)
            rows.append(s[m.channels])
        if not rows:
            return torch.zeros(self.size, dtype=torch.float64)
        return reduce_scores(torch.stack(rows), reduction)


def reduce_scores(rows: torch.Tensor, reduction: str) -> torch.Tensor:
    """(members, channels) -> (channels): mean (default), max or sum over members."""
    if reduction == "mean":
        return rows.mean(0)
    if reduction == "max":
        return rows.max(0).values
    if reduction == "sum":
        return rows.sum(0)
    raise PruningError(f"unknown group reduction '{reduction}' (use one of {', '.join(GROUP_REDUCTIONS)})")


@dataclass(eq=False)
class BottleneckRef:
    """A Bottleneck inside a C3 block: `model.<layer>.m.<index>`."""

    name: str
    layer: int
    index: int
    module: Bottleneck
    shortcut: bool

    @property
    def last(self) -> str:
        """Name of the Bottleneck's last Conv (its cv2), whose importance scores the block."""
        return f"{self.name}.cv2"

    def unit_names(self) -> list[str]:
        return [f"{self.name}.cv1", f"{self.name}.cv2"]


@dataclass(eq=False)
class GroupSet:
    """The groups of one model, with the dependency graph that can slice it."""

    model: nn.Module
    dg: tp.DependencyGraph
    groups: list[ChannelGroup]
    units: dict[str, ConvUnit]
    bottlenecks: list[BottleneckRef]
    detect_convs: list[nn.Conv2d] = field(default_factory=list)

    def group_of(self, unit_name: str) -> ChannelGroup:
        for g in self.groups:
            if unit_name in g.member_names():
                return g
        raise KeyError(unit_name)


def check_prunable(model: nn.Module) -> None:
    """Raise PruningError unless every layer type is one the pruning engine handles."""
    if getattr(model, "is_fused", False):
        raise PruningError("cannot prune a fused model (BatchNorms folded into convs); load the checkpoint again")
    bad = sorted({m.type for m in model.model if m.type not in SUPPORTED_LAYERS})
    if bad:
        raise PruningError(
            f"pruning does not support layer type(s) {', '.join(bad)} "
            f"(supported: {', '.join(sorted(SUPPORTED_LAYERS))})"
        )


def conv_units(model: nn.Module) -> dict[str, ConvUnit]:
    """Every Conv(+BN) module of the model by module path (Detect convs are plain Conv2d, not units)."""
    units = {}
    for name, m in model.named_modules():
        if isinstance(m, Conv) and isinstance(m.bn, nn.BatchNorm2d):
            units[name] = ConvUnit(name, int(name.split(".")[1]), m.conv, m.bn)
    return units


def bottlenecks(model: nn.Module) -> list[BottleneckRef]:
    """Every Bottleneck inside a C3 block, in layer order."""
    refs = []
    for layer in model.model:
        if isinstance(layer, C3):
            for j, b in enumerate(layer.m):
                refs.append(BottleneckRef(f"model.{layer.i}.m.{j}", layer.i, j, b, bool(b.add)))
    return refs


def trace_forward(model, x):
    """Forward for tracing: BatchNorms in eval mode (running stats untouched), and Detect
    returning its convs' outputs as they are (no reshape or decoding in the graph: the
    Detect outputs are never pruned, and reshape nodes make every tp group query slower)."""
    detect = model.detect
    detect.forward = lambda xs: [conv(t) for conv, t in zip(detect.m, xs)]
    try:
        return model(x)
    finally:
        del detect.forward


def build_groups(model: nn.Module, example_size: int = 32) -> GroupSet:
    """Trace `model` (modified later in place by the pruner) and return its channel groups."""
    check_prunable(model)
    units = conv_units(model)
    conv2unit = {u.conv: u for u in units.values()}
    bn2unit = {u.bn: u for u in units.values()}
    names = {m: n for n, m in model.named_modules()}
    detect_convs = list(model.detect.m)
    for p in model.parameters():
        p.requires_grad_(True)
    p0 = next(model.parameters())
    example = torch.randn(
        1, getattr(model, "in_channels", 3), example_size, example_size, dtype=p0.dtype, device=p0.device
    )
    was_training = model.training
    with torch.enable_grad(), single_thread():
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, forward_fn=trace_forward)
    model.train(was_training)

    groups: list[ChannelGroup] = []
    for tg in dg.get_all_groups(ignored_layers=detect_convs, root_module_types=[nn.Conv2d]):
        size = len(tg[0].idxs)
        members, consumers, bns = [], [], {}
        for item in tg:
            dep, idxs = item.dep, torch.as_tensor(item.idxs, dtype=torch.long)
            root = torch.as_tensor(item.root_idxs, dtype=torch.long)
            module = dep.target.module
            out = dg.is_out_channel_pruning_fn(dep.handler)
            if isinstance(module, nn.Conv2d) and out:
                unit = conv2unit.get(module)
                if unit is None:
                    raise PruningError(f"{names.get(module)}: a conv without its own BatchNorm cannot be pruned")
                channels = torch.empty(size, dtype=torch.long)
                channels[root] = idxs
                members.append(Member(unit, channels))
            elif isinstance(module, nn.Conv2d):
                unit = conv2unit.get(module)
                name = names[module]
                consumers.append(Consumer(name, module, idxs, root, unit, int(name.split(".")[1])))
            elif isinstance(module, nn.BatchNorm2d):
                bns[bn2unit[module].name] = idxs
            elif isinstance(module, nn.Module) and not type(module).__name__.startswith("_"):
                raise PruningError(f"{names.get(module, module)}: layer type {type(module).__name__} is not handled")
        if not members:
            continue
        for m in members:  # each producer's BatchNorm must be sliced exactly like its conv
            if m.unit.name not in bns or sorted(bns[m.unit.name].tolist()) != sorted(m.channels.tolist()):
                raise PruningError(f"{m.unit.name}: conv and BatchNorm are not coupled in the dependency graph")
        if any(bool((m.channels.sort().values != torch.arange(size)).any()) for m in members):
            raise PruningError(f"{members[0].unit.name}: a group member does not cover all of its channels")
        members.sort(key=lambda m: _natural_key(m.unit.name))
        consumers.sort(key=lambda c: _natural_key(c.name))
        groups.append(ChannelGroup(len(groups), size, members, consumers, tg[0].dep.target.module))

    groups.sort(key=lambda g: _natural_key(g.members[0].unit.name))
    for i, g in enumerate(groups):
        g.index = i
    seen: dict[str, int] = {}
    for g in groups:
        for m in g.members:
            if m.unit.name in seen:
                raise PruningError(f"{m.unit.name} is a producer in two channel groups")
            seen[m.unit.name] = g.index
    missing = sorted(set(units) - set(seen), key=_natural_key)
    if missing:
        raise PruningError(f"the dependency graph found no channel group for {', '.join(missing)}")
    return GroupSet(model, dg, groups, units, bottlenecks(model), detect_convs)


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))
