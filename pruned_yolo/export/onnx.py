"""ONNX export of a detector, checked by the ONNX checker and by ONNX Runtime against torch.

The exported graph takes `images` (bs, 3, h, w) float in [0, 1] and returns `output0`, the
decoded predictions (bs, N, 5 + nc): xywh in input pixels, objectness and class scores
(sigmoid applied), i.e. exactly what `YOLO.forward` gives in eval mode before NMS.

We use the TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). With torch
2.13 the torch.export-based one (the default since 2.9) needs the extra package `onnxscript`;
tried with it (onnxscript 0.7.2), it gives the same 60 convolutions and bit-identical ONNX
Runtime outputs for yolov5s, but takes 3-10x longer (16 s static, 51 s dynamic) and prints
its progress, so it brings nothing for a plain conv net. The TorchScript exporter is
deprecated upstream: if a later torch removes it, switch to `dynamo=True` with onnxscript.
"""

from __future__ import annotations

import copy
import hashlib
import json
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import PrunedYoloError
from ..utils.files import atomic_path
from ..utils.torch_utils import count_params, gflops, prepare_for_inference, select_device

DEFAULT_OPSET = 17
MIN_OPSET = 9  # opsets 7 and 8 cannot express the nearest Upsample of YOLOv5 (measured with torch 2.13)
try:  # the newest opset this torch's exporter knows (23 in torch 2.13)
    from torch.onnx._constants import ONNX_MAX_OPSET as MAX_OPSET
except ImportError:  # pragma: no cover - private module moved
    MAX_OPSET = 20
INPUT_NAME = "images"
OUTPUT_NAME = "output0"


def hw_pair(imgsz: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """640 -> (640, 640); (480, 640) or [480, 640] -> (480, 640)."""
    if isinstance(imgsz, int):
        return imgsz, imgsz
    h, w = (list(imgsz) * 2)[:2] if len(imgsz) == 1 else imgsz
    return int(h), int(w)


def check_imgsz(model, imgsz) -> tuple[int, int]:
    """(h, w), each a positive multiple of the model's largest stride, else a clear error."""
    h, w = hw_pair(imgsz)
    s = int(model.stride.max())
    if h <= 0 or w <= 0 or h % s or w % s:
        raise PrunedYoloError(f"image size {h}x{w} must be a positive multiple of the model stride {s}")
    return h, w


def arch_hash(model) -> str:
    """Short fingerprint of the explicit architecture (widths and depths, not the weights)."""
    return hashlib.sha256(json.dumps(model.arch(), sort_keys=True).encode()).hexdigest()[:16]


def export_onnx(
    model,
    path: str | Path,
    imgsz: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    simplify: bool = False,
    half: bool = False,
    device: str | torch.device = "cpu",
    source: str | None = None,
) -> Path:
    """Export `model` (left untouched) to an ONNX file at `path` and return the path.

    BatchNorms are fused on a copy, and Detect returns the decoded (bs, N, 5 + nc) tensor.
    `dynamic` makes batch, height and width dynamic (the Detect grid follows the runtime
    shape). `half` exports FP16 weights and needs a CUDA device. The file carries metadata:
    class names, strides, image size, parameters, GFLOPs, an architecture hash and `source`.
    """
    import onnx

    if not (isinstance(opset, numbers.Integral) and MIN_OPSET <= opset <= MAX_OPSET):
        raise PrunedYoloError(f"ONNX opset {opset!r} is not supported: use {MIN_OPSET} to {MAX_OPSET}")
    if Path(path).is_dir():
        raise PrunedYoloError(f"{path} is a folder: give the path of the ONNX file to write")
    h, w = check_imgsz(model, imgsz)
    if batch < 1:
        raise PrunedYoloError(f"batch must be >= 1, got {batch}")
    device = select_device(device)
    if half and device.type != "cuda":
        raise PrunedYoloError("--half (FP16 export) needs a CUDA device; export FP32 on CPU")
    info = {"params": count_params(model), "gflops": round(gflops(model, (h, w)), 4)}
    m = prepare_for_inference(model, device, half)
    m.detect.export = True
    x = torch.zeros(batch, m.in_channels, h, w, device=device, dtype=torch.float16 if half else torch.float32)
    dynamic_axes = (
        {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "anchors"}}
        if dynamic
        else None
    )
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of the dynamo one (see module doc)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            m,
            (x,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        proto = onnx.load(str(tmp))
        if simplify:
            proto = _simplify(proto)
        meta = {
            "producer": f"pruned-yolo {__version__}",
            "names": json.dumps(list(model.names)),
            "nc": str(model.nc),
            "stride": json.dumps([int(s) for s in model.stride.tolist()]),
            "imgsz": json.dumps([h, w]),
            "batch": str(batch),
            "dynamic": json.dumps(bool(dynamic)),
            "half": json.dumps(bool(half)),
            "params": str(info["params"]),
            "gflops": str(info["gflops"]),
            "arch_hash": arch_hash(model),
            "source": str(source or model.meta.get("source", "")),
        }
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def _simplify(proto):
    try:
        import onnxslim
    except ImportError:
        raise PrunedYoloError("--simplify needs the optional package onnxslim (pip install onnxslim)") from None
    return onnxslim.slim(proto)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict of strings."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def ort_session(
    path: str | Path, threads: int | None = None, providers: list[str] | None = None, spinning: bool = True
):
    """An ONNX Runtime session: `threads` intra-op threads (default: all cores), one inter-op
    thread, sequential execution, all graph optimisations.

    `spinning=False` stops idle workers from busy-waiting after a run. Benchmarks that
    interleave several sessions need that: otherwise one session's spinning workers take
    the cores from the next session's run (measured here: 78 ms instead of 53 ms for
    yolov5s at 640 on 2 cores; with spinning off, 58 ms both interleaved and alone).
    """
    import os

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A natural-looking test image (smooth background, filled shapes), uint8 HWC BGR.

    Random noise alone keeps every activation in a narrow range; shapes and edges push
    objectness and class scores towards real detections, which is where errors show.
    """
    import cv2

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    im = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(4, 10)):
        color = [int(c) for c in rng.integers(0, 255, 3)]
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x2, y2 = (
            min(w, x1 + int(rng.integers(w // 10, w // 2 + 1))),
            min(h, y1 + int(rng.integers(h // 10, h // 2 + 1))),
        )
        if rng.random() < 0.5:
            cv2.rectangle(im, (x1, y1), (x2, y2), color, -1)
        else:
            center, axes = ((x1 + x2) // 2, (y1 + y2) // 2), (max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2))
            cv2.ellipse(im, center, axes, 0, 0, 360, color, -1)
    noise = rng.normal(0, 6, im.shape)
    return np.clip(im + noise, 0, 255).astype(np.uint8)


def test_inputs(batch: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    """Two float32 NCHW inputs in [0, 1]: uniform random pixels and synthetic images."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (batch, 3, h, w)).astype(np.float32) / 255
    scenes = np.stack([synthetic_image(h, w, seed + i)[..., ::-1].transpose(2, 0, 1) for i in range(batch)])
    return [noise, scenes.astype(np.float32) / 255]


