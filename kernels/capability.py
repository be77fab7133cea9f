"""What the hardware computes natively: the one bf16-speed probe every layer asks.

On a CPU without bf16 dot-product instructions (AVX512-BF16, AMX tiles) a bfloat16 matmul is
emulated and slower than float32, so bf16 is only worth choosing where `native_bf16` says so
(the screened argmax head, the embedder's "auto" precision, the demo's default dtype).
"""

from __future__ import annotations

import torch

__all__ = ["native_bf16"]

_CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` multiplies bfloat16 natively: a CPU with AVX512-BF16 or AMX tiles, or a
    CUDA device with bf16 support; False for any other device (e.g. "meta")."""
    device = str(device)
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in _CPU_BF16_PROBES)
