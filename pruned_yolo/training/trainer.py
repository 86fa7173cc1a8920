"""The training loop: `Trainer(TrainConfig(...)).fit()`.

A flat loop in the style of torchvision's reference scripts, with YOLOv5's recipe:
SGD (Nesterov) over three parameter groups, warm-up, cosine or linear lr to `lrf`,
nominal batch 64 by gradient accumulation, gradient clipping (norm 10), EMA of the
weights, AMP on CUDA, validation of the EMA model every epoch (fast COCO-protocol AP),
`best` / `last` checkpoints in our format, `results.csv` / `results.png`, a resumable
state, and DistributedDataParallel under torchrun. Extension points are the callbacks
of `hooks.py`.

Run folder (`runs/train/exp*`):

    weights/last.safetensors   EMA weights after the latest epoch (our checkpoint format)
    weights/best.safetensors   EMA weights of the best epoch (fitness 0.1 mAP50 + 0.9 mAP50-95)
    weights/last_state.safetensors   everything `--resume` needs (see state.py)
    results.csv, results.png, args.json, hyp.yaml
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DistributedSampler

from ..checkpoint import load_model, save_checkpoint
from ..checkpoint.native import load_state as load_model_state
from ..data.config import DataConfig, load_data_config
from ..errors import ConfigError, PrunedYoloError
from ..models import YOLO, build_model, initialize_weights
from ..utils.files import atomic_write, increment_dir, write_json
from ..utils.torch_utils import select_device, set_cpu_threads
from . import distributed as dist_utils
from .ema import ModelEMA
from .hooks import Callback, CallbackList, build_callback, callback_spec
from .loss import DetectionLoss
from .optim import GROUP_NAMES, LrLambda, build_optimizer, warmup_iterations, warmup_step
from .plots import plot_results
from .state import load_state, model_tensors, optimizer_from_parts, save_state, saved_epoch, set_rng_states

LOGGER = logging.getLogger("pruned_yolo")

HYP_NAMES = ("scratch-low", "scratch-high", "finetune")
OPTIMIZERS = ("SGD", "Adam", "AdamW")
REQUIRED_HYP = (
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "box",
    "cls",
    "obj",
    "anchor_t",
)
LOSS_NAMES = ("box_loss", "obj_loss", "cls_loss")
METRIC_NAMES = ("precision", "recall", "mAP50", "mAP50-95")
CLIP_NORM = 10.0


def load_hyp(hyp: str | Path | dict | None) -> dict[str, Any]:
    """A hyp dict from a dict, a YAML file or a shipped name (scratch-low, scratch-high, finetune)."""
    if hyp is None:
        hyp = "scratch-low"
    if isinstance(hyp, dict):
        data = dict(hyp)
        source = "dict"
    else:
        path = Path(hyp)
        name = path.name[:-5] if path.name.endswith(".yaml") else path.name
        if not path.is_file():
            if name not in HYP_NAMES:
                raise ConfigError(f"hyp '{hyp}' is neither a file nor a shipped hyp ({', '.join(HYP_NAMES)})")
            path = Path(str(resources.files("pruned_yolo.training").joinpath("hyps", f"{name}.yaml")))
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: malformed hyp YAML ({str(e).splitlines()[0]})") from None
        source = str(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a hyp file must be a mapping of name: value")
    missing = [k for k in REQUIRED_HYP if k not in data]
    if missing:
        raise ConfigError(f"hyp {source}: missing {', '.join(missing)}")
    for k, v in data.items():
        if k != "lr_schedule" and not isinstance(v, (int, float)):
            raise ConfigError(f"hyp {source}: '{k}' must be a number, got {v!r}")
    if data.get("lr_schedule", "linear") not in ("linear", "cos"):
        raise ConfigError(f"hyp {source}: lr_schedule must be 'linear' or 'cos'")
    return data


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
        minimum = {"patience": 0, "workers": 0, "threads": 1, "nbs": 1, "val_batch": 1}
        for name, low in minimum.items():
            v = getattr(self, name)
            if v is not None and v < low:
                note = " (0: no early stopping)" if name == "patience" else ""
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}{note}, got {v}")
        if not 0 <= self.seed < 2**32:  # numpy's seed range
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}")
        if not (0 <= self.ema_decay <= 1 and self.ema_tau > 0):
            raise ConfigError(f"ema_decay must be in [0, 1] and ema_tau > 0, got {self.ema_decay} and {self.ema_tau}")
        try:
            select_device(self.device)  # parses it (and checks that CUDA is there when asked for)
        except RuntimeError:
            raise ConfigError(f"--device {self.device!r} is not a device (cpu, 0, 1, cuda:0, mps ...)") from None
        if self.cache not in (None, "ram"):
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


def init_seeds(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def replace_detect_head(model: YOLO, nc: int) -> YOLO:
    """A copy of `model` with a freshly initialised Detect head for `nc` classes (the rest kept)."""
    arch = model.arch()
    arch["layers"][-1]["args"]["nc"] = int(nc)
    new = YOLO(arch)
    initialize_weights(new)
    new.detect.initialize_biases()
    head = f"model.{len(model.model) - 1}."
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and all(k.startswith(head) for k in missing)
    new.meta = dict(model.meta)
    return new


class Trainer:
    """Trains a detector; see the module docstring and `hooks.py` for the extension points.

    Main attributes (also what callbacks read): `config`, `hyp`, `device`, `net` (the bare
    model), `model` (DDP-wrapped or `net`), `ema`, `optimizer`, `scheduler`, `scaler`,
    `loss_fn`, `dataset`, `loader`, `sampler`, `validator`, `save_dir`, `epoch`,
    `start_epoch`, `epochs`, `history` (one dict per finished epoch), `best_fitness`,
    `metrics` (latest validation), `rank`, `world_size`, `is_main`.
    """

    def __init__(
        self, config: TrainConfig, callbacks: list[Callback] | tuple | None = None, *, _resume: dict | None = None
    ):
        """`callbacks=None` builds the ones `config.callbacks` describes; given callbacks replace them
        (the registered ones among them are recorded in `config.callbacks`)."""
        self.config = config
        if callbacks is None:
            callbacks = [build_callback(spec) for spec in config.callbacks]
        else:
            config.callbacks = [spec for spec in map(callback_spec, callbacks) if spec is not None]
        self.callbacks = CallbackList(callbacks)
        self.hyp = load_hyp(config.hyp)
        self._resume = _resume
        self.stop = False
        self.history: list[dict] = []
        self.best_fitness = -1.0
        self.best_epoch = -1
        self.metrics: dict = {}
        self.final_metrics: dict = {}
        self.fitness = 0.0
        self.is_best = False
        self.epoch_log: dict = {}
        self.extra_loss_items: dict[str, float] = {}
        self.optimizer_steps = 0
        self.data_problems: list[str] = []
        self.save_dir: Path | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, callbacks: list[Callback] | tuple = ()) -> Trainer:
        """A trainer that continues `run_dir` from `weights/last_state.safetensors`.

        The run's registered callbacks (sparsity, distillation, ...) are rebuilt from its saved
        config; `callbacks` adds unregistered ones, or replaces a registered one of the same name."""
        run_dir = Path(run_dir)
        state_path = run_dir / "weights" / "last_state.safetensors"
        if not run_dir.is_dir():
            raise PrunedYoloError(f"--resume: run folder not found: {run_dir}")
        if not state_path.is_file():
            raise PrunedYoloError(f"--resume: {run_dir} has no weights/last_state.safetensors (nothing to resume)")
        doc, tensors = load_state(state_path)
        config = TrainConfig.from_json(doc["config"])
        config.hyp = doc["hyp"]
        data, project = Path(config.data), Path(config.project)
        if not data.is_absolute() and not data.is_file() and not project.is_absolute():
            # a run saved before data paths were stored absolute: relative to the folder it was started in
            parents = run_dir.absolute().parents
            if len(project.parts) < len(parents) and (parents[len(project.parts)] / data).is_file():
                config.data = str(parents[len(project.parts)] / data)
        if doc["epoch"] >= config.epochs:
            raise PrunedYoloError(f"--resume: {run_dir} already finished its {config.epochs} epochs")
        given = {cb.registered_name for cb in callbacks if cb.registered_name}
        rebuilt = [build_callback(spec) for spec in _saved_callback_specs(config) if spec["name"] not in given]
        return cls(config, [*rebuilt, *callbacks], _resume={"doc": doc, "tensors": tensors, "dir": run_dir})

    def _setup(self) -> None:
        cfg = self.config
        # device, processes, threads, seeds
        device = select_device(cfg.device)
        self.device = dist_utils.init_distributed(device)
        self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        self.is_main = self.rank == 0
        if cfg.sync_bn and self.device.type != "cuda" and self.world_size > 1:
            raise PrunedYoloError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
        if cfg.batch % self.world_size:
            raise PrunedYoloError(f"--batch {cfg.batch} is not a multiple of the {self.world_size} processes")
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // self.world_size)
        set_cpu_threads(threads)
        init_seeds(cfg.seed + self.rank, cfg.deterministic)
        self.amp = self.device.type == "cuda"

        # data
        self.data: DataConfig = load_data_config(cfg.data)
        self.nc = self.data.nc

        # run folder (rank 0 decides, the others follow)
        if self._resume is not None:
            save_dir = self._resume["dir"]
        elif self.is_main:
            save_dir = increment_dir(Path(cfg.project) / cfg.name, cfg.exist_ok)
        else:
            save_dir = None
        self.save_dir = Path(dist_utils.broadcast_object(str(save_dir) if save_dir else None))
        self.wdir = self.save_dir / "weights"
        if self.is_main:
            self.wdir.mkdir(parents=True, exist_ok=True)
            write_json(self.save_dir / "args.json", cfg.to_json() | {"hyp": self.hyp})
            atomic_write(self.save_dir / "hyp.yaml", lambda p: p.write_text(yaml.safe_dump(self.hyp, sort_keys=False)))

        # model
        self.net = self._build_model().to(self.device)
        self.stride = int(max(self.net.stride.tolist()))

        # loader
        self.batch_per_rank = cfg.batch // self.world_size
        self._build_data()

        # optimizer, schedule, scaler
        self.accumulate = max(round(cfg.nbs / cfg.batch), 1)
        weight_decay = float(self.hyp["weight_decay"]) * cfg.batch * self.accumulate / cfg.nbs
        self.optimizer = build_optimizer(
            self.net,
            float(self.hyp["lr0"]),
            float(self.hyp["momentum"]),
            weight_decay,
            cfg.optimizer,
            bn_lr_mult=float(self.hyp.get("bn_lr_mult", 1.0)),
        )
        kind = cfg.lr_schedule or self.hyp.get("lr_schedule", "linear")
        self.lf = LrLambda(kind, float(self.hyp["lrf"]), cfg.epochs)
        self.scheduler = LambdaLR(self.optimizer, lr_lambda=self.lf)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.ema = ModelEMA(self.net, decay=cfg.ema_decay, tau=cfg.ema_tau)
        self.loss_fn = DetectionLoss(self.net, self.hyp, cfg.imgsz)
        self.epochs = cfg.epochs
        self.start_epoch = 0
        self.nb = len(self.loader)
        self.nw = warmup_iterations(float(self.hyp["warmup_epochs"]), self.nb, self.nb * cfg.epochs)

        if self._resume is not None:
            self._restore(self._resume["doc"], self._resume["tensors"])
            self._resume = None

        # model wrapping (after restoring weights into the bare model)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.net
        if self.world_size > 1:
            if cfg.sync_bn:
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
                LOGGER.info("using SyncBatchNorm")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids, output_device=None)

        # validation (main rank only)
        self.validator = None
        if self.is_main and self.data.val:
            from ..evaluation.validator import Validator

            self.validator = Validator(
                self.data,
                "val",
                cfg.val_imgsz or cfg.imgsz,
                cfg.val_batch or self.batch_per_rank * 2,
                workers=self.workers,
            )
        elif self.is_main:
            LOGGER.warning("WARNING %s defines no val split: no validation, best = last", cfg.data)

    def _build_model(self) -> YOLO:
        cfg = self.config
        if self._resume is not None:
            doc = self._resume["doc"]
            model = YOLO(doc["arch"])
            load_model_state(model, model_tensors(self._resume["tensors"], "model"), "training state")
            model.names = list(doc["names"])
            model.meta = dict(doc["model_meta"])
            return model
        if cfg.cfg:
            model = build_model(cfg.cfg, nc=self.nc)
            model.meta = {"source": {"format": "cfg", "cfg": str(cfg.cfg)}, "history": []}
        else:
            model = load_model(cfg.weights)
            model.meta.setdefault("history", [])
            if model.nc != self.nc:
                if self.is_main:
                    LOGGER.info(
                        "%s has %d classes, %s has %d: new Detect head for %d classes (other weights kept)",
                        cfg.weights,
                        model.nc,
                        cfg.data,
                        self.nc,
                        self.nc,
                    )
                model = replace_detect_head(model, self.nc)
        model.names = list(self.data.names)
        return model

    def _build_data(self) -> None:
        from ..data import dataset as dataset_api
        from ..data.index import index_images

        cfg = self.config
        index = index_images(self.data.images("train"), self.nc, warn=self.is_main, cache=True)
        if len(index) == 0:
            raise PrunedYoloError(f"{cfg.data}: no usable training images")
        self.data_problems = list(index.problems)
        self.dataset = dataset_api.TrainDataset(
            index,
            imgsz=cfg.imgsz,
            hyp=self.hyp,
            augment=True,
            cache=cfg.cache,
            stride=self.stride,
            seed=cfg.seed,
        )
        self.workers = cfg.workers if cfg.workers is not None else default_workers(self.batch_per_rank, self.world_size)
        sampler = None
        if self.world_size > 1:
            sampler = DistributedSampler(
                self.dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=cfg.seed
            )
        self.loader = dataset_api.build_train_loader(
            self.dataset, self.batch_per_rank, self.workers, shuffle=True, sampler=sampler, seed=cfg.seed
        )
        self.sampler = self.loader.sampler  # EpochSampler (one process) or DistributedSampler

    # -- state ---------------------------------------------------------------------------------
    def _restore(self, doc: dict, tensors: dict[str, torch.Tensor]) -> None:
        load_model_state(self.ema.ema, model_tensors(tensors, "ema"), "training state (EMA)")
        self.ema.updates = int(doc["ema_updates"])
        self.optimizer.load_state_dict(optimizer_from_parts(tensors, doc["optimizer"]))
        self.scheduler.load_state_dict(doc["scheduler"])
        if doc.get("scaler"):
            self.scaler.load_state_dict(doc["scaler"])
        self.start_epoch = int(doc["epoch"])
        self.best_fitness = float(doc["best_fitness"])
        self.best_epoch = int(doc["best_epoch"])
        self.history = list(doc["history"])
        self.optimizer_steps = int(doc["optimizer_steps"])
        set_rng_states(tensors, doc["rng"])
        if self.is_main:
            LOGGER.info("resuming %s from epoch %d of %d", self.save_dir, self.start_epoch + 1, self.config.epochs)

    def _save_state(self, next_epoch: int) -> None:
        info = {
            "config": self.config.to_json(),
            "hyp": self.hyp,
            "arch": self.net.arch(),
            "names": list(self.net.names),
            "model_meta": self.net.meta,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema_updates": self.ema.updates,
            "epoch": next_epoch,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "optimizer_steps": self.optimizer_steps,
        }
        save_state(
            self.wdir / "last_state.safetensors",
            model_state=self.net.state_dict(),
            ema_state=self.ema.ema.state_dict(),
            optimizer_state=self.optimizer.state_dict(),
            info=info,
        )

    def _history_entry(self, epochs_done: int) -> dict:
        cfg = self.config
        m = self.metrics
        return {
            "kind": "train",
            "data": str(cfg.data),
            "cfg": cfg.cfg,
            "weights": cfg.weights,
            "epochs": cfg.epochs,
            "epochs_done": epochs_done,
            "imgsz": cfg.imgsz,
            "batch": cfg.batch,
            "hyp": self.hyp,
            "seed": cfg.seed,
            "metrics": {k: m[k] for k in ("precision", "recall", "mAP50", "mAP50-95") if k in m},
            "evaluator": m.get("evaluator"),
            "best_epoch": self.best_epoch + 1,
        }

    def _save_checkpoints(self, epochs_done: int, final: bool) -> None:
        meta = {
            "imgsz": self.config.imgsz,
            "history": list(self.net.meta.get("history", [])) + [self._history_entry(epochs_done)],
        }
        last = save_checkpoint(self.ema.ema, self.wdir / "last.safetensors", **meta)
        if self.is_best or not (self.wdir / "best.safetensors").exists():
            atomic_write(self.wdir / "best.safetensors", lambda tmp: shutil.copyfile(last, tmp))
        if not self.config.nosave:
            self._save_state(epochs_done)

    def _write_results(self) -> None:
        canonical = ["epoch", *(f"train/{n}" for n in LOSS_NAMES), *(f"metrics/{n}" for n in METRIC_NAMES)]
        canonical += [f"lr/{n}" for n in GROUP_NAMES] + ["time/epoch_s"]
        keys = [k for k in canonical if any(k in row for row in self.history)]
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        atomic_write(self.save_dir / "results.csv", lambda p: p.write_text(buf.getvalue()))

    # -- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train; returns the final validation metrics (fast AP of the EMA model)."""
        try:
            self._setup()
            return self._fit()
        finally:
            dist_utils.cleanup()

    def _fit(self) -> dict:
        cfg, hyp, device = self.config, self.hyp, self.device
        nb, nw = self.nb, self.nw
        last_opt_step = nb * self.start_epoch - 1
        self.callbacks.fire("on_train_start", self)
        if self.is_main:
            LOGGER.info(
                "training %s for %d epochs: %d images, batch %d (x%d accumulation), imgsz %d, %s, %d workers%s -> %s",
                cfg.weights or (cfg.cfg if isinstance(cfg.cfg, str) else "a new model"),
                cfg.epochs,
                len(self.dataset),
                cfg.batch,
                self.accumulate,
                cfg.imgsz,
                device,
                self.workers,
                f", {self.world_size} processes" if self.world_size > 1 else "",
                self.save_dir,
            )
        t_start = time.time()
        for epoch in range(self.start_epoch, cfg.epochs):
            self.epoch = epoch
            t_epoch = time.time()
            self.model.train()
            self.sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
            self.callbacks.fire("on_epoch_start", self)
            mloss = torch.zeros(3, device=device)
            self.mloss = mloss
            self.optimizer.zero_grad(set_to_none=True)
            bar = enumerate(self.loader)
            pbar = None
            if self.is_main and cfg.progress and sys.stderr.isatty():  # in a log file: one line per epoch
                from tqdm import tqdm

                pbar = tqdm(bar, total=nb, bar_format="{l_bar}{bar:10}{r_bar}", leave=True)
                bar = pbar
            for i, (imgs, targets, metas) in bar:
                ni = i + nb * epoch
                self.batch_index, self.ni = i, ni
                imgs = imgs.to(device, non_blocking=True).float() / 255
                if cfg.channels_last:
                    imgs = imgs.contiguous(memory_format=torch.channels_last)
                if ni < nw:
                    self.accumulate = warmup_step(self.optimizer, ni, nw, self.lf(epoch), hyp, cfg.nbs, cfg.batch)
                else:
                    self.accumulate = max(round(cfg.nbs / cfg.batch), 1)
                if cfg.plots and self.is_main and ni < 3:
                    self._plot_batch(imgs, targets, metas, ni)
                self.imgs, self.targets, self.metas = imgs, targets, metas
                self.callbacks.fire("on_batch_start", self)

                with torch.autocast(device.type, enabled=self.amp):
                    self.preds = self.model(imgs)
                    loss, loss_items = self.loss_fn(self.preds, targets.to(device))
                    if self.world_size > 1:
                        loss = loss * self.world_size  # DDP averages gradients over the ranks
                    self.loss, self.loss_items = loss, loss_items
                    self.extra_loss_items = {}
                    self.callbacks.fire("on_loss", self)
                    loss = self.loss
                if torch.isfinite(loss):
                    self.scaler.scale(loss).backward()
                else:
                    LOGGER.warning("WARNING non-finite loss at epoch %d batch %d: batch skipped", epoch + 1, i)

                if ni - last_opt_step >= self.accumulate or i == nb - 1:
                    self._optimizer_step()
                    last_opt_step = ni

                mloss = (mloss * i + self.loss_items) / (i + 1)
                self.mloss = mloss
                if pbar is not None:
                    mem = f"{torch.cuda.memory_reserved(device) / 1e9:.3g}G" if device.type == "cuda" else "cpu"
                    pbar.set_description(
                        f"{epoch + 1}/{cfg.epochs} {mem} box {mloss[0]:.4f} obj {mloss[1]:.4f} cls {mloss[2]:.4f} "
                        f"inst {targets.shape[0]} {imgs.shape[-1]}px"
                    )
                self.callbacks.fire("on_batch_end", self)
            if pbar is not None:
                pbar.close()

            lrs = [g["lr"] for g in self.optimizer.param_groups]
            self.callbacks.fire("on_train_epoch_end", self)
            self.scheduler.step()
            self._end_epoch(epoch, mloss, lrs, time.time() - t_epoch)
            stop = dist_utils.broadcast_object(self.stop)
            if stop:
                break

        self.final_metrics = self.metrics
        if self.is_main:
            if cfg.nosave:
                self._save_checkpoints(self.epoch + 1, final=True)
            try:
                plot_results(self.save_dir / "results.csv")
            except Exception as e:  # noqa: BLE001  (a plot must never fail a finished run)
                LOGGER.warning("WARNING results.png not written (%s)", e)
            LOGGER.info(
                "%d epochs in %.1f min; best epoch %d, fitness %.4f; weights in %s",
                self.epoch + 1 - self.start_epoch,
                (time.time() - t_start) / 60,
                self.best_epoch + 1,
                self.best_fitness,
                self.wdir,
            )
        self.callbacks.fire("on_fit_end", self)
        return self.final_metrics

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        self.callbacks.fire("after_backward", self)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm=CLIP_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.net)
        self.optimizer_steps += 1
        self.callbacks.fire("on_optimizer_step", self)

    def _end_epoch(self, epoch: int, mloss: torch.Tensor, lrs: list[float], seconds: float) -> None:
        cfg = self.config
        final = epoch + 1 == cfg.epochs
        self.is_best = False
        self.epoch_log = {}
        if self.is_main:
            self.ema.update_attr(self.net)
            if self.validator is not None and (not cfg.noval or final):
                self.metrics = self.validator(self.ema.ema, self.device, official=False, progress=False)
                self.fitness = 0.1 * self.metrics["mAP50"] + 0.9 * self.metrics["mAP50-95"]
                if self.fitness > self.best_fitness:
                    self.best_fitness, self.best_epoch, self.is_best = self.fitness, epoch, True
                if cfg.patience and epoch - self.best_epoch >= cfg.patience:
                    LOGGER.info("no improvement for %d epochs: stopping early", cfg.patience)
                    self.stop = True
            elif self.validator is None:
                self.best_epoch, self.is_best = epoch, True
        self.callbacks.fire("on_epoch_end", self)
        if not self.is_main:
            return
        m = self.metrics
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({f"train/{n}": float(v) for n, v in zip(LOSS_NAMES, mloss.tolist())})
        if m:
            row.update(
                {
                    "metrics/precision": m["precision"],
                    "metrics/recall": m["recall"],
                    "metrics/mAP50": m["mAP50"],
                    "metrics/mAP50-95": m["mAP50-95"],
                }
            )
        row.update({f"lr/{n}": lr for n, lr in zip(GROUP_NAMES, lrs)})
        row["time/epoch_s"] = round(seconds, 2)
        row.update(self.epoch_log)
        self.history.append(row)
        self._write_results()
        LOGGER.info("%s", epoch_line(epoch + 1, cfg.epochs, row, seconds))
        if not cfg.nosave:
            self._save_checkpoints(epoch + 1, final)

    def _plot_batch(self, imgs, targets, metas, ni) -> None:
        try:
            from ..utils.plotting import plot_batch

            plot_batch(
                (imgs * 255).byte().cpu(), targets, list(self.data.names), self.save_dir / f"train_batch{ni}.jpg"
            )
        except Exception as e:  # noqa: BLE001
            LOGGER.warning("WARNING training batch plot failed (%s)", e)


