"""What the engine knows about devices and floating dtypes: the dtype names it accepts, their
short names, and how an out-of-memory error looks on each device."""

from __future__ import annotations

import torch

__all__ = ["DTYPES", "dtype_name", "is_oom"]

# Every dtype name the engine and the CLI accept; the short names (fp32/fp16/bf16) come first.
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a floating dtype: 'fp32', 'fp16' or 'bf16'."""
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def is_oom(exc: BaseException) -> bool:
    """True for an out-of-memory error: host `MemoryError`, torch's `OutOfMemoryError` (also
    reachable as `torch.cuda.OutOfMemoryError`), or a RuntimeError that says so (older
    backends and allocators)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
