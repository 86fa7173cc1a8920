"""pruned-yolo: make YOLO detectors small and fast by structured pruning.

Python API entry points:

    from pruned_yolo import load_model, save_checkpoint, build_model
    model = load_model("yolov5s.pt")          # official ultralytics or our .safetensors
    save_checkpoint(model, "yolov5s.safetensors")
"""

__version__ = "0.1.0"

from .checkpoint import convert_checkpoint, load_model, save_checkpoint  # noqa: E402
from .models import YOLO, build_model  # noqa: E402

__all__ = ["YOLO", "__version__", "build_model", "convert_checkpoint", "load_model", "save_checkpoint"]
