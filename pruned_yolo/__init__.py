"""pruned-yolo: make YOLO detectors small and fast by structured pruning.

Python API entry points:

    from pruned_yolo import load_model, save_checkpoint, build_model
    model = load_model("yolov5s.pt")          # official ultralytics or our .safetensors
    save_checkpoint(model, "yolov5s.safetensors")
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402

# torch's OpenMP threads busy-wait by default; on a small, shared CPU (data-loader workers,
# other processes) they spin against the threads they wait for: training steps measured
# 5-20x slower on 2 cores. Passive waiting has to be chosen before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import convert_checkpoint, load_model, save_checkpoint  # noqa: E402
from .models import YOLO, build_model  # noqa: E402

__all__ = ["YOLO", "__version__", "build_model", "convert_checkpoint", "load_model", "save_checkpoint"]
