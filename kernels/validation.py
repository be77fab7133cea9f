"""Input checks shared by every LM head op (`fused_head`, `argmax_head`, the screened head) and
by both implementations of each (Triton kernel and torch twin).

Every check raises a ValueError that names the bad value and what was expected. All checks are
host-side (shapes, dtypes, devices, options) except `check_targets`, which reads one flag from
the device to range-check the target ids; the argmax heads never call it, so a decode step can
be captured in a CUDA graph.
"""

from __future__ import annotations

import math

import torch

__all__ = ["FLOAT_DTYPES", "describe", "check_head_options", "check_head_inputs",
           "check_argmax_inputs", "check_targets", "resolve_impl"]

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def describe(x) -> str:
    """What `x` is, for an error message: a tensor's shape, else its type."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__}"


def check_head_options(v: int, logit_scale, softcap, masked_token) -> None:
    """The logit options of every LM head op, for a vocabulary of `v` tokens."""
    if not math.isfinite(logit_scale) or logit_scale == 0:
        raise ValueError(f"logit_scale must be a finite non-zero number, got {logit_scale!r}")
    if softcap is not None and not (math.isfinite(softcap) and softcap > 0):
        raise ValueError(f"softcap must be None or a finite positive number, got {softcap!r}")
    if masked_token is not None and not 0 <= masked_token < v:
        raise ValueError(f"masked_token must be a token id in [0, {v}), got {masked_token!r}")


def check_head_inputs(hidden, weight, bias, logit_scale=1.0, softcap=None,
                      masked_token=None) -> None:
    """hidden (N, d), weight (V, d) of one float dtype on one device, bias (V,) or None, and
    the logit options. Host-side only: no device reads."""
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise ValueError(f"hidden must be a 2-D tensor (N, d), got {describe(hidden)}")
    if (not isinstance(weight, torch.Tensor) or weight.dim() != 2
            or weight.shape[1] != hidden.shape[1]):
        raise ValueError(
            f"weight must be a (V, d) tensor with d={hidden.shape[1]}, got {describe(weight)}")
    if weight.shape[0] == 0 or hidden.shape[1] == 0:
        raise ValueError(f"weight must have V >= 1 and d >= 1, got shape {tuple(weight.shape)}")
    if hidden.dtype not in FLOAT_DTYPES or weight.dtype != hidden.dtype:
        raise ValueError("hidden and weight must share one dtype of float32, float16 or bfloat16, "
                         f"got {hidden.dtype} and {weight.dtype}")
    if weight.device != hidden.device:
        raise ValueError(f"hidden is on {hidden.device} but weight is on {weight.device}")
    v = weight.shape[0]
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.dim() != 1 or bias.shape[0] != v:
            raise ValueError(f"bias must be a (V,)=({v},) tensor, got {describe(bias)}")
        if not bias.dtype.is_floating_point or bias.device != hidden.device:
            raise ValueError(f"bias must be a floating tensor on {hidden.device}, got "
                             f"{bias.dtype} on {bias.device}")
    check_head_options(v, logit_scale, softcap, masked_token)


def check_argmax_inputs(hidden, weight, bias, logit_scale=1.0, softcap=None,
                        masked_token=None) -> None:
    """`check_head_inputs`, and a token left to choose once the masked one is excluded."""
    check_head_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    if masked_token is not None and weight.shape[0] < 2:
        raise ValueError("masked_token leaves no token to choose from a vocabulary of 1")


def check_targets(targets, n: int, v: int) -> None:
    """targets (n,) integer token ids in [0, v). Reads one flag from the device (the min/max
    of the message only on failure)."""
    if not isinstance(targets, torch.Tensor) or targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"targets must be a 1-D tensor of length N={n}, got {describe(targets)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(f"targets must be an integer tensor, got dtype {targets.dtype}")
    if targets.numel() and bool(((targets < 0) | (targets >= v)).any()):
        raise ValueError(
            f"targets must be token ids in [0, {v}), got values in "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )


def resolve_impl(impl: str, hidden) -> str:
    """'auto' -> 'triton' for CUDA tensors (or a CUDA device given instead of a tensor), else
    'torch'; 'triton' / 'torch' as given."""
    if impl not in ("auto", "triton", "torch"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    if impl == "auto":
        if isinstance(hidden, (str, torch.device)):
            return "triton" if torch.device(hidden).type == "cuda" else "torch"
        return "triton" if isinstance(hidden, torch.Tensor) and hidden.is_cuda else "torch"
    return impl
