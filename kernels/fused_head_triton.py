"""Triton kernel of the fused LM head: argmax, log-sum-exp and target log-prob, no logits.

One program owns BLOCK_N rows and a contiguous range of vocabulary tiles. For each tile of
BLOCK_V vocabulary rows it computes the (BLOCK_N, BLOCK_V) logits with `tl.dot` in fp32,
applies bias, scale and soft-cap, and folds the tile into four running per-row statistics held
in registers (all fp32, never 16-bit):

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

Block sizes come from a small table (`_pick_config`), chosen by GPU generation and dtype:

    arch / dtype                     BLOCK_N BLOCK_V BLOCK_K warps stages  smem    regs
    Hopper (sm90+), 16-bit           128     256     64      8     3       144 KiB 241
      ... with bias or soft-cap      128     128     64      8     4       128 KiB 158
    Ampere (sm80/86/89), 16-bit      128     128     32      8     4        48 KiB 220
    any GPU, fp32 (IEEE, no TF32)    64      64      32      4     3        32 KiB 168
    interpreter (CPU)                <=64    <=512   <=128   -     -       few, large tiles: the
                                                                           interpreter pays per op

Why these: the kernel was compiled ahead of time for sm_90a and sm_80 on a machine without a
GPU and its registers read back with `ptxas -v` (`python benchmarks/bench_kernels.py --ptxas
90`). The picks are the largest tiles that keep the epilogue free of register spills: 128x256
(cuBLAS's usual bf16 tile; half the re-reads of the hidden block per FLOP of 128x128) fits on
Hopper without bias and cap, spills 8 KB per thread with them, and spills on Ampere. They are not
timed yet; `bench_kernels.py --table --sweep` times alternatives on a GPU, and this table should
follow its results.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@dataclass(frozen=True)
class HeadConfig:
    """Launch parameters. block_* must be powers of two and at least 16 (tl.dot's minimum)."""

    block_n: int
    block_v: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    splits: int | None = None  # vocabulary splits per row block; None: pick for the GPU's size


@triton.jit
def _tanh(x):
    # tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1: never overflows, no cancellation
    # beyond fp32 rounding; portable across Triton versions and the interpreter.
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _finish_logits(x, b_ptr, cols, logit_scale, softcap,
                   HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr):
    """Bias, then scale, then soft-cap; x is (..., len(cols)) or (len(cols),) fp32."""
    if HAS_BIAS:
        x += tl.load(b_ptr + cols).to(tl.float32)
    if HAS_SCALE:
        x = x * logit_scale
    if HAS_SOFTCAP:
        x = softcap * _tanh(x / softcap)
    return x


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
    t_logit = _finish_logits(t_acc, b_ptr, tgt, logit_scale, softcap,
                             HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)
    if HAS_MASK:
        eos = tl.zeros((BLOCK_N,), tl.int32) + masked_token
        e_logit = _finish_logits(e_acc, b_ptr, eos, logit_scale, softcap,
                                 HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)

    # 2) The vocabulary loop: running max m (= the argmax's value, masked token excluded),
    #    its index, and s = sum of exp(logit - m) over the same columns.
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_N,), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int32)
    v_begin = pid_s * tiles_per_split * BLOCK_V
    v_end = tl.minimum(V, v_begin + tiles_per_split * BLOCK_V)
    for v0 in range(v_begin, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        cols_c = tl.minimum(cols, V - 1)
        w_cols = w_ptr + cols_c.to(tl.int64)[None, :] * stride_wv

        acc = tl.zeros((BLOCK_N, BLOCK_V), tl.float32)
        for k0 in range(0, D, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            if EVEN_K:
                h = tl.load(h_rows + ks[None, :] * stride_hd)
                w = tl.load(w_cols + ks[:, None] * stride_wd)  # (BLOCK_K, BLOCK_V)
            else:
                h = tl.load(h_rows + ks[None, :] * stride_hd, mask=ks[None, :] < D, other=0.0)
                w = tl.load(w_cols + ks[:, None] * stride_wd, mask=ks[:, None] < D, other=0.0)
            if UPCAST:
                # Interpreter only: bf16 tiles would be multiplied as raw uint16 (garbage), and
                # numpy multiplies fp16 slowly; widening is exact and keeps fp32 accumulation.
                h = h.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(h, w, acc, input_precision=DOT_PRECISION)

        x = _finish_logits(acc, b_ptr, cols_c[None, :], logit_scale, softcap,
                           HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)
        skip = cols >= V  # the tail tile's padding
        if HAS_MASK:
            skip = skip | (cols == masked_token)
        x = tl.where(skip[None, :], float("-inf"), x)

        # lowest index among the tile's equal maxima; the strict '>' across tiles keeps the
        # earlier (lower) index
        tile_max = tl.max(x, axis=1)
        tile_idx = tl.min(tl.where(x == tile_max[:, None], cols[None, :], V), axis=1)
        best_idx = tl.where(tile_max > m, tile_idx, best_idx)
        # online sum of exponentials; m_ref avoids -inf - -inf (a tile whose only real column
        # is the masked token) without changing anything else
        m_new = tl.maximum(m, tile_max)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(x - m_ref[:, None]), axis=1)
        m = m_new

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


def _pow2_at_least(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(1, x))))


