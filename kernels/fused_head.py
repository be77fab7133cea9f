"""Fused LM head: per row, the greedy token, the log-sum-exp and the target log-prob.

`fused_head` never materialises the full (N, V) logits. The plain-torch twin reduces the
vocabulary chunk by chunk (bounded memory); the Triton kernel (issue 3) plugs in behind the
same signature. Semantics shared by both:

    logits = (hidden @ weight.T + bias) * logit_scale
    if softcap: logits = softcap * tanh(logits / softcap)        # scale first, then cap
    argmax = argmax over logits with `masked_token` excluded     # ties -> lowest index
    lse    = logsumexp(logits)                                   # model's own distribution
    target_logprob = logits[target] - lse
"""

from __future__ import annotations

import torch

# Chunk of the vocabulary reduced at once by the torch twin: the peak extra memory is one
# (rows, chunk) fp32 tile, never (rows, V).
DEFAULT_CHUNK = 8192


def _validate(hidden, weight, targets, bias):
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be 2-D (N, d), got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"weight must be (V, d) with d={hidden.shape[1]}, got shape {tuple(weight.shape)}"
        )
    if targets.dim() != 1 or targets.shape[0] != hidden.shape[0]:
        raise ValueError(
            f"targets must be 1-D of length N={hidden.shape[0]}, got shape {tuple(targets.shape)}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"bias must be (V,)=({weight.shape[0]},), got {tuple(bias.shape)}")


def fused_head_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-torch twin of the fused head, reducing the vocabulary in chunks.

    hidden (N, d), weight (V, d), targets (N,) int -> argmax int64 (N,), lse fp32 (N,),
    target_logprob fp32 (N,). Matmuls run in the input dtype with fp32 results; every
    reduction is fp32.
    """
    _validate(hidden, weight, targets, bias)
    n, v = hidden.shape[0], weight.shape[0]
    dev = hidden.device
    best_val = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    best_idx = torch.zeros((n,), dtype=torch.int64, device=dev)
    run_max = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    run_sum = torch.zeros((n,), dtype=torch.float32, device=dev)
    tgt_logit = torch.zeros((n,), dtype=torch.float32, device=dev)
    targets = targets.to(device=dev, dtype=torch.int64)
    rows = torch.arange(n, device=dev)
    for start in range(0, v, chunk):
        stop = min(start + chunk, v)
        logits = (hidden @ weight[start:stop].T).float()
        if bias is not None:
            logits += bias[start:stop].float()
        if logit_scale != 1.0:
            logits *= logit_scale
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        # log-sum-exp, online across chunks
        cmax = logits.max(dim=1).values
        new_max = torch.maximum(run_max, cmax)
        run_sum = run_sum * torch.exp(run_max - new_max) + torch.exp(
            logits - new_max[:, None]
        ).sum(dim=1)
        run_max = new_max
        # target logit
        in_chunk = (targets >= start) & (targets < stop)
        if in_chunk.any():
            local = (targets - start).clamp(0, stop - start - 1)
            tgt_logit = torch.where(in_chunk, logits[rows, local], tgt_logit)
        # argmax with the masked token excluded; strict '>' keeps the lowest index on ties
        if masked_token is not None and start <= masked_token < stop:
            logits[:, masked_token - start] = float("-inf")
        cval, cidx = logits.max(dim=1)
        better = cval > best_val
        best_val = torch.where(better, cval, best_val)
        best_idx = torch.where(better, cidx + start, best_idx)
    lse = run_max + torch.log(run_sum)
    return best_idx, lse, tgt_logit - lse


def fused_head(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax, log-sum-exp and target log-prob of `hidden @ weight.T` without the logits.

    impl: "auto" (Triton on CUDA, torch elsewhere), "triton" (anywhere Triton runs, including
    its CPU interpreter under TRITON_INTERPRET=1) or "torch".
    """
    if impl not in ("auto", "triton", "torch"):
        raise ValueError(f"impl must be 'auto', 'triton' or 'torch', got {impl!r}")
    if impl == "auto":
        impl = "triton" if hidden.is_cuda else "torch"
    if impl == "torch":
        return fused_head_torch(
            hidden, weight, targets, bias=bias, logit_scale=logit_scale, softcap=softcap,
            masked_token=masked_token,
        )
    from kernels.fused_head_triton import fused_head_triton  # imported lazily: Triton is heavy

    return fused_head_triton(
        hidden, weight, targets, bias=bias, logit_scale=logit_scale, softcap=softcap,
        masked_token=masked_token,
    )
