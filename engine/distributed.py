"""torch.distributed helpers: which rank am I, split work, barriers (no-ops in one process).

Under `torchrun` every rank scores a disjoint set of shards (shard k -> rank k % world_size)
and writes its own shard files; rank 0 writes the manifest. `init_from_env()` starts a process
group when torchrun's environment variables are present (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os

import torch

__all__ = ["rank_world", "init_from_env", "barrier", "my_shards", "all_gather_object",
           "local_device"]


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); True if distributed."""
    if _dist_ready():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not torch.distributed.is_available():
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return True


def rank_world() -> tuple[int, int]:
    if _dist_ready():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def local_device(device: torch.device) -> torch.device:
    """On CUDA under torchrun, each rank takes the GPU named by LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def barrier() -> None:
    if _dist_ready():
        torch.distributed.barrier()


def my_shards(n_shards: int, rank: int, world: int) -> list[int]:
    """Round-robin: shard k goes to rank k % world (balanced, and disjoint across ranks)."""
    return list(range(rank, n_shards, world))


def all_gather_object(obj):
    """Every rank's `obj`, in rank order (a one-element list in one process)."""
    if not _dist_ready():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out
