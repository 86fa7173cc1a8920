"""Fresh models: from a YAML config, YOLOv5's initialisation, and a new Detect head for other classes."""

from __future__ import annotations

from .config import arch_from_cfg
from .yolo import YOLO


def build_model(cfg, nc: int | None = None) -> YOLO:
    """Build a freshly initialised model from a YAML name/path/dict, with prior-based biases."""
    model = YOLO(arch_from_cfg(cfg, nc))
    initialize_weights(model)
    model.detect.initialize_biases()
    return model


def initialize_weights(model) -> None:
    """YOLOv5 init: PyTorch default conv init, BN eps/momentum already set by the modules."""
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True


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
