"""Compress to a budget: K rounds of sparsity training, pruning and fine-tuning.

    result = compress(CompressConfig(weights="yolov5s.pt", data="coco128.yaml", target_flops_ratio=0.5))

Round r of K prunes to the budget `target ** (r / K)` (as a fraction of the dense model),
so the last round meets the target and every round removes the same fraction of what is
left. Every phase writes its outputs under the run folder and records itself in
`state.json`; `resume=True` continues at the phase that was interrupted (a training phase
resumes from its own last epoch).

Default recipe, calibrated on HIT-UAV (`benchmarks/hituav.py`: a yolov5s fine-tuned 20
epochs on 508 thermal drone images, 320 px, mAP50-95 0.2310; all at 50% of its GFLOPs, 28
epochs, distillation; details in `benchmarks/results/hituav_notes.md`):

* hyp `finetune` (lr0 5e-4), 4 sparsity + 10 fine-tune epochs (the old defaults): 0.029;
  with hyp `scratch-low` (the dense model's own lr0 0.01) pruned models train again;
* one round, 12 epochs fading the planned channels to 0 (`mask="fade"`), exact pruning
  (0.1698 before and after), 16 epochs of training: 0.2226 at YOLOv5's nominal batch 64
  (8 optimizer steps per epoch on 508 images);
* the same with a step per batch (`nbs` = batch 16, 32 steps per epoch): **0.2469** (1.9M
  params, 0.2042 after the fade phase instead of 0.1698; above the dense 0.2310);
* the L1 term on the gammas (`sparsity` 0.02, the paper's) on top of the fade: 0.2469 / 0.2339
  over seeds 0 / 1 (mean 0.2404); without it (`sparsity` 0, the default): 0.2544 / 0.2490
  (mean 0.2517): the fade already silences the planned channels, the L1 term only shrinks the kept;
* pruning at once with group-normalized ranking, then 28 epochs: 0.2191 (3.6M params);
* two rounds of 6 + 8 epochs (`iterations=2`, the same 28) at yolov5n's GFLOPs: 0.1664 against
  one round's 0.1921 (each fade too short to recover before its cut): one round by default;
* distillation weight 4 instead of 1, from a teacher trained 48 epochs (0.3149): 0.2563, vs 0.2559
  at weight 1 (teacher 0.3307; 0.9 points more at the cut, the same at the end): weight 1 stays;
* restarting the lr schedule costs even the dense model 6-11 points for a few epochs
  (0.224 -> 0.165 -> 0.114 in epochs 1, 2, 4): early per-epoch dips are the warm-up.
* fine-tuning at lr0 0.002 with an EMA over about three epochs (`finetune_lr0`, `finetune_ema`):
  +1.0 / +1.1 points each on one cut from the 48-epoch dense model (`benchmarks/finetune_lab.py`),
  but 0.2360 together from the 20-epoch shared model, 1.8 points below the defaults, and 0.2479
  with the EMA alone (within the seed spread): a gentle fine-tuning suits only a converged
  start, so both stay off.
* the fade phase at lr0 0.002 (`sparsity_lr0`) from the 48-epoch dense model: 0.2102 at the cut
  (0.2386 at lr0 0.01), 0.2553 after fine-tuning (0.2559 / 0.2563 with the defaults): off.
* the split at yolov5n's GFLOPs: 4 sparsity + 24 fine-tuning epochs 0.1973 / 0.1966 over two
  seeds (+0.5 over 12 + 16), pruning at once then 28 epochs 0.1802; even at 50% (0.2474 with
  4 + 24): 12 + 16 stays the default (a default moves for 1 point or more).
* the plan switched off a growing part at a time (`mask="gradual"`: cubic, least important first,
  re-planned on the EMA 8 times per epoch) instead of faded together: 0.2169 at the cut (0.2135),
  0.2484 at the end, within the fade's seeds 0.2544 / 0.2490: the fade stays the default.
* 12 + 28 epochs (40, the issue's cost limit of 2 x the dense model's 20; `finetune_epochs=28`):
  0.2664 (seed 0), +1.2 over 12 + 16: a longer fine-tuning pays, but the default stays 16 until
  a second seed and the 40-epoch comparison rows are measured.

Run folder:

    state.json                         phases done, per-round figures
    round1/sparsity/                   a `train` run with the sparsity callback
    round1/pruned.safetensors          right after pruning (before fine-tuning)
    round1/finetune/                   a `train` run (optionally with distillation)
    round1/model.safetensors           the round's result
    final.safetensors, final.onnx      the last round's result and its ONNX export
    report.json, report.md, report.png the per-round table and the mAP-vs-cost plot
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checkpoint import load_model, save_checkpoint
from ..errors import ConfigError, PrunedYoloError
from ..pruning import Pruner, PruningError, check_targets, floor_for_budget, prune
from ..training.config import EMA_PLANS
from ..utils.files import increment_dir, write_json
from ..utils.torch_utils import count_params, gflops
from .distill import DistillationCallback
from .sparsity import SparsityCallback, SparsityConfig

LOGGER = logging.getLogger("pruned_yolo")

PHASES = ("sparsity", "prune", "finetune", "evaluate")
# how the learning rate runs over the training phases of a run:
# per-phase: every phase warms up and decays (a separate `train` run each);
# continuous: one warm-up at the start, lr0 held through the sparsity phases and the fine-tuning
# of the rounds before the last, and one decay over the last fine-tuning (no restart dip);
# gentle: per-phase, but the biases warm up from lr 0 like the weights (the hyp's warm-up starts
# them at warmup_bias_lr, 0.1: a setting for training from scratch, and compress never does)
LR_PLANS = ("per-phase", "continuous", "gentle")
# a FLOPs, params or latency budget (a latency becomes a GFLOPs budget measured once, see latency_budget)
COMPRESS_TARGETS = ("target_flops_ratio", "target_gflops", "target_params_ratio", "target_latency_ms")
ROUND_BUDGET_KEYS = ("target_gflops", "target_params_ratio", "per_layer_ratio")  # kept in each round's report


def with_phase_lr(hyp: dict, lr: dict) -> dict:
    """`hyp` with a phase's lr overrides (CompressConfig.phase_lr).

    A phase lr0 scales the biases' warm-up start with it: the hyp's warmup_bias_lr (0.1, ten times
    its lr0) would otherwise kick the biases of a phase run at lr0 0.002 with 50 times its lr.
    """
    out = {**hyp, **lr}
    if "lr0" in lr and "warmup_bias_lr" not in lr and "warmup_bias_lr" in hyp:
        out["warmup_bias_lr"] = hyp["warmup_bias_lr"] * lr["lr0"] / hyp["lr0"]
    return out


@dataclass
class CompressConfig:
    """Settings of `pruned-yolo compress` (saved in state.json; `--resume` reads them back)."""

    weights: str
    data: str
    target_flops_ratio: float | None = None
    target_gflops: float | None = None
    target_params_ratio: float | None = None
    target_latency_ms: float | None = None  # ONNX Runtime, batch 1 at imgsz, `threads` threads, this machine
    # The recipe (calibrated on HIT-UAV, see the module docstring): one round; the sparsity phase
    # trains the dense model at the full training lr while the channels that the round will
    # prune fade to zero (so that pruning removes silent channels), then the pruned model
    # trains again; both phases learn from the dense model (distillation).
    iterations: int = 1
    sparsity_epochs: int = 12
    finetune_epochs: int = 16
    importance: str = "bn-kernel"
    group_normalize: str = "none"  # "mean": rank channels relative to their group (Torch-Pruning style)
    sparsity: float = 0.0  # the paper's L1 term on the gammas; 0: the fade alone (measured better, see above)
    sparsity_schedule: str = "cosine"
    mask: str = "fade"
    mask_period: int = 2
    mask_alpha: float = 0.2
    mask_stats: str = "keep"
    mask_target: str = "budget"  # "budget": mask the channels the round's pruning will remove
    fade_end: float = 0.6  # mask "fade" / "gradual": the whole plan is off at this fraction of the sparsity phase
    layers: int = 0  # shortcut Bottlenecks removed in total, spread over the rounds
    round_to: int = 8
    # every group keeps at least max(2, ratio x its dense channels); None: floor_for_budget(the target's fraction)
    per_layer_ratio: float | None = None
    bias_compensation: bool = True
    distill: bool = True  # learn from the dense model in every training phase
    distill_weight: float = 1.0
    teacher: str | None = None  # distillation teacher (default: the input weights)
    max_map_drop: float | None = None  # stop at the last round within this many mAP50-95 points of the dense
    imgsz: int = 640
    batch: int = 16
    nbs: int | None = None  # nominal batch (gradient accumulation); None: = batch, one optimizer step per batch
    hyp: str | dict = "scratch-low"
    lr_plan: str = "per-phase"  # LR_PLANS
    bn_lr_mult: float = 1.0  # lr multiplier of the BatchNorm weights during sparsity training
    bn_recal: int = 0  # training phases: re-estimate BatchNorm statistics on this many batches before each validation
    sparsity_lr0: float | None = None  # lr0 of the sparsity (fade) phases (None: the hyp's)
    finetune_lr0: float | None = None  # lr0 of the fine-tuning phases (None: the hyp's)
    # EMA of the fine-tuning phases (training.EMA_PLANS): "fixed" = YOLOv5's decay 0.9999 / tau 2000,
    # which over a short fine-tuning is the raw model; "run" = an average over about three epochs
    finetune_ema: str = "fixed"
    optimizer: str = "SGD"
    noval: bool = False  # no per-epoch validation inside the training phases (each phase is still evaluated)
    device: str = ""
    workers: int | None = None
    seed: int = 0
    cache: str | None = None
    project: str = "runs/compress"
    name: str = "exp"
    exist_ok: bool = False
    latency_runs: int = 30
    int8: bool = False  # also an INT8 ONNX Runtime export of the final model, scored and timed
    parity: bool = False  # parity table of the dense and final models: PyTorch, ORT float32, ORT INT8
    threads: int | None = None
    references: list[str] = field(default_factory=list)  # dense models drawn as reference points
    progress: bool = True
    plots: bool = False

    def __post_init__(self):
        given = {t: getattr(self, t) for t in COMPRESS_TARGETS if getattr(self, t) is not None}
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of --target-flops-ratio, --target-gflops, --target-params-ratio, --target-latency-ms"
            )
        try:
            check_targets(**given)  # the ranges of every pruning target, checked in one place
        except PruningError as e:
            raise ConfigError(f"--{str(e).replace('_', '-')}") from None
        if self.iterations < 1:
            raise ConfigError("--iterations must be at least 1")
        if self.bn_recal < 0:
            raise ConfigError(f"--bn-recal must be >= 0 (batches; 0: off), got {self.bn_recal}")
        positive = {
            "batch": self.batch,
            "nbs": 1 if self.nbs is None else self.nbs,
            "latency_runs": self.latency_runs + 1,
        }
        for name, v in positive.items():
            if v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {v}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"--imgsz must be a positive multiple of 32 (the YOLOv5 stride), got {self.imgsz}")
        for name in ("sparsity_epochs", "finetune_epochs", "layers", "bn_lr_mult", "distill_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.max_map_drop is not None and not (math.isfinite(self.max_map_drop) and 0 <= self.max_map_drop < 1):
            raise ConfigError(
                f"--max-map-drop is in mAP units (e.g. 0.01 = 1 point), in [0, 1); got {self.max_map_drop}"
            )
        if self.per_layer_ratio is not None and not 0 <= self.per_layer_ratio <= 1:
            raise ConfigError(f"--per-layer-ratio must be in [0, 1], got {self.per_layer_ratio}")
        if self.finetune_ema not in EMA_PLANS:
            raise ConfigError(f"--finetune-ema must be one of {', '.join(EMA_PLANS)}, got {self.finetune_ema!r}")
        for phase in ("sparsity", "finetune"):
            lr0 = getattr(self, f"{phase}_lr0")
            if lr0 is not None and not (math.isfinite(lr0) and lr0 > 0):
                raise ConfigError(f"--{phase}-lr0 must be positive, got {lr0}")
        if self.lr_plan not in LR_PLANS:
            raise ConfigError(f"--lr-plan must be one of {', '.join(LR_PLANS)}, got {self.lr_plan!r}")
        self.sparsity_config({"target_flops_ratio": 0.5})  # validates the sparsity settings

    def phase_lr(self, r: int, phase: str) -> dict:
        """Hyp overrides of round r's `phase` ("sparsity" or "finetune") under `lr_plan`."""
        phase_lr0 = getattr(self, f"{phase}_lr0")
        lr0 = {} if phase_lr0 is None else {"lr0": phase_lr0}
        if self.lr_plan == "per-phase":
            return lr0
        if self.lr_plan == "gentle":
            return {"warmup_bias_lr": 0.0, **lr0}
        first = r == 1 and (phase == "sparsity" or self.sparsity_epochs == 0)
        last = r == self.iterations and phase == "finetune"
        return {**({} if first else {"warmup_epochs": 0.0}), **({} if last else {"lrf": 1.0}), **lr0}

    def sparsity_config(self, prune_kwargs: dict | None = None) -> SparsityConfig:
        """The sparsity phase's settings; `prune_kwargs` (the round's pruning) feed `mask_target` budget."""
        return SparsityConfig(
            self.sparsity,
            self.sparsity_schedule,
            self.mask,
            self.mask_period,
            self.mask_alpha,
            self.mask_stats,
            self.mask_target,
            prune_kwargs if self.mask_target == "budget" else None,
            self.fade_end,
        )

    def prune_kwargs(self, dense: dict, r: int, current_params: int | None = None) -> dict:
        """prune() keyword arguments of round r: its budget, Bottlenecks and the pruning settings.

        `current_params`: parameters of the model round r starts from (a params target is relative
        to it; default: the dense model's, right for round 1)."""
        return {
            **self.round_budget(dense, r, current_params),
            "layers": self.round_layers(r),
            "importance": self.importance,
            "group_normalize": self.group_normalize,
            "round_to": self.round_to,
            "per_layer_ratio": self.round_floor(dense),
            "imgsz": self.imgsz,
        }

    def final_fraction(self, dense: dict) -> float:
        """The fraction of the dense model's cost (params for a params target, else GFLOPs) the run ends at."""
        if self.target_params_ratio:
            return self.target_params_ratio
        if self.target_latency_ms:
            final = dense["latency_budget"]["gflops"] / dense["gflops"]
        else:
            final = self.target_flops_ratio or self.target_gflops / dense["gflops"]
        if not 0 < final < 1:
            raise ConfigError(f"--target-gflops {self.target_gflops} must be below the dense {dense['gflops']:.2f}")
        return final

    def round_budget(self, dense: dict, r: int, current_params: int | None = None) -> dict:
        """The budget of round r (1-based) as prune() keyword arguments: final^(r/k) of the dense cost."""
        final = self.final_fraction(dense) ** (r / self.iterations)
        if self.target_params_ratio:  # prune() takes a ratio of the model it prunes, not of the dense one
            return {"target_params_ratio": final * dense["params"] / (current_params or dense["params"])}
        return {"target_gflops": dense["gflops"] * final}

    def round_floor(self, dense: dict) -> float:
        """Each round's floor, relative to the widths it starts from: the run's floor over the dense
        widths (--per-layer-ratio, or the budget's) spread over the rounds."""
        floor = self.per_layer_ratio
        if floor is None:
            floor = dense.get("per_layer_ratio")  # fitted on the dense model at the start (Compressor.run_floor)
        if floor is None:
            floor = floor_for_budget(self.final_fraction(dense))
        return round(floor ** (1 / self.iterations), 4)

    def round_layers(self, r: int) -> int:
        k = self.iterations
        return self.layers * r // k - self.layers * (r - 1) // k


