"""Export to deployment formats (ONNX, INT8 ONNX) and the checks that the export is faithful."""

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
from .parity import format_parity, parity_report
from .quantize import float_nodes, is_int8, quantize_onnx
from .runtime import OnnxModel

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "OnnxCheck",
    "OnnxModel",
    "arch_hash",
    "export_onnx",
    "float_nodes",
    "format_parity",
    "is_int8",
    "onnx_metadata",
    "ort_session",
    "parity_report",
    "quantize_onnx",
    "synthetic_image",
    "verify_onnx",
]
