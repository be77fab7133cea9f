"""Argmax-only LM head for greedy decode steps: the next token, without the logits.

A decode step needs only `argmax(hidden @ weight.T)` with the masked (EOS) token excluded, not
the log-sum-exp and target log-prob that `kernels.fused_head` also reduces. This module gives
that argmax with exactly the fused head's logit semantics (fp32 logits for every input dtype,
bias, then scale, then soft-cap; masked token excluded; ties -> lowest index):

    argmax_head(hidden (N, d), weight (V, d), *, bias, logit_scale, softcap, masked_token,
                impl="auto")  -> (N,) int64

Two implementations behind one signature, as for the fused head:

* `argmax_head_torch`: vocabulary chunks of fp32 logits (one reusable tile), max per chunk.
  Its logits are computed by the same `torch.mm` calls on the same tiles as
  `kernels.fused_head_torch` (for N <= its row block), so its argmax equals that head's.
* `argmax_head_triton`: one Triton program per (row block, vocabulary split), fp32-accumulated
  `tl.dot` and the fused head kernel's own logit tile (`kernels.triton_common`), then a
  fixed-order torch reduction over splits (ties to the lowest split, i.e. the lowest index).

Neither validates token ids on the device, and the Triton launch reads nothing back to the host:
a decode step can be captured in a CUDA graph (`engine.decode_cache`). Input checks are host-side
shape/dtype checks only. The first Triton launch per device and dtype (and launch variant) is
compared with the twin (`kernels.verify`), which reads back to the host: the decode loop's
eager warm-up steps, before capture, are those launches; nothing is compared during capture.
"""

from __future__ import annotations

import torch

from kernels.fused_head_twin import tile_logits
from kernels.validation import check_argmax_inputs, resolve_impl
from kernels.verify import HeadKernel, checked_launch

__all__ = ["argmax_head", "argmax_head_torch", "argmax_head_triton", "ARGMAX_HEAD"]

DEFAULT_CHUNK = 4096


def argmax_head_torch(hidden: torch.Tensor, weight: torch.Tensor, *,
                      bias: torch.Tensor | None = None, logit_scale: float = 1.0,
                      softcap: float | None = None, masked_token: int | None = None,
                      chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Plain-torch argmax head: hidden (N, d), weight (V, d) -> (N,) int64, fp32 logits
    reduced one (N, chunk) tile at a time (the tile buffer is reused)."""
    check_argmax_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n, v = hidden.shape[0], weight.shape[0]
    dev = hidden.device
    best_val = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    best_idx = torch.zeros((n,), dtype=torch.int64, device=dev)
    if n == 0:
        return best_idx
    h32 = hidden.float()
    chunk = min(chunk, v)
    buf = torch.empty(n * chunk, dtype=torch.float32, device=dev)
    for start in range(0, v, chunk):
        stop = min(start + chunk, v)
        logits = buf[: n * (stop - start)].view(n, stop - start)
        # the fused head's own tile function: bit-identical logits
        tile_logits(h32, weight[start:stop].float(),
                    bias[start:stop].float() if bias is not None else None, logit_scale,
                    softcap, out=logits)
        if masked_token is not None and start <= masked_token < stop:
            logits[:, masked_token - start] = float("-inf")
        cval, cidx = logits.max(dim=1)          # first maximum within the chunk
        better = cval > best_val                # strict: earlier chunks win ties
        best_val = torch.where(better, cval, best_val)
        best_idx = torch.where(better, cidx + start, best_idx)
    return best_idx


def argmax_head_triton(hidden: torch.Tensor, weight: torch.Tensor, **kwargs) -> torch.Tensor:
    """The Triton twin (`kernels.argmax_head_triton`), imported on first use: Triton is heavy."""
    from kernels.argmax_head_triton import argmax_head_triton as impl

    return impl(hidden, weight, **kwargs)


def _check_argmax(args: tuple, options: dict, on_device: bool) -> None:
    hidden, weight = args
    check_argmax_inputs(hidden, weight, options["bias"], options["logit_scale"],
                        options["softcap"], options["masked_token"])


# The argmax head as `kernels.verify` checks it on first use.
ARGMAX_HEAD = HeadKernel("argmax_head", "kernels.argmax_head_triton.argmax_head_triton",
                         argmax_head_torch, tile_logits, _check_argmax, ("argmax",),
                         row_args=(0,))


def argmax_head(hidden: torch.Tensor, weight: torch.Tensor, *, bias: torch.Tensor | None = None,
                logit_scale: float = 1.0, softcap: float | None = None,
                masked_token: int | None = None, impl: str = "auto",
                verify: bool = True) -> torch.Tensor:
    """Greedy next token (N,) int64 of hidden (N, d): argmax of the fused head's logits with
    `masked_token` excluded, ties to the lowest index. impl: "auto" (Triton on CUDA, torch
    elsewhere), "triton" or "torch". verify: check the Triton kernel against the torch twin on
    first use and fall back to the twin if it fails (`kernels.verify`); False launches it
    unchecked (benchmarks)."""
    options = dict(bias=bias, logit_scale=logit_scale, softcap=softcap,
                   masked_token=masked_token)
    if resolve_impl(impl, hidden) == "torch":
        return argmax_head_torch(hidden, weight, **options)
    if verify:
        return checked_launch(ARGMAX_HEAD, (hidden, weight), options)
    return argmax_head_triton(hidden, weight, **options)
