"""Distributed training helpers: init from torchrun's environment, rank and world size.

`torchrun --nproc_per_node N -m pruned_yolo train ...` sets RANK, LOCAL_RANK and
WORLD_SIZE; `init_distributed()` then joins the process group with NCCL on CUDA and
gloo on CPU. Without those variables everything runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from ..errors import PrunedYoloError


def env_rank() -> int:
    return int(os.environ.get("RANK", -1))


def env_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", -1))


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return env_rank() >= 0 and env_world_size() > 1


def init_distributed(device: torch.device, timeout_s: int = 1800) -> torch.device:
    """Join the process group when launched by torchrun; returns this rank's device."""
    if not launched_by_torchrun() or is_distributed():
        return device
    if device.type == "cuda":
        if torch.cuda.device_count() <= env_local_rank():
            raise PrunedYoloError(
                f"LOCAL_RANK {env_local_rank()} but only {torch.cuda.device_count()} CUDA devices are visible"
            )
        torch.cuda.set_device(env_local_rank())
        device = torch.device("cuda", env_local_rank())
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """`obj` of rank `src` on every rank (a no-op outside distributed training)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
