"""Kernels: fused LM-head reductions (Triton) and their plain-torch twins. No I/O, no models."""

from kernels.capability import native_bf16
from kernels.fused_head import fused_head, fused_head_torch

__all__ = ["fused_head", "fused_head_torch", "native_bf16"]
