"""Inference: NMS without torchvision and batched prediction on images."""

from .nms import batched_nms, non_max_suppression
from .predictor import Detections, predict, resolve_source

__all__ = ["Detections", "batched_nms", "non_max_suppression", "predict", "resolve_source"]
