"""Training callbacks: how later stages (sparsity, soft masks, distillation) plug into the loop.

Subclass `Callback`, override the events you need and pass instances to
`Trainer(config, callbacks=[...])`. Every event receives the `Trainer` itself; read and
modify its attributes (listed per event below). Callbacks run on **every** rank in
distributed training (gradients and weights must change identically everywhere); use
`trainer.is_main` for anything that logs or writes files. A callback's own state is not
saved in the resume state: derive it from `trainer.epoch` / `trainer.ni` (as a sparsity
schedule naturally does) so that `--resume` reproduces it.

Events, in the order they fire:

``on_train_start(trainer)``
    Once, after the model, optimizer, scheduler, EMA, data loader, loss and validator are
    built and (on `--resume`) their states restored, before the first epoch. Available:
    `model` (possibly DDP-wrapped; `trainer.net` is the bare model), `optimizer`,
    `scheduler`, `scaler`, `ema`, `hyp`, `config`, `start_epoch`, `epochs`, `nb`
    (batches per epoch), `nw` (warm-up iterations), `save_dir`.

``on_epoch_start(trainer)``
    At the start of every epoch, after `model.train()`, `sampler.set_epoch` and
    `dataset.set_epoch`, before the first batch. `trainer.epoch` is the 0-based epoch.

``on_batch_start(trainer)``
    Before the forward pass of each batch. `batch_index` (in the epoch), `ni` (global
    iteration), `imgs` (float, 0..1, on the device), `targets`, `metas` (per-image dicts
    from the dataset), `accumulate`.

``on_loss(trainer)``
    After the forward pass and the detection loss, still inside the autocast context,
    before backward. `preds` (raw training outputs), `loss` (scalar, already multiplied by
    the batch size and by the world size in DDP, as YOLOv5 does) and `loss_items` (box,
    obj, cls, detached). A callback may replace `trainer.loss` (e.g. add a distillation
    term) and record extra values in `trainer.extra_loss_items` (name -> float).

``after_backward(trainer)``
    Only on iterations where the optimizer steps (every `accumulate` batches and at the
    end of each epoch): after all accumulated `backward()` calls and after
    `scaler.unscale_(optimizer)`, so `.grad` holds true, unscaled gradients; before
    `clip_grad_norm_` (max norm 10) and `optimizer.step()`. This is where a sparsity
    subgradient (`grad += s * sign(gamma)`) goes. `trainer.optimizer_steps` counts steps so far.

``on_optimizer_step(trainer)``
    Right after `scaler.step`, `scaler.update`, `zero_grad` and the EMA update.

``on_batch_end(trainer)``
    After every batch, whether the optimizer stepped or not. `mloss` holds the running
    mean of (box, obj, cls) over the epoch so far.

``on_train_epoch_end(trainer)``
    After the last batch of the epoch and its optimizer step, before the lr scheduler
    step, validation and checkpointing. Changes to the weights here (e.g. a soft mask)
    are seen by validation and saved; note that `trainer.ema.ema` is a separate copy.

``on_epoch_end(trainer)``
    After validation (main rank: `metrics`, `fitness`, `best_fitness`, `is_best`), before
    the row is appended to `results.csv` and the checkpoints are written. Keys added to
    `trainer.epoch_log` (a dict) become extra `results.csv` columns. Set `trainer.stop = True`
    to end training after this epoch.

``on_fit_end(trainer)``
    Once after the last epoch, when `best.safetensors` / `last.safetensors`, `results.csv`
    and `results.png` are final. `trainer.final_metrics` holds the last validation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

EVENTS = (
    "on_train_start",
    "on_epoch_start",
    "on_batch_start",
    "on_loss",
    "after_backward",
    "on_optimizer_step",
    "on_batch_end",
    "on_train_epoch_end",
    "on_epoch_end",
    "on_fit_end",
)


class Callback:
    """Base class with a no-op method per event (see the module docstring).

    A callback registered by name (`@register_callback("name")`) that returns its constructor
    arguments from `spec_args()` is recorded in the run's `TrainConfig.callbacks` and rebuilt
    by `Trainer.resume`, so that a run resumes the same from Python, the CLI or `compress`.
    """

    registered_name: ClassVar[str | None] = None

    def spec_args(self) -> dict[str, Any] | None:
        """JSON-able keyword arguments that rebuild this callback, or None (not resumable)."""
        return None

    def on_train_start(self, trainer) -> None:
        pass

    def on_epoch_start(self, trainer) -> None:
        pass

    def on_batch_start(self, trainer) -> None:
        pass

    def on_loss(self, trainer) -> None:
        pass

    def after_backward(self, trainer) -> None:
        pass

    def on_optimizer_step(self, trainer) -> None:
        pass

    def on_batch_end(self, trainer) -> None:
        pass

    def on_train_epoch_end(self, trainer) -> None:
        pass

    def on_epoch_end(self, trainer) -> None:
        pass

    def on_fit_end(self, trainer) -> None:
        pass


class CallbackList:
    """Calls an event on every callback, in the order they were given."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks: list[Callback] = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"{cb!r} is not a pruned_yolo.training.Callback")

    def append(self, cb: Callback) -> None:
        if not isinstance(cb, Callback):
            raise TypeError(f"{cb!r} is not a pruned_yolo.training.Callback")
        self.callbacks.append(cb)

    def fire(self, event: str, trainer) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown training event {event}")
        for cb in self.callbacks:
            getattr(cb, event)(trainer)

    def __len__(self) -> int:
        return len(self.callbacks)


CALLBACKS: dict[str, type[Callback]] = {}
# modules whose callbacks register themselves on import (imported on demand: training never
# imports the later stages at module level)
CALLBACK_MODULES = ("pruned_yolo.compress",)


def register_callback(name: str):
    """Class decorator: make a Callback subclass rebuildable from `{"name": name, "args": {...}}`."""

    def deco(cls: type[Callback]) -> type[Callback]:
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            raise TypeError(f"{cls!r} is not a Callback subclass")
        cls.registered_name = name
        CALLBACKS[name] = cls
        return cls

    return deco


def callback_spec(cb: Callback) -> dict[str, Any] | None:
    """`{"name", "args"}` of a registered callback (None for one that cannot be rebuilt)."""
    args = cb.spec_args() if cb.registered_name else None
    return None if args is None else {"name": cb.registered_name, "args": args}


def build_callback(spec: dict[str, Any]) -> Callback:
    """The callback a spec describes."""
    from ..errors import ConfigError

    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in CALLBACKS:
        import importlib

        for module in CALLBACK_MODULES:
            importlib.import_module(module)
    if name not in CALLBACKS:
        raise ConfigError(f"unknown training callback {name!r} (registered: {', '.join(sorted(CALLBACKS))})")
    return CALLBACKS[name](**spec.get("args", {}))
