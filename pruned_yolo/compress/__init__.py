"""The full Pruned-YOLO pipeline: sparsity training, pruning to a budget, fine-tuning, report.

    from pruned_yolo.compress import CompressConfig, compress
    report = compress(CompressConfig(weights="yolov5s.pt", data="coco128.yaml", target_flops_ratio=0.5))

Modules: `sparsity` (the L1 subgradient, cosine factor and soft mask as a training callback),
`distill` (output distillation from the dense model), `pipeline` (rounds, budgets, resume),
`report` (latency, tables, plots).
"""

from .distill import DistillationCallback, distillation_loss
from .pipeline import CompressConfig, Compressor, compress
from .sparsity import SparsityCallback, SparsityConfig, sparsity_factor

__all__ = [
    "CompressConfig",
    "Compressor",
    "DistillationCallback",
    "SparsityCallback",
    "SparsityConfig",
    "compress",
    "distillation_loss",
    "sparsity_factor",
]