class Compressor:
    """Runs (or resumes) a compress job; see the module docstring."""

    def __init__(self, config: CompressConfig, resume_dir: str | Path | None = None):
        if resume_dir is not None:
            self.dir = Path(resume_dir)
            state_path = self.dir / "state.json"
            if not state_path.is_file():
                raise PrunedYoloError(f"--resume: {self.dir} has no state.json (not a compress run)")
            self.state = json.loads(state_path.read_text())
            self.config = CompressConfig(**self.state["config"])
        else:
            self.config = config
            self.dir = increment_dir(Path(config.project) / config.name, config.exist_ok)
            if (self.dir / "state.json").is_file():  # --exist-ok over an old compress run: start clean
                for old in self.dir.glob("round*"):
                    shutil.rmtree(old, ignore_errors=True)
            self.dir.mkdir(parents=True, exist_ok=True)
            self.state = {"config": asdict(config), "done": [], "rounds": [], "dense": None}
        self._save_state()

    # -- bookkeeping ----------------------------------------------------------------------------
    def _save_state(self) -> None:
        write_json(self.dir / "state.json", self.state)

    def _done(self, key: str) -> bool:
        return key in self.state["done"]

    def _mark(self, key: str) -> None:
        self.state["done"].append(key)
        self._save_state()

    def _round_entry(self, r: int) -> dict:
        while len(self.state["rounds"]) < r:
            self.state["rounds"].append({"round": len(self.state["rounds"]) + 1})
        return self.state["rounds"][r - 1]

    # -- phases ---------------------------------------------------------------------------------
    def _train(
        self,
        weights: Path,
        out: Path,
        epochs: int,
        callbacks: list,
        bn_lr_mult: float = 1.0,
        lr: dict | None = None,
        ema_plan: str = "fixed",
    ) -> Path:
        """A training phase in `out` (resumed if it was interrupted); returns its last weights."""
        from ..training import TrainConfig, load_hyp, train_or_resume

        c = self.config
        hyp = with_phase_lr(load_hyp(c.hyp), lr or {})
        if bn_lr_mult != 1.0:
            hyp["bn_lr_mult"] = bn_lr_mult
        cfg = TrainConfig(
            data=c.data,
            weights=str(weights),
            epochs=epochs,
            imgsz=c.imgsz,
            batch=c.batch,
            nbs=c.batch if c.nbs is None else c.nbs,
            optimizer=c.optimizer,
            noval=c.noval,
            hyp=hyp,
            device=c.device,
            workers=c.workers,
            project=str(out.parent),
            name=out.name,
            exist_ok=True,
            seed=c.seed,
            cache=c.cache,
            plots=c.plots,
            progress=c.progress,
            bn_recal_batches=c.bn_recal,
            ema_plan=ema_plan,
        )
        return train_or_resume(cfg, callbacks)

    def _distillation(self) -> list:
        """The distillation callback of every training phase (by path: resumable by name)."""
        c = self.config
        return [DistillationCallback(c.teacher or c.weights, c.distill_weight)] if c.distill else []

    def evaluate(self, model_or_path, label: str) -> dict:
        """mAP50, mAP50-95, precision and recall of a model (or checkpoint) on the data's val split."""
        from ..evaluation.validator import Validator

        if not hasattr(self, "_validator"):
            self._validator = Validator(self.config.data, imgsz=self.config.imgsz, batch_size=self.config.batch)
        model = load_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
        m = self._validator(model, self.config.device or "cpu", progress=False)
        LOGGER.info("%s: mAP50 %.4f, mAP50-95 %.4f", label, m["mAP50"], m["mAP50-95"])
        return {"mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"], "precision": m["precision"], "recall": m["recall"]}

    def cost(self, model) -> dict:
        """Parameters and GFLOPs at the run's image size."""
        return {"params": count_params(model), "gflops": gflops(model, self.config.imgsz)}

    def check_inputs(self):
        """Everything a run will read, checked before any work starts; returns the dense model."""
        from ..data.config import load_data_config
        from ..pruning.groups import bottlenecks
        from ..training import load_hyp

        c = self.config
        dense_model = load_model(c.weights)
        load_data_config(c.data)
        load_hyp(c.hyp)
        available = sum(b.shortcut for b in bottlenecks(dense_model))
        if c.layers > available:
            raise ConfigError(f"--layers {c.layers}: {Path(c.weights).name} has only {available} shortcut Bottlenecks")
        for option, paths in (("--teacher", [c.teacher] if c.teacher else []), ("--reference", c.references)):
            for path in paths:
                if not Path(path).is_file():
                    raise ConfigError(f"{option}: file not found: {path}")
        for path in [c.teacher] if c.teacher else []:
            load_model(path)
        for ref in c.references:
            load_model(ref)
        return dense_model

    def run(self) -> dict:
        c = self.config
        t0 = time.time()
        dense_model = self.check_inputs()
        if self.state["dense"] is None:
            self.state["dense"] = {
                "name": Path(c.weights).stem,
                **self.cost(dense_model),
                **self.evaluate(dense_model, "dense"),
            }
            self._save_state()
        if c.target_latency_ms and "latency_budget" not in self.state["dense"]:
            self.state["dense"]["latency_budget"] = self.latency_budget(dense_model)
            self._save_state()
        if c.per_layer_ratio is None and "per_layer_ratio" not in self.state["dense"]:
            self.state["dense"]["per_layer_ratio"] = self.run_floor(dense_model)
            self._save_state()
        dense = self.state["dense"]
        current, kept = Path(c.weights), None
        for r in range(1, c.iterations + 1):
            rdir = self.dir / f"round{r}"
            entry = self._round_entry(r)
            current = self._run_round(r, rdir, entry, current, dense, dense_model)
            if self._guard_stops(r, entry, dense):
                break
            kept = current
        final = self.dir / "final.safetensors"
        shutil.copyfile(kept or current, final)
        self.state["time_s"] = self.state.get("time_s", 0) + time.time() - t0
        self._save_state()
        return self.report(final)

    def parity(self, final: Path) -> dict:
        """`pruned-yolo parity` of the final and the dense model (--parity): every runtime scored,
        timed and compared with PyTorch; a disagreement is reported, not raised."""
        from ..export.parity import parity_report

        c = self.config
        report = parity_report(
            final, c.data, c.imgsz, compare=[c.weights], threads=c.threads, runs=max(c.latency_runs, 1),
            batch=c.batch, workers=2 if c.workers is None else c.workers, workdir=self.dir / "parity",
        )  # fmt: skip
        for failure in report["failures"]:
            LOGGER.warning("parity: %s", failure)
        return report

    def run_floor(self, dense_model) -> float:
        """The run's default floor over the dense widths: the latency plan's, or the one that suits the
        final budget, fitted on the dense model so that the floors leave the ranking room."""
        c, dense = self.config, self.state["dense"]
        if c.target_latency_ms:
            floor = dense["latency_budget"]["per_layer_ratio"]
        else:
            pruner = Pruner(dense_model, c.importance, c.round_to, imgsz=c.imgsz, group_normalize=c.group_normalize)
            floor = pruner.budget_floor(**c.round_budget(dense, c.iterations))
        LOGGER.info("per-layer floor %.3g of the dense widths (the budget's; --per-layer-ratio to set it)", floor)
        return floor

    def latency_budget(self, dense_model) -> dict:
        """--target-latency-ms as a GFLOPs budget: the dense model pruned to the latency measured here.

        `prune_to_latency` (per-block latency table of this machine's ONNX Runtime, measured
        correction) plans on the dense model's ranking; the GFLOPs of that model become the
        run's budget. The final model's latency is measured again in the report."""
        from ..pruning import prune_to_latency

        c = self.config
        pruned, rep = prune_to_latency(
            dense_model, c.target_latency_ms, imgsz=c.imgsz, threads=c.threads, importance=c.importance,
            round_to=c.round_to, group_normalize=c.group_normalize, per_layer_ratio=c.per_layer_ratio,
        )  # fmt: skip
        lat = rep["latency"]
        budget = {
            "target_ms": c.target_latency_ms,
            "dense_ms": lat["dense_ms"],
            "planned_ms": lat["measured_ms"],
            "gflops": gflops(pruned, c.imgsz),
            "per_layer_ratio": rep["settings"]["per_layer_ratio"],  # the floor the budget was planned with
            "threads": lat["threads"],
        }
        LOGGER.info(
            "latency target %.2f ms (dense %.2f ms): the dense model pruned to it measures %.2f ms at %.3f GFLOPs, "
            "the budget of this run",
            budget["target_ms"], budget["dense_ms"], budget["planned_ms"], budget["gflops"],
        )  # fmt: skip
        return budget

    def int8_export(self, float_onnx: Path) -> dict:
        """INT8 quantization of the final ONNX export (`--int8`), scored and timed against it."""
        from ..benchmark import onnx_latency_ms
        from ..evaluation.validator import Validator
        from ..export import OnnxModel, quantize_onnx

        c = self.config
        path = quantize_onnx(float_onnx, float_onnx.with_name("final_int8.onnx"), c.data, c.imgsz)
        scores = {}
        for key, onnx in (("float32", float_onnx), ("int8", path)):
            model = OnnxModel(onnx, c.threads)
            validator = Validator(c.data, imgsz=c.imgsz, batch_size=c.batch, letterbox=model.letterbox_mode())
            m = validator(model, "cpu", progress=False)
            scores[key] = {"mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"]}
        runs = max(c.latency_runs, 1)
        lat = onnx_latency_ms({"float32": float_onnx, "int8": path}, c.imgsz, runs, c.threads, self.dir / "latency")
        LOGGER.info(
            "INT8: mAP50-95 %.4f (float32 %.4f), ONNX Runtime %.2f ms (float32 %.2f ms)",
            scores["int8"]["mAP50-95"], scores["float32"]["mAP50-95"], lat["int8"], lat["float32"],
        )  # fmt: skip
        return {
            "onnx": str(path),
            **scores["int8"],
            "latency_ms": lat["int8"],
            "float32": {**scores["float32"], "latency_ms": lat["float32"]},
            "letterbox": "square",
        }

    def report(self, final: Path) -> dict:
        """Reference models, ONNX Runtime latency and the final ONNX export; writes report.*"""
        from ..benchmark import onnx_latency_ms
        from ..export.onnx import export_onnx
        from .report import write_report

        c, state, out = self.config, self.state, self.dir
        dense = dict(state["dense"], name=f"{state['dense']['name']} (dense)")
        guard = state.get("guard")
        rounds = [dict(r, name=f"round {r['round']}") for r in state["rounds"] if "mAP50-95" in r]
        final_round = rounds[guard["final_round"] - 1] if guard else rounds[-1]
        references = []
        for ref in c.references:
            model = load_model(ref)
            stem = Path(ref).stem
            references.append({"name": stem, "weights": str(ref), **self.cost(model), **self.evaluate(model, stem)})
        paths = {"dense": Path(c.weights)} | {
            f"round{r['round']}": out / f"round{r['round']}" / "model.safetensors" for r in rounds
        }
        paths |= {f"ref_{i}": Path(ref["weights"]) for i, ref in enumerate(references)}
        if c.latency_runs > 0:
            (out / "latency").mkdir(parents=True, exist_ok=True)
            lat = onnx_latency_ms(paths, c.imgsz, c.latency_runs, c.threads, out / "latency")
            for row, key in [(dense, "dense"), *((r, f"round{r['round']}") for r in rounds)]:
                row["latency_ms"] = lat[key]
            for i, ref in enumerate(references):
                ref["latency_ms"] = lat[f"ref_{i}"]
        export_onnx(load_model(final), out / "final.onnx", c.imgsz, 1, source=final.name)
        int8 = self.int8_export(out / "final.onnx") if c.int8 else None
        parity = self.parity(final) if c.parity else None
        report = {
            "config": state["config"],
            "dense": dense,
            "references": references,
            "rounds": rounds,
            "final": {
                "checkpoint": str(final),
                "onnx": str(out / "final.onnx"),
                "round": final_round["round"],
                **{k: final_round[k] for k in ("params", "gflops", "mAP50", "mAP50-95") if k in final_round},
                "latency_ms": final_round.get("latency_ms"),
                "int8": int8,
            },
            "guard": guard,
            "parity": parity,
            "latency_target": self._latency_verdict(final_round),
            "time_s": state.get("time_s"),
        }
        title = f"{Path(c.weights).name} on {Path(c.data).name} ({c.imgsz} px)"
        return write_report(report, out, title)

    def _latency_verdict(self, final_round: dict) -> dict | None:
        """--target-latency-ms: the final model's measured latency against the target."""
        budget = self.state["dense"].get("latency_budget")
        if not budget:
            return None
        measured = final_round.get("latency_ms")
        target = budget["target_ms"]
        return {
            **budget,
            "measured_ms": measured,
            "met": None if measured is None else measured <= target,
        }

    def _guard_stops(self, r: int, entry: dict, dense: dict) -> bool:
        """--max-map-drop: True when round r fell more than P points below the dense model.

        The final model is then the last round within P (round 1 if none is, flagged as such)."""
        limit = self.config.max_map_drop
        if limit is None:
            return False
        drop = dense["mAP50-95"] - entry["mAP50-95"]
        if drop <= limit:
            return False
        kept = r - 1 if r > 1 else 1
        self.state["guard"] = {
            "max_map_drop": limit,
            "stopped_at_round": r,
            "drop": round(drop, 4),
            "final_round": kept,
            "met": r > 1,
        }
        self._save_state()
        LOGGER.warning(
            "accuracy guard: round %d is %.4f mAP50-95 below the dense model (limit %.4f); %s",
            r,
            drop,
            limit,
            f"stopping, final = round {kept}" if r > 1 else "no round is within the limit, final = round 1",
        )
        return True

    def _run_round(self, r: int, rdir: Path, entry: dict, current: Path, dense: dict, dense_model) -> Path:
        c = self.config
        t0 = time.time()
        # 1. sparsity training
        sparse = current
        # only a params target is relative to the round's model: load it just for that
        current_params = count_params(load_model(current)) if c.target_params_ratio else None
        prune_kwargs = c.prune_kwargs(dense, r, current_params)
        if c.sparsity_epochs > 0:
            sparse = rdir / "sparsity" / "weights" / "last.safetensors"
            if not self._done(f"round{r}/sparsity"):
                sp = c.sparsity_config(prune_kwargs)
                callbacks = [SparsityCallback(sp, c.plots), *self._distillation()]
                self._train(
                    current,
                    rdir / "sparsity",
                    c.sparsity_epochs,
                    callbacks,
                    bn_lr_mult=c.bn_lr_mult,
                    lr=c.phase_lr(r, "sparsity"),
                )
                self._mark(f"round{r}/sparsity")
        # 2. pruning to the round's budget (and the score right after it, before fine-tuning)
        pruned_path = rdir / "pruned.safetensors"
        if not self._done(f"round{r}/prune"):
            model = load_model(sparse)
            if c.sparsity_epochs > 0:
                entry["sparse"] = self.evaluate(model, f"round {r} after sparsity training")
            pruned, report = prune(model, **prune_kwargs, bias_compensation=c.bias_compensation)
            save_checkpoint(pruned, pruned_path)
            entry["budget"] = {k: v for k, v in prune_kwargs.items() if k in ROUND_BUDGET_KEYS}
            entry["prune"] = {
                "before": report["before"],
                "after": report["after"],
                "removed_bottlenecks": report["removed_bottlenecks"],
            }
            entry["pruned"] = self.evaluate(pruned, f"round {r} pruned, before fine-tuning")
            self._mark(f"round{r}/prune")
        # 3. fine-tuning
        result = pruned_path
        if c.finetune_epochs > 0:
            result = rdir / "finetune" / "weights" / "last.safetensors"
            if not self._done(f"round{r}/finetune"):
                self._train(
                    pruned_path,
                    rdir / "finetune",
                    c.finetune_epochs,
                    self._distillation(),
                    lr=c.phase_lr(r, "finetune"),
                    ema_plan=c.finetune_ema,
                )
                self._mark(f"round{r}/finetune")
        # 4. evaluation of the round's result
        out = rdir / "model.safetensors"
        if not self._done(f"round{r}/evaluate"):
            model = load_model(result)
            save_checkpoint(model, out)
            entry.update(self.cost(model))
            entry.update(self.evaluate(model, f"round {r} result"))
            entry["time_s"] = entry.get("time_s", 0) + time.time() - t0
            self._mark(f"round{r}/evaluate")
        return out


def compress(config: CompressConfig, resume_dir: str | Path | None = None) -> dict:
    """Run a compress job (or resume the one in `resume_dir`); returns the report dict."""
    return Compressor(config, resume_dir).run()
