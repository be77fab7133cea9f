"""What the engine knows about devices and floating dtypes: the dtype names it accepts, their
short names, which dtype `dtype="auto"` means (`auto_dtype`), and how an out-of-memory error
looks on each device."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from engine.profiles import check_profile

__all__ = ["DTYPES", "HALF_DTYPES", "dtype_name", "is_oom", "auto_dtype", "declared_dtype"]

# Every dtype name the engine and the CLI accept; the short names (fp32/fp16/bf16) come first.
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}

HALF_DTYPES = (torch.float16, torch.bfloat16)


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


def declared_dtype(config) -> torch.dtype | None:
    """The dtype a checkpoint's config declares (`dtype`, or the older `torch_dtype`): a
    `transformers` config object, a config.json mapping, or None; None where it declares none
    or one the engine does not score in (e.g. "auto", int8)."""
    if config is None:
        return None
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    for key in ("dtype", "torch_dtype"):
        value = get(key)
        if isinstance(value, torch.dtype):
            return value if value in DTYPES.values() else None
        if isinstance(value, str):
            return DTYPES.get(value.removeprefix("torch."))
    return None


def auto_dtype(config, device: torch.device, profile: str = "default",
               current: torch.dtype | None = None) -> torch.dtype:
    """What `dtype="auto"` scores in, from the checkpoint's config, the device, the profile and
    (for a model already loaded) its `current` dtype.

    - Not CUDA (CPU): `current` when it is fp32/fp16/bf16, else fp32, in both profiles (fp16
      matmuls are slow or missing on CPUs; bf16 is asked for explicitly).
    - CUDA, profile "paper": fp16, as Pythia's evaluation ran (`eval_memorization.py`: the model
      `.half()`) and the paper's perplexities (`inference.py: load_model`, `.half()`).
    - CUDA, profile "default": `current` when it is already 16-bit; else the 16-bit dtype the
      config declares (Pythia's checkpoints declare fp16, the dtype they were trained and
      evaluated in: another 16-bit dtype can flip near-tie argmaxes); else bf16 (fp32
      checkpoints and configs that declare nothing).
    """
    check_profile(profile)
    if device.type != "cuda":
        return current if current in DTYPES.values() else torch.float32
    if profile == "paper":
        return torch.float16
    if current in HALF_DTYPES:
        return current
    declared = declared_dtype(config)
    return declared if declared in HALF_DTYPES else torch.bfloat16
