"""Triton kernel of the fused LM head: argmax, log-sum-exp and target log-prob, no logits.

One program owns BLOCK_N rows and a contiguous range of vocabulary tiles. For each tile of
BLOCK_V vocabulary rows it computes the (BLOCK_N, BLOCK_V) logits with `tl.dot` in fp32,
applies bias, scale and soft-cap, and folds the tile (`kernels.triton_common.scan_vocabulary`)
into four running per-row statistics held in registers (all fp32, never 16-bit):

    best, best_idx   maximum logit and its index, masked token excluded, ties -> lowest index
    m, s             online log-sum-exp: max and sum of exp(logit - m)
    t                the target's logit (exactly one tile contains it)

Small batches leave most SMs idle, so the vocabulary can be split over SPLITS programs per row
block (grid axis 1). Each split then writes its partial statistics, and a fixed-order torch
reduction over the splits finishes them: deterministic, and argmax ties still go to the lowest
index because splits are ordered by vocabulary and `torch.argmax` picks the first maximum.

The target's and the masked token's logits are computed before the vocabulary loop, as one
gathered dot product per row (N*d work). The loop's epilogue then handles a single tile: the
masked column becomes -inf, so one running maximum serves both the argmax and the log-sum-exp,
and the masked token is added back to the log-sum-exp at the end (the model's own distribution).

Block sizes come from the table in `kernels.triton_common` (`pick_config`: GPU generation and
dtype, chosen from `ptxas -v` register counts; see that module's docstring).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_common import (
    HeadConfig,
    finish_logits,
    first_max_index,
    head_arguments,
    launch_device,
    plan_launch,
    require_triton_device,
    scan_vocabulary,
)
from kernels.validation import check_head_inputs, check_targets

__all__ = ["HeadConfig", "fused_head_triton"]


@triton.jit
def _fused_head_kernel(
    h_ptr, w_ptr, b_ptr, t_ptr,
    idx_ptr, lse_ptr, lp_ptr,  # outputs (N,); with SPLIT, lse/lp hold the masked/target logits
    part_ptr, part_idx_ptr,  # SPLIT only: (2, SPLITS, N) fp32 (lse without mask, max), (SPLITS, N)
    N, V, D,
    stride_hn, stride_hd, stride_wv, stride_wd,
    tiles_per_split,
    logit_scale, softcap, masked_token,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    EVEN_K: tl.constexpr, SPLIT: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)

    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    # Clamp instead of masking: tail rows re-read row N-1 (in bounds, no masked loads in the
    # hot loop) and their results are dropped at the store.
    rows_c = tl.minimum(rows, N - 1).to(tl.int64)
    h_rows = h_ptr + rows_c[:, None] * stride_hn
    tgt = tl.load(t_ptr + rows_c).to(tl.int64)

    # 1) The target's and the masked token's logits, as one gathered dot product per row (N*d
    #    work, nothing next to N*V*d). Taking them out of the vocabulary loop keeps its
    #    epilogue to one (BLOCK_N, BLOCK_V) tile: the masked column simply becomes -inf there
    #    and is added back to the log-sum-exp at the end.
    t_acc = tl.zeros((BLOCK_N,), tl.float32)
    e_acc = tl.zeros((BLOCK_N,), tl.float32)
    w_tgt = w_ptr + tgt[:, None] * stride_wv
    w_eos = w_ptr + tl.maximum(masked_token, 0).to(tl.int64) * stride_wv
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < D
        h = tl.load(h_rows + ks[None, :] * stride_hd, mask=k_ok[None, :], other=0.0)
        h = h.to(tl.float32)
        wt = tl.load(w_tgt + ks[None, :] * stride_wd, mask=k_ok[None, :], other=0.0)
        t_acc += tl.sum(h * wt.to(tl.float32), axis=1)
        if HAS_MASK:
            we = tl.load(w_eos + ks * stride_wd, mask=k_ok, other=0.0).to(tl.float32)
            e_acc += tl.sum(h * we[None, :], axis=1)
    t_logit = finish_logits(t_acc, b_ptr, tgt, logit_scale, softcap,
                            HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)
    if HAS_MASK:
        eos = tl.zeros((BLOCK_N,), tl.int32) + masked_token
        e_logit = finish_logits(e_acc, b_ptr, eos, logit_scale, softcap,
                                HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)

    # 2) The vocabulary loop: running max m (= the argmax's value, masked token excluded),
    #    its index, and s = sum of exp(logit - m) over the same columns.
    m, best_idx, s = scan_vocabulary(
        h_rows, w_ptr, b_ptr, pid_s, tiles_per_split, V, D, stride_hd, stride_wv, stride_wd,
        logit_scale, softcap, masked_token,
        HAS_BIAS, HAS_SCALE, HAS_SOFTCAP, HAS_MASK, UPCAST, DOT_PRECISION, EVEN_K, True,
        BLOCK_N, BLOCK_V, BLOCK_K,
    )

    lse_wo = m + tl.log(s)  # log-sum-exp without the masked token
    if SPLIT:
        base = pid_s * N + rows
        tl.store(part_ptr + base, lse_wo, mask=row_ok)
        tl.store(part_ptr + N * tl.num_programs(1) + base, m, mask=row_ok)
        tl.store(part_idx_ptr + base, best_idx, mask=row_ok)
        if pid_s == 0:  # the per-row logits, once
            tl.store(lp_ptr + rows, t_logit, mask=row_ok)
            if HAS_MASK:
                tl.store(lse_ptr + rows, e_logit, mask=row_ok)
    else:
        if HAS_MASK:  # add the masked token back: the model's own distribution
            top = tl.maximum(lse_wo, e_logit)
            lse = top + tl.log(tl.exp(lse_wo - top) + tl.exp(e_logit - top))
        else:
            lse = lse_wo
        tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=row_ok)
        tl.store(lse_ptr + rows, lse, mask=row_ok)
        tl.store(lp_ptr + rows, t_logit - lse, mask=row_ok)


def fused_head_triton(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    config: HeadConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton fused head. hidden (N, d), weight (V, d), targets (N,) -> argmax int64 (N,),
    lse fp32 (N,), target_logprob fp32 (N,). Inputs are validated by the same checks as the
    torch twin's (`kernels.validation`); `config` overrides the block-size table (benchmarks
    sweep it)."""
    check_head_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    check_targets(targets, hidden.shape[0], weight.shape[0])
    require_triton_device(hidden, "fused head")
    n = hidden.shape[0]
    dev = hidden.device
    out_idx = torch.empty((n,), dtype=torch.int64, device=dev)
    out_lse = torch.empty((n,), dtype=torch.float32, device=dev)
    out_lp = torch.empty((n,), dtype=torch.float32, device=dev)
    if n == 0:
        return out_idx, out_lse, out_lp

    plan = plan_launch(hidden, weight, bias is not None or softcap is not None, config)
    splits = plan.splits
    targets = targets.to(device=dev).contiguous()
    bias_arg = bias.contiguous() if bias is not None else hidden  # dummy pointer when unused
    if splits > 1:
        part = torch.empty((2, splits, n), dtype=torch.float32, device=dev)
        part_idx = torch.empty((splits, n), dtype=torch.int32, device=dev)
    else:
        part, part_idx = out_lse, out_idx  # unused by the SPLIT=False specialisation
    scalars, flags = head_arguments(hidden, weight, bias, logit_scale, softcap, masked_token, plan)
    with launch_device(dev):
        _fused_head_kernel[(plan.row_blocks, splits)](
            hidden, weight, bias_arg, targets, out_idx, out_lse, out_lp, part, part_idx,
            *scalars, SPLIT=splits > 1, **flags,
        )
    if splits == 1:
        return out_idx, out_lse, out_lp

    # Second stage, fixed order over splits (deterministic), ties to the lowest token index.
    lse_wo, best = part.unbind(0)
    if masked_token is not None:
        lse_wo = torch.cat([lse_wo, out_lse[None]])  # out_lse holds the masked token's logit
    lse = torch.logsumexp(lse_wo, dim=0)
    return first_max_index(best, part_idx), lse, out_lp - lse  # out_lp holds the target's logit
