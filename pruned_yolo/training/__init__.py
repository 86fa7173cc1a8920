"""Training: the YOLOv5 loss, optimizer recipe, EMA, callbacks, resumable state and the loop.

from pruned_yolo.training import Trainer, TrainConfig, Callback
Trainer(TrainConfig(data="data.yaml", cfg="yolov5n", epochs=10, imgsz=320), callbacks=[...]).fit()
"""

from .config import EMA_PLANS, TrainConfig
from .hooks import CALLBACKS, EVENTS, Callback, CallbackList, build_callback, callback_spec, register_callback
from .hyp import load_hyp
from .loss import DetectionLoss
from .results import epoch_line
from .trainer import Trainer, train, train_or_resume

__all__ = [
    "CALLBACKS",
    "EMA_PLANS",
    "build_callback",
    "callback_spec",
    "register_callback",
    "EVENTS",
    "Callback",
    "CallbackList",
    "DetectionLoss",
    "TrainConfig",
    "Trainer",
    "epoch_line",
    "load_hyp",
    "train",
    "train_or_resume",
]
