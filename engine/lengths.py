"""The one check of sample lengths (prompt = `prefix_len` tokens, continuation = `cont_len`)
and of a token batch against them, shared by the sample sources, the scorer, the cascade and
the decoder."""

from __future__ import annotations

import numpy as np

__all__ = ["check_lengths", "check_token_batch"]


def check_lengths(prefix_len, cont_len) -> int:
    """prefix_len and cont_len must be positive integers; returns prefix_len + cont_len."""
    for name, v in (("prefix_len", prefix_len), ("cont_len", cont_len)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(prefix_len) + int(cont_len)


def check_token_batch(tokens, prefix_len, cont_len) -> int:
    """tokens must be a 2-D integer torch tensor (B, prefix_len + cont_len); checks the lengths
    too and returns prefix_len + cont_len."""
    import torch

    seq_len = check_lengths(prefix_len, cont_len)
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError(
            f"tokens must be a 2-D torch tensor (B, prefix_len + cont_len = {seq_len}), got "
            f"{type(tokens).__name__} of shape {tuple(getattr(tokens, 'shape', ()))}"
        )
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must hold integer ids, got dtype {tokens.dtype}")
    if tokens.shape[1] != seq_len:
        raise ValueError(
            f"tokens must have prefix_len + cont_len = {seq_len} columns, got {tokens.shape[1]}"
        )
    return seq_len
