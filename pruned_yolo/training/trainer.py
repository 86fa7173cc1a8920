"""The training loop: `Trainer(TrainConfig(...)).fit()`.

A flat loop in the style of torchvision's reference scripts, with YOLOv5's recipe:
SGD (Nesterov) over three parameter groups, warm-up, cosine or linear lr to `lrf`,
nominal batch 64 by gradient accumulation, gradient clipping (norm 10), EMA of the
weights, AMP on CUDA, validation of the EMA model every epoch (fast COCO-protocol AP),
`best` / `last` checkpoints in our format, `results.csv` / `results.png`, a resumable
state, and DistributedDataParallel under torchrun. Extension points are the callbacks
of `hooks.py`.

`fit()` = `_setup()` (device, run folder, model, data, optimizer, resumed state, DDP
wrapping, validator) then the loop: `_train_epoch` per epoch, `_train_step` per batch
(warm-up, forward and loss, backward, `_optimizer_step` every `accumulate` batches), and
`_end_epoch` (validation, results.csv row, checkpoints). The run's settings are
`TrainConfig` (config.py), its hyperparameters `load_hyp` (hyp.py).

Run folder (`runs/train/exp*`):

    weights/last.safetensors   EMA weights after the latest epoch (our checkpoint format)
    weights/best.safetensors   EMA weights of the best epoch (fitness 0.1 mAP50 + 0.9 mAP50-95)
    weights/last_state.safetensors   everything `--resume` needs (see state.py)
    results.csv, results.png, args.json, hyp.yaml
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DistributedSampler

from ..checkpoint import load_model, save_checkpoint
from ..checkpoint.native import load_state as load_model_state
from ..data.config import DataConfig, load_data_config
from ..errors import PrunedYoloError
from ..models import YOLO, build_model, replace_detect_head
from ..utils.files import atomic_write, increment_dir, write_json
from ..utils.torch_utils import init_seeds, recalibrate_bn, select_device, set_cpu_threads
from . import distributed as dist_utils
from .config import OPTIMIZERS, TrainConfig, default_workers
from .ema import ModelEMA, run_sized_ema
from .hooks import Callback, CallbackList, build_callback, callback_spec
from .hyp import HYP_NAMES, REQUIRED_HYP, load_hyp
from .loss import DetectionLoss
from .optim import LrLambda, build_optimizer, warmup_iterations, warmup_step
from .plots import plot_results
from .results import LOSS_NAMES, METRIC_NAMES, epoch_line, epoch_row, write_results
from .state import load_state, model_tensors, optimizer_from_parts, save_state, saved_epoch, set_rng_states

LOGGER = logging.getLogger("pruned_yolo")

CLIP_NORM = 10.0


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

    # -- setup: device, run folder, model, data, optimizer, (resume), wrapping, validation ---------
    def _setup(self) -> None:
        """Build everything the loop needs. The order matters: seeds first, the data config before
        the run folder is made, the state of a resumed run restored into the bare model."""
        self._setup_device()
        self.data: DataConfig = load_data_config(self.config.data)
        self.nc = self.data.nc
        self._setup_save_dir()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        if self._resume is not None:
            self._restore(self._resume["doc"], self._resume["tensors"])
            self._resume = None
        self._wrap_model()
        self._setup_validator()

    def _setup_device(self) -> None:
        """Device, processes (torchrun), CPU threads, seeds and AMP."""
        cfg = self.config
        self.device = dist_utils.init_distributed(select_device(cfg.device))
        self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        self.is_main = self.rank == 0
        if cfg.sync_bn and self.device.type != "cuda" and self.world_size > 1:
            raise PrunedYoloError("--sync-bn needs CUDA (torch's SyncBatchNorm runs on GPUs only)")
        if cfg.batch % self.world_size:
            raise PrunedYoloError(f"--batch {cfg.batch} is not a multiple of the {self.world_size} processes")
        set_cpu_threads(cfg.threads or max(1, (os.cpu_count() or 1) // self.world_size))
        init_seeds(cfg.seed + self.rank, cfg.deterministic)
        self.amp = self.device.type == "cuda"

    def _setup_save_dir(self) -> None:
        """The run folder (rank 0 decides, the others follow), with args.json and hyp.yaml."""
        cfg = self.config
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

    def _setup_model(self) -> None:
        self.net = self._build_model().to(self.device)
        self.stride = int(max(self.net.stride.tolist()))

    def _build_model(self) -> YOLO:
        """The bare model: from the resumed state, a config (new weights) or a checkpoint
        (with a new Detect head when the data has another number of classes)."""
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

    def _setup_data(self) -> None:
        """The training images (indexed and checked), the augmenting dataset, sampler and loader."""
        from ..data import dataset as dataset_api
        from ..data.index import index_images

        cfg = self.config
        self.batch_per_rank = cfg.batch // self.world_size
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

    def _setup_optimizer(self) -> None:
        """Optimizer, lr schedule, AMP scaler, EMA, loss, and the epoch / iteration counts."""
        cfg, hyp = self.config, self.hyp
        self.accumulate = max(round(cfg.nbs / cfg.batch), 1)
        weight_decay = float(hyp["weight_decay"]) * cfg.batch * self.accumulate / cfg.nbs
        self.optimizer = build_optimizer(
            self.net,
            float(hyp["lr0"]),
            float(hyp["momentum"]),
            weight_decay,
            cfg.optimizer,
            bn_lr_mult=float(hyp.get("bn_lr_mult", 1.0)),
        )
        kind = cfg.lr_schedule or hyp.get("lr_schedule", "linear")
        self.lf = LrLambda(kind, float(hyp["lrf"]), cfg.epochs)
        self.scheduler = LambdaLR(self.optimizer, lr_lambda=self.lf)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.nb = len(self.loader)
        decay, tau = cfg.ema_decay, cfg.ema_tau
        if cfg.ema_plan == "run":
            decay, tau = run_sized_ema(math.ceil(self.nb / self.accumulate))
            LOGGER.info("EMA sized to the run: decay %.5f, tau %.0f optimizer steps", decay, tau)
        self.ema = ModelEMA(self.net, decay=decay, tau=tau)
        self.loss_fn = DetectionLoss(self.net, hyp, cfg.imgsz)
        self.epochs = cfg.epochs
        self.start_epoch = 0
        self.nw = warmup_iterations(float(hyp["warmup_epochs"]), self.nb, self.nb * cfg.epochs)

    def _wrap_model(self) -> None:
        """channels_last, SyncBatchNorm and DDP (after the weights are restored into the bare model)."""
        cfg = self.config
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model: nn.Module = self.net
        if self.world_size > 1:
            if cfg.sync_bn:
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
                LOGGER.info("using SyncBatchNorm")
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids, output_device=None)

    def _setup_validator(self) -> None:
        """The validator of the EMA model (main rank only; none without a val split)."""
        cfg = self.config
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
            "metrics": {k: m[k] for k in METRIC_NAMES if k in m},
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

    # -- the loop: fit -> epochs -> steps ----------------------------------------------------------
    def fit(self) -> dict:
        """Train; returns the final validation metrics (fast AP of the EMA model)."""
        try:
            self._setup()
            return self._fit()
        finally:
            dist_utils.cleanup()

    def _fit(self) -> dict:
        self.last_opt_step = self.nb * self.start_epoch - 1
        self.callbacks.fire("on_train_start", self)
        self._log_start()
        t_start = time.time()
        for epoch in range(self.start_epoch, self.config.epochs):
            self._train_epoch(epoch)
            if dist_utils.broadcast_object(self.stop):
                break
        self._finish(t_start)
        self.callbacks.fire("on_fit_end", self)
        return self.final_metrics

    def _train_epoch(self, epoch: int) -> None:
        """One pass over the data, the lr schedule step, then validation and checkpoints."""
        self.epoch = epoch
        t_epoch = time.time()
        self.model.train()
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        self.callbacks.fire("on_epoch_start", self)
        self.mloss = torch.zeros(3, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        batches = enumerate(self.loader)
        pbar = self._progress_bar(batches)
        for i, (imgs, targets, metas) in pbar if pbar is not None else batches:
            self._train_step(i, imgs, targets, metas, pbar)
        if pbar is not None:
            pbar.close()
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.callbacks.fire("on_train_epoch_end", self)
        self.scheduler.step()
        self._end_epoch(epoch, self.mloss, lrs, time.time() - t_epoch)

    def _train_step(self, i: int, imgs: torch.Tensor, targets: torch.Tensor, metas: list, pbar=None) -> None:
        """One batch: warm-up, forward and loss, backward, an optimizer step every `accumulate` batches."""
        cfg = self.config
        ni = i + self.nb * self.epoch
        self.batch_index, self.ni = i, ni
        imgs = imgs.to(self.device, non_blocking=True).float() / 255
        if cfg.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        self._warmup(ni)
        if cfg.plots and self.is_main and ni < 3:
            self._plot_batch(imgs, targets, metas, ni)
        self.imgs, self.targets, self.metas = imgs, targets, metas
        self.callbacks.fire("on_batch_start", self)

        loss = self._forward_loss(imgs, targets)
        if torch.isfinite(loss):
            self.scaler.scale(loss).backward()
        else:
            LOGGER.warning("WARNING non-finite loss at epoch %d batch %d: batch skipped", self.epoch + 1, i)
        if ni - self.last_opt_step >= self.accumulate or i == self.nb - 1:
            self._optimizer_step()
            self.last_opt_step = ni

        self.mloss = (self.mloss * i + self.loss_items) / (i + 1)
        if pbar is not None:
            self._describe_progress(pbar, imgs, targets)
        self.callbacks.fire("on_batch_end", self)

    def _warmup(self, ni: int) -> None:
        """lr / momentum warm-up over the first `nw` iterations, which also ramps `accumulate` up."""
        cfg = self.config
        if ni < self.nw:
            self.accumulate = warmup_step(
                self.optimizer, ni, self.nw, self.lf(self.epoch), self.hyp, cfg.nbs, cfg.batch
            )
        else:
            self.accumulate = max(round(cfg.nbs / cfg.batch), 1)

    def _forward_loss(self, imgs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Forward pass and detection loss under autocast; `on_loss` callbacks may replace `loss`."""
        with torch.autocast(self.device.type, enabled=self.amp):
            self.preds = self.model(imgs)
            loss, loss_items = self.loss_fn(self.preds, targets.to(self.device))
            if self.world_size > 1:
                loss = loss * self.world_size  # DDP averages gradients over the ranks
            self.loss, self.loss_items = loss, loss_items
            self.extra_loss_items = {}
            self.callbacks.fire("on_loss", self)
            return self.loss

    def _optimizer_step(self) -> None:
        """Unscale, clip, step, EMA update (the accumulated gradients of the last batches)."""
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
        """Validation (main rank), `on_epoch_end`, the results.csv row and the checkpoints."""
        cfg = self.config
        final = epoch + 1 == cfg.epochs
        self.is_best = False
        self.epoch_log = {}
        if self.is_main:
            if cfg.bn_recal_batches and (not cfg.noval or final):
                self._recalibrate_ema_bn()
            self._validate(epoch, final)
        self.callbacks.fire("on_epoch_end", self)
        if not self.is_main:
            return
        row = epoch_row(epoch + 1, mloss.tolist(), self.metrics, lrs, seconds)
        row.update(self.epoch_log)
        self.history.append(row)
        write_results(self.save_dir / "results.csv", self.history)
        LOGGER.info("%s", epoch_line(epoch + 1, cfg.epochs, row, seconds))
        if not cfg.nosave:
            self._save_checkpoints(epoch + 1, final)

    def _recalibrate_ema_bn(self) -> None:
        """The EMA model's BatchNorm statistics re-estimated on the first training batches (main rank)."""
        batches = itertools.islice(self.loader, min(self.config.bn_recal_batches, self.nb))
        recalibrate_bn(self.ema.ema, (imgs.to(self.device).float() / 255 for imgs, *_ in batches))

    def _validate(self, epoch: int, final: bool) -> None:
        """Validate the EMA model (every epoch, or only the last with --noval); track the best and patience."""
        cfg = self.config
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

    def _finish(self, t_start: float) -> None:
        """After the last epoch: the final checkpoint (--nosave), results.png and the summary line."""
        cfg = self.config
        self.final_metrics = self.metrics
        if not self.is_main:
            return
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

    # -- logging -----------------------------------------------------------------------------------
    def _log_start(self) -> None:
        cfg = self.config
        if self.is_main:
            LOGGER.info(
                "training %s for %d epochs: %d images, batch %d (x%d accumulation), imgsz %d, %s, %d workers%s -> %s",
                cfg.weights or (cfg.cfg if isinstance(cfg.cfg, str) else "a new model"),
                cfg.epochs,
                len(self.dataset),
                cfg.batch,
                self.accumulate,
                cfg.imgsz,
                self.device,
                self.workers,
                f", {self.world_size} processes" if self.world_size > 1 else "",
                self.save_dir,
            )

    def _progress_bar(self, batches):
        """A tqdm bar over `batches` on a terminal (main rank, --progress); None in a log file (one line per epoch)."""
        if not (self.is_main and self.config.progress and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(batches, total=self.nb, bar_format="{l_bar}{bar:10}{r_bar}", leave=True)

    def _describe_progress(self, pbar, imgs: torch.Tensor, targets: torch.Tensor) -> None:
        mloss, device = self.mloss, self.device
        mem = f"{torch.cuda.memory_reserved(device) / 1e9:.3g}G" if device.type == "cuda" else "cpu"
        pbar.set_description(
            f"{self.epoch + 1}/{self.config.epochs} {mem} box {mloss[0]:.4f} obj {mloss[1]:.4f} cls {mloss[2]:.4f} "
            f"inst {targets.shape[0]} {imgs.shape[-1]}px"
        )

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
    "CLIP_NORM",
    "HYP_NAMES",
    "LOSS_NAMES",
    "METRIC_NAMES",
    "OPTIMIZERS",
    "REQUIRED_HYP",
    "TrainConfig",
    "Trainer",
    "default_workers",
    "epoch_line",
    "init_seeds",
    "load_hyp",
    "replace_detect_head",
    "train",
    "train_or_resume",
]