test_inputs.__test__ = False  # not a pytest test


@dataclass(frozen=True)
class OnnxCheck:
    """How far ONNX Runtime's decoded output is from torch's, per kind of column.

    Boxes are compared in units of the input size (x, w divided by the width, y, h by the
    height): in pixels, float32 itself differs from float64 by about 1e-3 px on the
    widths of 400 px boxes (3 ppm), in torch as in ONNX Runtime, so an absolute pixel
    tolerance of 1e-3 would test rounding noise, not the export.

    With `float64=True`, `verify_onnx` also runs torch in float64 and reports how far
    torch float32 (`torch32_vs_fp64`) and ONNX Runtime (`ort_vs_fp64`) each are from it,
    the same way: an ill-conditioned model (activations in the hundreds) can exceed 1e-3
    in float32 whatever the runtime; then the two figures are of the same order, while an
    export fault would leave ORT far from float64 and torch float32 close to it.
    """

    max_abs: float  # over the raw output, boxes in pixels
    max_abs_boxes_px: float
    max_abs_boxes: float  # boxes / input size
    max_abs_scores: float  # objectness and class scores
    shape: tuple[int, ...]
    torch32_vs_fp64: float | None = None
    ort_vs_fp64: float | None = None

    @property
    def max_diff(self) -> float:
        """The figure compared with the tolerance: max over normalised boxes and scores."""
        return max(self.max_abs_boxes, self.max_abs_scores)

    def ok(self, tol: float = 1e-3) -> bool:
        return self.max_diff <= tol

    def __float__(self) -> float:
        return self.max_diff

    def __str__(self) -> str:
        text = (
            f"max |ORT - torch| {self.max_diff:.2e} (boxes / input size {self.max_abs_boxes:.2e}, "
            f"scores {self.max_abs_scores:.2e}; boxes in pixels {self.max_abs_boxes_px:.2e}) "
            f"on output {tuple(self.shape)}"
        )
        if self.torch32_vs_fp64 is not None:
            text += f"; vs float64 torch: torch float32 {self.torch32_vs_fp64:.2e}, ORT {self.ort_vs_fp64:.2e}"
        return text


def _diff(a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> tuple[float, float, float, float]:
    """(raw max, boxes px, boxes / input size, scores) of |a - b| on decoded outputs."""
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(d.max()), float(d[..., :4].max()), float((d[..., :4] / scale).max()), float(d[..., 4:].max())


@torch.no_grad()
def verify_onnx(
    model,
    path: str | Path,
    imgsz: int | tuple[int, int] | None = None,
    batch: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    float64: bool = False,
) -> OnnxCheck:
    """Compare ONNX Runtime with torch on the decoded outputs for random and synthetic inputs.

    `model` is the original (unfused) torch model, run in eval mode on CPU in float32.
    `imgsz` and `batch` default to the exported ones; set them to check a dynamic export
    at another shape. `float(result)` (or `.max_diff`) is the figure to hold to 1e-3.
    `float64` adds the distances of both to torch in float64 (see `OnnxCheck`).
    """
    meta = onnx_metadata(path)
    h, w = check_imgsz(model, imgsz if imgsz is not None else json.loads(meta.get("imgsz", "[640, 640]")))
    batch = batch or int(meta.get("batch", 1))
    sess = ort_session(path, threads)
    ref = copy.deepcopy(model).float().cpu().eval()
    ref.detect.export = False
    ref64 = copy.deepcopy(ref).double() if float64 else None
    scale = np.array([w, h, w, h], dtype=np.float64)
    worst = np.zeros(4)
    t32 = o64 = 0.0
    for x in test_inputs(batch, h, w, seed):
        out = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        expected = ref(torch.from_numpy(x))[0].numpy()
        if out.shape != expected.shape:
            raise PrunedYoloError(f"{path}: ONNX output shape {out.shape} != torch {expected.shape}")
        worst = np.maximum(worst, _diff(out, expected, scale))
        if ref64 is not None:
            exact = ref64(torch.from_numpy(x).double())[0].numpy()
            t32 = max(t32, *_diff(expected, exact, scale)[2:])
            o64 = max(o64, *_diff(out, exact, scale)[2:])
    return OnnxCheck(*map(float, worst), tuple(out.shape), *((t32, o64) if float64 else (None, None)))
