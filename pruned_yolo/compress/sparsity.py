"""Sparsity training of BatchNorm scales (Pruned-YOLO step 1), as a training callback.

Rules (NOTES section 1):

* after backward and AMP unscaling, and before gradient clipping, every BatchNorm weight
  gradient gets the L1 subgradient `s_e * sign(gamma)` (the `after_backward` event);
* C, cosine decay: at epoch e of E, `s_e = s * (0.2 + 0.8 * (1 + cos(pi * e / E)) / 2)`;
  during the warm-up iterations the factor ramps linearly from 0;
* S, soft mask: every `mask_period` epochs (never at epoch 0), channels with
  `|gamma| <= alpha * mean(|gamma|)` over all BN layers get gamma, beta, running mean and
  variance multiplied by 0.1 (soft; `hard` multiplies by 0). Masked channels can grow back.
  `mask_stats="keep"` (default) leaves the running statistics alone so that the masked
  channel's eval output is exactly 0.1 of what it was (scaling them too makes it
  sqrt(0.1) of it plus a shift); "scale" is the literal rule. Measured on yolov5s at 320
  (coco128, distillation, s = 0): one soft mask at epoch 2 (17 channels) took the val
  mAP50-95 from 0.387 to 0.295 (keep) / 0.297 (scale): the masked channels have small
  gamma but large beta, i.e. a constant output that the consumers rely on.
* beyond the paper, `mask_target="budget"` (compress only): the mask takes exactly the
  channels that pruning the EMA model to the round's budget would remove (same importance,
  rounding and floors as the pruning step), so the network learns to do without them
  before they go and pruning right after sparsity training removes near-silent channels.
  `mask="fade"` scales that plan down to 0 by a cosine over the phase's first `fade_end`;
  `mask="gradual"` instead grows the plan: at progress p the cut is the budget's removal times
  `1 - (1 - p / fade_end)^3` (the cubic schedule of gradual magnitude pruning, Zhu & Gupta
  2018), re-planned 8 times per epoch on the EMA (the channels already off rank last, so the
  plan only grows), and each newly planned channel is switched off at once: the least
  important channels go first, and the later choices are made by the network that has
  adapted to their absence.

Calibration (yolov5s, 320 px, coco128, hyp finetune, batch 16 = nbs): the loss gradient
of a BN gamma has median 1.3e-3; s = 0.02 with a BatchNorm lr x20 keeps the model
(0.40 -> 0.36 after 10 epochs, masks included) but barely moves the gammas; with a
BatchNorm lr x200-2000 (s 0.005-0.2) the gammas move (median 0.98 -> 0.59-0.83 in 8
epochs) and the model collapses (val mAP50-95 < 0.03). A short run on few images cannot
make the histogram bimodal without losing the model: give sparsity training epochs.

Everything depends only on the epoch, the iteration and the weights, so every DDP rank
does the same thing and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..pruning.masks import all_gammas, apply_soft_mask, bn_layers, bn_mask_threshold, compute_mask, gamma_stats
from ..training.hooks import Callback, register_callback

LOGGER = logging.getLogger("pruned_yolo")

SCHEDULES = ("cosine", "constant")
MASKS = ("soft", "hard", "fade", "gradual", "none")
BUDGET_MASKS = ("fade", "gradual")  # masks that follow the round's pruning plan
GRADUAL_REPLANS_PER_EPOCH = 8
MASK_FACTORS = {"soft": 0.1, "hard": 0.0}
MASK_STATS = ("keep", "scale")
MASK_TARGETS = ("threshold", "budget")
# log10 |gamma| bins for the histogram plot
HIST_EDGES = np.linspace(-4.0, 1.0, 51)


@dataclass
class SparsityConfig:
    """Settings of `--sparsity`; stored in the run's config so that `--resume` restores them."""

    s: float
    schedule: str = "cosine"
    mask: str = "soft"
    mask_period: int = 2
    mask_alpha: float = 0.2
    mask_stats: str = "keep"  # soft mask: "keep" the running stats or "scale" them too
    mask_target: str = "threshold"  # "threshold" (alpha * mean|gamma|) or "budget" (the pruning plan)
    budget: dict | None = None  # prune() keyword arguments of the round, for mask_target "budget"
    fade_end: float = 0.6  # mask "fade": fraction of the phase after which the planned channels are 0

    def __post_init__(self):
        if not (math.isfinite(self.s) and self.s >= 0):
            raise ConfigError(f"--sparsity must be a number >= 0, got {self.s}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--sparsity-schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.mask not in MASKS:
            raise ConfigError(f"--mask must be one of {', '.join(MASKS)}, got {self.mask!r}")
        if self.mask_period < 1:
            raise ConfigError(f"--mask-period must be >= 1, got {self.mask_period}")
        if self.mask_stats not in MASK_STATS:
            raise ConfigError(f"--mask-stats must be one of {', '.join(MASK_STATS)}, got {self.mask_stats!r}")
        if self.mask_target not in MASK_TARGETS:
            raise ConfigError(f"--mask-target must be one of {', '.join(MASK_TARGETS)}, got {self.mask_target!r}")
        if self.mask_target == "budget" and not self.budget:
            raise ConfigError("--mask-target budget needs a pruning budget (compress sets it per round)")
        if self.mask in BUDGET_MASKS and self.mask_target != "budget":
            raise ConfigError(
                f"--mask {self.mask} needs --mask-target budget (it switches off the channels pruning will remove)"
            )
        if not 0 < self.fade_end <= 1:  # (NaN fails too)
            raise ConfigError(f"--fade-end must be in (0, 1], got {self.fade_end}")
        if not 0 <= self.mask_alpha < 1:
            raise ConfigError(f"--mask-alpha must be in [0, 1), got {self.mask_alpha}")

    def to_json(self) -> dict:
        return asdict(self)


def sparsity_factor(s: float, epoch: int, epochs: int, schedule: str = "cosine") -> float:
    """`s_e` of epoch `epoch` (0-based) out of `epochs`."""
    if schedule == "constant":
        return s
    return s * (0.2 + 0.8 * (1 + math.cos(math.pi * epoch / epochs)) / 2)


def fade_scale(progress: float, end: float) -> float:
    """Scale of a fading channel at `progress` (0..1) of the phase: cosine from 1 to 0 at `end`."""
    if progress >= end:
        return 0.0
    return 0.5 * (1 + math.cos(math.pi * progress / end))


def gradual_fraction(progress: float, end: float) -> float:
    """Fraction of the budget's cut made at `progress` (0..1) of the phase: cubic, complete at `end`."""
    return 1.0 - (1.0 - min(progress / end, 1.0)) ** 3


def partial_budget(budget: dict, fraction: float, base_gflops: float) -> dict:
    """`budget` (prune() keyword arguments) with only `fraction` of its cut: a target between the
    dense cost (fraction 0) and the budget's (1). `base_gflops`: the dense model's, for a GFLOPs target."""
    out = dict(budget)
    if "target_gflops" in out:
        out["target_gflops"] = base_gflops - (base_gflops - out["target_gflops"]) * fraction
    for key in ("target_flops_ratio", "target_params_ratio"):
        if key in out:
            out[key] = 1.0 - (1.0 - out[key]) * fraction
    return out


def warmup_ramp(ni: int, nw: int) -> float:
    """Linear ramp from 0 to 1 over the `nw` warm-up iterations."""
    return 1.0 if nw <= 0 or ni >= nw else ni / nw


@torch.no_grad()
def add_l1_subgradient(model: torch.nn.Module, factor: float) -> None:
    """grad(gamma) += factor * sign(gamma) for every BatchNorm of `model` (in place)."""
    if factor == 0:
        return
    for bn in bn_layers(model).values():
        if bn.weight.grad is not None:
            bn.weight.grad.add_(torch.sign(bn.weight), alpha=factor)


@torch.no_grad()
def soft_mask_step(
    models: list[torch.nn.Module], alpha: float, factor: float, scale_stats: bool = False
) -> tuple[float, int]:
    """Mask (by `factor`) the channels under `alpha * mean|gamma|` of models[0], in all `models`.

    The threshold and mask come from the first model (the one being trained) and are applied to
    every model given (e.g. also its EMA copy). Returns (threshold, channels masked).
    """
    thr = bn_mask_threshold(models[0], alpha)
    mask = compute_mask(models[0], threshold=thr)
    n = 0
    for i, m in enumerate(models):
        masked = apply_soft_mask(m, mask, factor, scale_stats)
        n = masked if i == 0 else n
    return thr, n


@torch.no_grad()
def budget_mask_step(models: list[torch.nn.Module], budget: dict, factor: float, scale_stats: bool = False) -> int:
    """Mask (by `factor`) the channels that `prune(models[0], **budget)` would remove, in all `models`.

    Returns the number of BN channels masked in models[0].
    """
    from ..pruning.pruner import equivalent_hard_mask

    mask, _, _ = equivalent_hard_mask(models[0], **budget)
    counts = [apply_soft_mask(m, mask, factor, scale_stats) for m in models]
    return counts[0]


@register_callback("sparsity")
class SparsityCallback(Callback):
    """Adds the sparsity penalty and the soft mask to a `Trainer` run."""

    def __init__(self, config: SparsityConfig | dict, plots: bool = False):
        self.config = config if isinstance(config, SparsityConfig) else SparsityConfig(**config)
        self.plots = plots
        self.factor = 0.0
        self.histograms: list[dict] = []
        self.fade_plan = None  # mask "fade": the channels being faded (replanned every epoch)
        self.fade_last = 1.0  # their scale after the last optimizer step
        self.base_gflops = 0.0  # mask "gradual": the dense model's GFLOPs (masked channels still count)

    def spec_args(self) -> dict:
        return {"config": self.config.to_json(), "plots": self.plots}

    # -- events ---------------------------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        if self.config.mask == "gradual" and "target_gflops" in self.config.budget:
            from ..utils.torch_utils import gflops

            self.base_gflops = gflops(trainer.ema.ema, self.config.budget.get("imgsz", 640))
        if trainer.is_main and trainer.save_dir is not None:
            path = Path(trainer.save_dir) / "gamma_hist.json"
            if path.is_file():  # resumed run: keep the epochs already recorded
                self.histograms = [h for h in json.loads(path.read_text()) if h["epoch"] <= trainer.start_epoch]
            if trainer.start_epoch == 0:
                self.histograms = [self._histogram(trainer, 0)]

    def on_epoch_start(self, trainer) -> None:
        cfg = self.config
        self.factor = sparsity_factor(cfg.s, trainer.epoch, trainer.epochs, cfg.schedule)
        if cfg.mask == "fade":
            self._plan_fade(trainer)
            return
        if cfg.mask == "gradual":  # (re)planned here too, so that a resumed run continues the same cut
            self._plan_gradual(trainer, trainer.epoch / trainer.epochs)
            self._switch_off(trainer)
            if trainer.is_main:
                n = sum(int((~k).sum()) for k in self.fade_plan.values())
                LOGGER.info("gradual mask: %d BN channels of the round's plan switched off", n)
            return
        if cfg.mask != "none" and trainer.epoch > 0 and trainer.epoch % cfg.mask_period == 0:
            factor, scale_stats = MASK_FACTORS[cfg.mask], cfg.mask_stats == "scale"
            if cfg.mask_target == "budget":  # planned on the EMA: the model that gets pruned
                n = budget_mask_step([trainer.ema.ema, trainer.net], cfg.budget, factor, scale_stats)
                if trainer.is_main:
                    LOGGER.info("%s mask: %d BN channels of the round's pruning plan scaled", cfg.mask, n)
                return
            thr, n = soft_mask_step([trainer.net, trainer.ema.ema], cfg.mask_alpha, factor, scale_stats)
            if trainer.is_main:
                LOGGER.info("%s mask: %d BN channels with |gamma| <= %.4g scaled", cfg.mask, n, thr)

    def after_backward(self, trainer) -> None:
        if self.factor:  # s = 0 (compress's default): no pass over every BatchNorm per step
            add_l1_subgradient(trainer.net, self.factor * warmup_ramp(trainer.ni, trainer.nw))

    def on_optimizer_step(self, trainer) -> None:
        if self.fade_plan is None:
            return
        if self.config.mask == "gradual":
            every = max(1, trainer.nb // GRADUAL_REPLANS_PER_EPOCH)
            if (trainer.ni + 1) % every == 0:
                self._plan_gradual(trainer, (trainer.ni + 1) / (trainer.epochs * trainer.nb))
            self._switch_off(trainer)  # at every step: off channels stay off (their gammas get gradients)
            return
        scale = fade_scale((trainer.ni + 1) / (trainer.epochs * trainer.nb), self.config.fade_end)
        ratio = scale / self.fade_last if self.fade_last > 0 else 0.0
        if ratio < 1.0:
            for m in (trainer.net, trainer.ema.ema):
                apply_soft_mask(m, self.fade_plan, ratio, scale_stats=False)
        self.fade_last = scale

    def on_epoch_end(self, trainer) -> None:
        model = trainer.ema.ema
        stats = gamma_stats(model, bn_mask_threshold(model, self.config.mask_alpha))
        log = {"sparsity/s": self.factor, "sparsity/frac_below_thr": stats["fraction_below"]}
        log.update({f"sparsity/gamma_q{q}": v for q, v in stats["quantiles"].items()})
        trainer.epoch_log.update(log)
        if trainer.is_main and trainer.save_dir is not None:
            self.histograms.append(self._histogram(trainer, trainer.epoch + 1))
            path = Path(trainer.save_dir) / "gamma_hist.json"
            path.write_text(json.dumps(self.histograms))

    def on_fit_end(self, trainer) -> None:
        if self.plots and trainer.is_main and trainer.save_dir is not None and self.histograms:
            try:
                plot_gamma_histograms(self.histograms, Path(trainer.save_dir) / "gamma_hist.png")
            except Exception as e:  # noqa: BLE001 (a plot must never fail a finished run)
                LOGGER.warning("WARNING gamma_hist.png not written (%s)", e)

    # -- helpers --------------------------------------------------------------------------------
    def _plan_fade(self, trainer) -> None:
        """Plan the round's pruning on the EMA; its channels fade from here on.

        Derived from the epoch and the weights only (the channels already faded rank last), so
        a resumed run replans the same channels.
        """
        from ..pruning.pruner import equivalent_hard_mask

        self.fade_plan, _, _ = equivalent_hard_mask(trainer.ema.ema, **self.config.budget)
        self.fade_last = fade_scale(trainer.epoch / trainer.epochs, self.config.fade_end)
        if self.fade_last == 0.0:  # past the fade: the plan stays switched off
            for m in (trainer.net, trainer.ema.ema):
                apply_soft_mask(m, self.fade_plan, 0.0)
        if trainer.is_main:
            n = sum(int((~k).sum()) for k in self.fade_plan.values())
            LOGGER.info("fade mask: %d BN channels planned for pruning, at %.3f of their scale", n, self.fade_last)

    def _plan_gradual(self, trainer, progress: float) -> None:
        """Plan `gradual_fraction(progress)` of the round's cut on the EMA (the model that gets pruned)."""
        from ..pruning.pruner import equivalent_hard_mask

        fraction = gradual_fraction(progress, self.config.fade_end)
        if fraction <= 0.0:
            self.fade_plan = {}
            return
        budget = partial_budget(self.config.budget, fraction, self.base_gflops)
        self.fade_plan, _, _ = equivalent_hard_mask(trainer.ema.ema, **budget)

    def _switch_off(self, trainer) -> None:
        for m in (trainer.net, trainer.ema.ema):
            apply_soft_mask(m, self.fade_plan, 0.0)

    @staticmethod
    def _histogram(trainer, epoch: int) -> dict:
        g = all_gammas(trainer.ema.ema).double().clamp_min(1e-12).log10().numpy()
        counts, _ = np.histogram(np.clip(g, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
        return {"epoch": epoch, "counts": counts.tolist()}


def plot_gamma_histograms(histograms: list[dict], path: str | Path) -> Path:
    """One line per epoch (dark = early, bright = late): the distribution of log10 |gamma|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    centers = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    cmap = plt.get_cmap("viridis")
    last = max(h["epoch"] for h in histograms) or 1
    for h in histograms:
        ax.plot(centers, h["counts"], color=cmap(h["epoch"] / last), lw=1.2, label=f"epoch {h['epoch']}")
    ax.set_xlabel("log10 |gamma|")
    ax.set_ylabel("BN channels")
    ax.set_title("BatchNorm scale distribution during sparsity training")
    if len(histograms) <= 12:
        ax.legend(fontsize=7, ncol=2)
    else:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, last))
        fig.colorbar(sm, ax=ax, label="epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
