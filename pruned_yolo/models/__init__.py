"""YOLOv5 models: explicit-width modules, a registry, YAML expansion and the detector."""

from .build import build_model, initialize_weights, replace_detect_head
from .config import arch_from_cfg, available_configs, load_model_cfg
from .detect import Detect
from .modules import C3, SPP, SPPF, Bottleneck, BottleneckCSP, Concat, Conv, Focus, Upsample
from .registry import get_module, register_module, registered_modules
from .yolo import ARCH_FORMAT, YOLO, check_arch

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
    "initialize_weights",
    "load_model_cfg",
    "register_module",
    "registered_modules",
    "replace_detect_head",
]
