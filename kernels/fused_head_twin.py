"""The fused LM head's plain-torch twin: the vocabulary reduced one fp32 tile at a time, so the
full (N, V) logits never exist. `kernels.fused_head` dispatches between this twin, the Triton
kernel and the CPU bf16 head, and re-exports these names; the other heads (the argmax head,
the CPU bf16 head) import the twin and its tile function from here, one way.
"""

from __future__ import annotations

import torch

from kernels.validation import check_head_inputs, check_targets

__all__ = ["fused_head_torch", "tile_logits", "DEFAULT_CHUNK", "DEFAULT_ROW_BLOCK"]

# The torch twin reduces one (ROW_BLOCK, CHUNK) fp32 tile of logits at a time, so its peak
# extra memory is one tile (plus one fp32 copy of a weight chunk for 16-bit inputs), never
# (N, V). 4096 x 2048 fp32 = 32 MiB: large enough for efficient matmuls, small enough to stay
# out of the way (measured in docs/notes/kernels.md).
DEFAULT_CHUNK = 4096
DEFAULT_ROW_BLOCK = 2048


def tile_logits(hidden32, weight32, bias32, logit_scale, softcap, *, out) -> torch.Tensor:
    """fp32 logits of one tile into `out` (n, v): hidden32 (n, d) @ weight32 (v, d).T, then
    bias, then scale, then soft-cap, in place. Every torch LM head computes its tiles here, so
    their logits are bit-identical (the Triton kernels' epilogue is
    `kernels.triton_common.finish_logits`)."""
    torch.mm(hidden32, weight32.T, out=out)
    if bias32 is not None:
        out += bias32
    if logit_scale != 1.0:
        out *= logit_scale
    if softcap is not None:
        out.div_(softcap).tanh_().mul_(softcap)
    return out


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
    row_block: int = DEFAULT_ROW_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plain-torch twin of the fused head, reducing (row_block, chunk) tiles of logits.

    hidden (N, d), weight (V, d), targets (N,) int -> argmax int64 (N,), lse fp32 (N,),
    target_logprob fp32 (N,). Logits are computed and reduced in fp32, exactly as the kernel's
    fp32-accumulated `tl.dot`: 16-bit inputs are widened one weight chunk at a time (on CPU
    that is also faster than a float16 matmul), so logits are never rounded to 16 bits.
    """
    check_head_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    check_targets(targets, hidden.shape[0], weight.shape[0])
    if chunk < 1 or row_block < 1:
        raise ValueError(f"chunk and row_block must be >= 1, got {chunk} and {row_block}")
    n, v = hidden.shape[0], weight.shape[0]
    dev = hidden.device
    best_val = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    best_idx = torch.zeros((n,), dtype=torch.int64, device=dev)
    run_max = torch.full((n,), float("-inf"), dtype=torch.float32, device=dev)
    run_sum = torch.zeros((n,), dtype=torch.float32, device=dev)
    tgt_logit = torch.zeros((n,), dtype=torch.float32, device=dev)
    if n == 0:
        return best_idx, run_max, tgt_logit
    targets = targets.to(device=dev, dtype=torch.int64)
    hidden32 = hidden.float()  # no copy for fp32; (N, d) is small next to (N, V)
    row_block = min(row_block, n)
    chunk = min(chunk, v)
    # one reusable tile buffer: fresh (row_block, chunk) allocations each step cost page faults
    buf = torch.empty(row_block * chunk, dtype=torch.float32, device=dev)
    for start in range(0, v, chunk):
        stop = min(start + chunk, v)
        w = weight[start:stop].float()
        b = bias[start:stop].float() if bias is not None else None
        mcol = masked_token - start if masked_token is not None and start <= masked_token < stop else None
        for r0 in range(0, n, row_block):
            r1 = min(r0 + row_block, n)
            rows = slice(r0, r1)
            logits = buf[: (r1 - r0) * (stop - start)].view(r1 - r0, stop - start)
            tile_logits(hidden32[rows], w, b, logit_scale, softcap, out=logits)
            # target logit (exactly one chunk holds each row's target)
            t = targets[rows]
            in_chunk = (t >= start) & (t < stop)
            local = (t - start).clamp_(0, stop - start - 1)
            picked = logits.gather(1, local[:, None]).squeeze(1)
            tgt_logit[rows] = torch.where(in_chunk, picked, tgt_logit[rows])
            # argmax with the masked token excluded; max() returns the first maximum and the
            # strict '>' across chunks keeps the lowest index on ties
            if mcol is not None:
                saved = logits[:, mcol].clone()
                logits[:, mcol] = float("-inf")
            cval, cidx = logits.max(dim=1)
            better = cval > best_val[rows]
            best_val[rows] = torch.where(better, cval, best_val[rows])
            best_idx[rows] = torch.where(better, cidx + start, best_idx[rows])
            # online log-sum-exp of the model's own, unmasked distribution, in place on the tile
            if mcol is not None:
                logits[:, mcol] = saved
                cmax = torch.maximum(cval, saved)
            else:
                cmax = cval
            csum = logits.sub_(cmax[:, None]).exp_().sum(dim=1)
            old = run_max[rows]
            new = torch.maximum(old, cmax)
            run_sum[rows] = run_sum[rows] * torch.exp(old - new) + csum * torch.exp(cmax - new)
            run_max[rows] = new
    lse = run_max + torch.log(run_sum)
    return best_idx, lse, tgt_logit - lse
