"""YOLOv5 models: explicit-width modules, a registry, YAML expansion and the detector."""

from .config import arch_from_cfg, available_configs, load_model_cfg
from .detect import Detect
from .modules import C3, SPP, SPPF, Bottleneck, BottleneckCSP, Concat, Conv, Focus, Upsample
from .registry import get_module, register_module, registered_modules
from .yolo import ARCH_FORMAT, YOLO, check_arch


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


__all__ = [
    "ARCH_FORMAT",
    "YOLO",
    "C3",
    "SPP",
    "SPPF",
    "Bottleneck",
    "BottleneckCSP",
    "Concat",
    "Conv",
    "Detect",
    "Focus",
    "Upsample",
    "arch_from_cfg",
    "available_configs",
    "build_model",
    "check_arch",
    "get_module",
    "load_model_cfg",
    "register_module",
    "registered_modules",
]