def _pick_config(
    n: int, v: int, d: int, dtype: torch.dtype, device: torch.device, heavy_epilogue: bool
) -> HeadConfig:
    """The block-size table documented in the module docstring. heavy_epilogue: a bias or a
    soft-cap, whose extra registers make the largest Hopper tile spill."""
    if _INTERPRET or device.type != "cuda":
        return HeadConfig(
            block_n=_pow2_at_least(n, 16, 64),
            block_v=_pow2_at_least(v, 16, 512),
            block_k=_pow2_at_least(d, 16, 128),
            splits=1,
        )
    if dtype == torch.float32:
        return HeadConfig(64, 64, 32, num_warps=4, num_stages=3)
    major, _ = torch.cuda.get_device_capability(device)
    if major >= 9 and not heavy_epilogue:
        return HeadConfig(128, 256, 64, num_warps=8, num_stages=3)
    if major >= 9:
        return HeadConfig(128, 128, 64, num_warps=8, num_stages=4)
    return HeadConfig(128, 128, 32, num_warps=8, num_stages=4)


def _pick_splits(row_blocks: int, v_tiles: int, device: torch.device) -> int:
    """Enough vocabulary splits to give every SM about two programs, each >= 16 tiles."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = triton.cdiv(2 * sms, row_blocks)
    return max(1, min(want, v_tiles // 16))


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
    lse fp32 (N,), target_logprob fp32 (N,). Inputs are validated by `kernels.fused_head`'s
    checks; `config` overrides the block-size table (benchmarks sweep it)."""
    from kernels.fused_head import _validate  # the one set of input checks for both twins

    _validate(hidden, weight, targets, bias, logit_scale, softcap, masked_token)
    if not (_INTERPRET or hidden.is_cuda):
        raise ValueError(
            f"the Triton fused head needs CUDA tensors, or TRITON_INTERPRET=1 set before kernels "
            f"are imported to run on the CPU; got tensors on {hidden.device}"
        )
    n, d = hidden.shape
    v = weight.shape[0]
    dev = hidden.device
    out_idx = torch.empty((n,), dtype=torch.int64, device=dev)
    out_lse = torch.empty((n,), dtype=torch.float32, device=dev)
    out_lp = torch.empty((n,), dtype=torch.float32, device=dev)
    if n == 0:
        return out_idx, out_lse, out_lp

    heavy = bias is not None or softcap is not None
    cfg = config or _pick_config(n, v, d, hidden.dtype, dev, heavy)
    for name in ("block_n", "block_v", "block_k"):
        b = getattr(cfg, name)
        if b < 16 or b & (b - 1):
            raise ValueError(f"config.{name} must be a power of two >= 16, got {b}")
    row_blocks = triton.cdiv(n, cfg.block_n)
    v_tiles = triton.cdiv(v, cfg.block_v)
    splits = cfg.splits if cfg.splits is not None else _pick_splits(row_blocks, v_tiles, dev)
    splits = max(1, min(splits, v_tiles))
    tiles_per_split = triton.cdiv(v_tiles, splits)
    splits = triton.cdiv(v_tiles, tiles_per_split)  # no empty split: each sees a real column

    targets = targets.to(device=dev).contiguous()
    bias_arg = bias.contiguous() if bias is not None else hidden  # dummy pointer when unused
    if splits > 1:
        part = torch.empty((2, splits, n), dtype=torch.float32, device=dev)
        part_idx = torch.empty((splits, n), dtype=torch.int32, device=dev)
    else:
        part, part_idx = out_lse, out_idx  # unused by the SPLIT=False specialisation

    launch_on = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with launch_on:  # Triton launches on the current device: make it the tensors' one
        _fused_head_kernel[(row_blocks, splits)](
            hidden, weight, bias_arg, targets,
            out_idx, out_lse, out_lp,
            part, part_idx,
            n, v, d,
            hidden.stride(0), hidden.stride(1), weight.stride(0), weight.stride(1),
            tiles_per_split,
            float(logit_scale), float(softcap) if softcap is not None else 1.0,
            int(masked_token) if masked_token is not None else -1,
            HAS_BIAS=bias is not None,
            HAS_SCALE=logit_scale != 1.0,
            HAS_SOFTCAP=softcap is not None,
            HAS_MASK=masked_token is not None,
            UPCAST=_INTERPRET and hidden.dtype != torch.float32,
            DOT_PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32",
            EVEN_K=d % cfg.block_k == 0,
            SPLIT=splits > 1,
            BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    if splits == 1:
        return out_idx, out_lse, out_lp

    # Second stage, fixed order over splits (deterministic). Splits are ordered by vocabulary,
    # and argmax picks the first maximum, so ties still resolve to the lowest token index.
    lse_wo, best = part.unbind(0)
    if masked_token is not None:
        lse_wo = torch.cat([lse_wo, out_lse[None]])  # out_lse holds the masked token's logit
    lse = torch.logsumexp(lse_wo, dim=0)
    out_idx = part_idx.gather(0, best.argmax(dim=0, keepdim=True)).squeeze(0).to(torch.int64)
    return out_idx, lse, out_lp - lse  # out_lp holds the target's logit
