"""Latency benchmarks of checkpoints on torch and ONNX Runtime, interleaved for fair ratios."""

from .latency import (
    RUNTIMES,
    ModuleRunner,
    OrtFeedRunner,
    OrtRunner,
    Runner,
    Timing,
    TorchRunner,
    benchmark_models,
    default_threads,
    make_runner,
    onnx_latency_ms,
    random_input,
    speedups,
)

__all__ = [
    "RUNTIMES",
    "ModuleRunner",
    "OrtFeedRunner",
    "OrtRunner",
    "Runner",
    "Timing",
    "TorchRunner",
    "benchmark_models",
    "default_threads",
    "make_runner",
    "onnx_latency_ms",
    "random_input",
    "speedups",
]