def train(config: TrainConfig, callbacks: list[Callback] | tuple = ()) -> dict:
    """Convenience wrapper: `Trainer(config, callbacks).fit()`."""
    return Trainer(config, callbacks).fit()


def _saved_callback_specs(config: TrainConfig) -> list[dict]:
    """The callback specs of a saved run (runs saved before specs existed kept sparsity in `extra`)."""
    if config.callbacks:
        return list(config.callbacks)
    sparsity = (config.extra or {}).get("sparsity")
    return [{"name": "sparsity", "args": {"config": sparsity, "plots": config.plots}}] if sparsity else []


def epoch_line(epoch: int, epochs: int, row: dict, seconds: float) -> str:
    """The one log line of a finished epoch: losses, and the validation metrics when there are any."""
    losses = " ".join(f"{n} {row[f'train/{n}_loss']:.4f}" for n in ("box", "obj", "cls") if f"train/{n}_loss" in row)
    line = f"epoch {epoch}/{epochs}: loss {losses}"
    if "metrics/mAP50-95" in row:
        line += (
            f", P {row['metrics/precision']:.3f} R {row['metrics/recall']:.3f} "
            f"mAP50 {row['metrics/mAP50']:.3f} mAP50-95 {row['metrics/mAP50-95']:.3f}"
        )
    return f"{line} ({seconds:.1f}s)"


def train_or_resume(config: TrainConfig, callbacks: list[Callback] | tuple = ()) -> Path:
    """Train in exactly `config.project / config.name`, resuming a run interrupted there; returns
    its `weights/last.safetensors`. The saved training state decides (not results.csv): a run
    whose state records all its epochs is finished and is not trained again."""
    run_dir = Path(config.project) / config.name
    state = run_dir / "weights" / "last_state.safetensors"
    if state.is_file():
        if saved_epoch(state) < config.epochs:
            LOGGER.info("resuming %s", run_dir)
            Trainer.resume(run_dir, callbacks).fit()
    else:
        Trainer(dataclasses.replace(config, exist_ok=True), callbacks).fit()
    return run_dir / "weights" / "last.safetensors"


__all__ = [
    "TrainConfig",
    "Trainer",
    "default_workers",
    "load_hyp",
    "replace_detect_head",
    "train",
    "train_or_resume",
]
