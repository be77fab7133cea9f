"""float64 oracle logits shared by the LM-head op tests (fused head, argmax head)."""

from __future__ import annotations

import torch


def reference_logits(hidden, weight, bias=None, scale=1.0, softcap=None):
    """(N, V) float64 logits with the heads' semantics: bias, then scale, then soft-cap."""
    logits = hidden.double() @ weight.double().T
    if bias is not None:
        logits = logits + bias.double()
    logits = logits * scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return logits
