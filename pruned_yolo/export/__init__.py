"""Export to deployment formats (ONNX) and the checks that the export is faithful."""

from .onnx import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxCheck,
    arch_hash,
    export_onnx,
    onnx_metadata,
    ort_session,
    synthetic_image,
    verify_onnx,
)

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "OnnxCheck",
    "arch_hash",
    "export_onnx",
    "onnx_metadata",
    "ort_session",
    "synthetic_image",
    "verify_onnx",
]
