"""`TrainConfig`: everything a training run needs, checked on creation, saved with the run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data.dataset import CACHE_MODES
from ..errors import ConfigError
from ..utils.torch_utils import select_device

OPTIMIZERS = ("SGD", "Adam", "AdamW")
EMA_PLANS = ("fixed", "run")


@dataclass
class TrainConfig:
    """Everything a run needs; what `pruned-yolo train` parses and `--resume` restores."""

    data: str
    cfg: str | None = None  # model YAML (name or path) for a fresh model ...
    weights: str | None = None  # ... or a checkpoint to start from (ours or an official .pt)
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16  # global batch (split over the ranks in DDP)
    hyp: Any = "scratch-low"  # shipped name, YAML path or dict
    device: str = ""
    workers: int | None = None  # data loading processes per rank (default: min(8, cores))
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    seed: int = 0
    deterministic: bool = False
    cache: str | None = None  # None or "ram"
    plots: bool = False  # save a few training batch mosaics
    sync_bn: bool = False  # SyncBatchNorm in DDP (CUDA only)
    lr_schedule: str | None = None  # "cos" / "linear" (default: the hyp's lr_schedule, else linear)
    patience: int = 0  # stop after this many epochs without improvement (0: never, as in ultralytics)
    noval: bool = False  # validate only after the final epoch
    nosave: bool = False  # write only the final checkpoint (no per-epoch state: no resume)
    nbs: int = 64  # nominal batch size (gradient accumulation)
    optimizer: str = "SGD"
    val_batch: int | None = None  # default: 2 x batch per rank
    threads: int | None = None  # torch CPU threads (default: cores / ranks)
    progress: bool = True  # tqdm progress bar
    channels_last: bool = False
    val_imgsz: int | None = None  # default: imgsz
    ema_decay: float = 0.9999  # EMA decay, ramped in as decay * (1 - exp(-updates / ema_tau))
    ema_tau: float = 2000.0  # (short runs: a smaller tau averages sooner)
    # EMA_PLANS: "fixed" uses ema_decay / ema_tau; "run" sizes both to the run's optimizer steps per
    # epoch (an average over about three epochs, see ema.run_sized_ema) and ignores them
    ema_plan: str = "fixed"
    # before each validation (and the last checkpoint), re-estimate the EMA model's BatchNorm statistics
    # on this many training batches: for runs whose weights move faster than the running statistics
    # follow (momentum 0.03, e.g. channels fading out), whose per-epoch scores would otherwise mislead
    bn_recal_batches: int = 0
    extra: dict = field(default_factory=dict)  # free-form, saved with the run (later stages)
    # registered callbacks of the run, as {"name", "args"} specs (recorded by Trainer; --resume rebuilds them)
    callbacks: list = field(default_factory=list)

    def __post_init__(self):
        if bool(self.cfg) == bool(self.weights):
            raise ConfigError("give exactly one of --cfg (new model) and --weights (start from a checkpoint)")
        if self.epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        if self.batch < 1:
            raise ConfigError("--batch must be at least 1")
        for name in ("imgsz", "val_imgsz"):
            v = getattr(self, name)
            if v is not None and (v < 32 or v % 32):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a multiple of the model stride: "
                    f"a positive multiple of 32, got {v}"
                )
        minimum = {"patience": 0, "workers": 0, "threads": 1, "nbs": 1, "val_batch": 1, "bn_recal_batches": 0}
        for name, low in minimum.items():
            v = getattr(self, name)
            if v is not None and v < low:
                note = " (0: no early stopping)" if name == "patience" else ""
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}{note}, got {v}")
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}")
        if self.ema_plan not in EMA_PLANS:
            raise ConfigError(f"ema_plan must be one of {', '.join(EMA_PLANS)}, got {self.ema_plan!r}")
        if not (0 <= self.ema_decay <= 1 and self.ema_tau > 0):
            raise ConfigError(f"ema_decay must be in [0, 1] and ema_tau > 0, got {self.ema_decay} and {self.ema_tau}")
        try:
            select_device(self.device)  # parses it (and checks that CUDA is there when asked for)
        except RuntimeError:
            raise ConfigError(f"--device {self.device!r} is not a device (cpu, 0, 1, cuda:0, mps ...)") from None
        if self.cache not in CACHE_MODES:
            raise ConfigError(f"--cache must be 'ram' (or absent), got {self.cache!r}")
        if self.lr_schedule not in (None, "cos", "linear"):
            raise ConfigError(f"lr schedule must be 'cos' or 'linear', got {self.lr_schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    def to_json(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if d["data"] and Path(d["data"]).is_file():  # absolute: --resume works from any working directory
            d["data"] = str(Path(d["data"]).absolute())
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def default_workers(batch: int, world: int = 1) -> int:
    """min(8, cores per rank, batch): beyond that, workers only compete with the model for CPU."""
    cores = (os.cpu_count() or 1) // max(world, 1)
    return max(0, min(8, cores, batch))


__all__ = ["EMA_PLANS", "OPTIMIZERS", "TrainConfig", "default_workers"]
