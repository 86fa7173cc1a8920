"""An ONNX export run by ONNX Runtime, callable like our model in eval mode.

`OnnxModel(path)(x)` takes a float tensor (bs, 3, h, w) in [0, 1] and returns the decoded
predictions (bs, N, 5 + nc) as a torch tensor, like `YOLO.forward` in eval mode, so that
`Validator` (and anything else that takes the model's eval output) scores float and INT8
exports like checkpoints. Class names, strides and the input size come from the metadata.

A static export takes exactly its (batch, 3, h, w): `OnnxModel` splits a larger batch into
the exported batch size (padding the last chunk) but cannot change the spatial size, so a
static file is validated with square letterboxing at its own size (`letterbox_mode`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import PrunedYoloError
from .onnx import OUTPUT_NAME, onnx_metadata, ort_session


class OnnxModel:
    """An ONNX Runtime session with the attributes the validator reads (`names`, `nc`, `stride`)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise PrunedYoloError(f"ONNX file not found: {path}")
        try:
            meta = onnx_metadata(path)
            self.session = ort_session(path, threads)
        except Exception as e:  # DecodeError, ORT's InvalidGraph / Fail ...: not a usable ONNX model
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PrunedYoloError(f"{path}: not a readable ONNX model ({first[:200]})") from None
        self.path, self.meta = path, meta
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise PrunedYoloError(f"{path}: expected one NCHW image input, got {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else outputs[0]
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.input_hw = (shape[2], shape[3]) if all(isinstance(d, int) for d in shape[2:]) else None
        names = json.loads(meta["names"]) if "names" in meta else None
        out_shape = self.session.get_outputs()[0].shape
        nc = int(meta["nc"]) if "nc" in meta else (out_shape[-1] - 5 if isinstance(out_shape[-1], int) else None)
        self.nc = nc
        self.names = list(names) if names else ([str(i) for i in range(nc)] if nc else [])
        self.stride = torch.tensor(json.loads(meta.get("stride", "[8, 16, 32]")), dtype=torch.float32)
        self.imgsz = tuple(json.loads(meta["imgsz"])) if "imgsz" in meta else self.input_hw
        self.quantization = meta.get("quantization", "")

    @property
    def static(self) -> bool:
        """Whether the input height and width are fixed."""
        return self.input_hw is not None

    @property
    def precision(self) -> str:
        return "int8" if self.quantization == "int8" else ("fp16" if self.meta.get("half") == "true" else "fp32")

    def letterbox_mode(self, requested: str | None = None) -> str:
        """The validation letterbox: `square` for a static file (the only shape it takes), else `requested`."""
        if not self.static:
            return requested or "auto"
        if requested not in (None, "square"):
            raise PrunedYoloError(
                f"{self.path} has a static {self.input_hw[0]}x{self.input_hw[1]} input: it is validated with "
                f"--letterbox square (re-export with --dynamic to use --letterbox {requested})"
            )
        return "square"

    def run(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW in [0, 1] -> decoded (bs, N, 5 + nc), in exported-batch chunks if fixed."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.input_hw is not None and tuple(x.shape[2:]) != tuple(self.input_hw):
            raise PrunedYoloError(
                f"{self.path} takes {self.input_hw[0]}x{self.input_hw[1]} inputs, got {x.shape[2]}x{x.shape[3]}"
            )
        b = self.batch
        if b is None or b == len(x):
            return self.session.run([self.output_name], {self.input_name: x})[0]
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:  # fill the fixed batch with copies, keep only the real images
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, 0)])
            outs.append(self.session.run([self.output_name], {self.input_name: chunk})[0][:n])
        return np.concatenate(outs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().float().cpu().numpy()))

    def __repr__(self) -> str:
        shape = f"{self.input_hw[0]}x{self.input_hw[1]}" if self.static else "dynamic"
        return f"OnnxModel({self.path.name}, {self.precision}, {shape}, nc={self.nc})"
