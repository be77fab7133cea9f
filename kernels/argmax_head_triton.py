"""Triton kernel of the argmax-only LM head (see `kernels.argmax_head`).

One program owns BLOCK_N rows and a contiguous range of vocabulary tiles (grid axis 1 splits the
vocabulary when the row blocks alone would leave SMs idle). Per (BLOCK_N, BLOCK_V) tile it
computes fp32-accumulated `tl.dot` logits, applies the fused head kernel's own epilogue
(`_finish_logits`: bias, scale, soft-cap), sets the masked token and the padding to -inf and
keeps a running (max, lowest index of the max). Each split writes its partial (max, index); a
fixed-order torch reduction finishes them (splits are ordered by vocabulary and `argmax` takes
the first maximum, so ties go to the lowest index). Block sizes and split counts come from
`kernels.fused_head_triton`'s table. The launch reads nothing back to the host, so a CUDA graph
can capture it.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl

from kernels.argmax_head import _validate
from kernels.fused_head_triton import _finish_logits, _pick_config, _pick_splits

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _argmax_head_kernel(
    h_ptr, w_ptr, b_ptr, val_ptr, idx_ptr,       # val/idx: (SPLITS, N) fp32 / int32
    N, V, D,
    stride_hn, stride_hd, stride_wv, stride_wd,
    tiles_per_split,
    logit_scale, softcap, masked_token,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    rows_c = tl.minimum(rows, N - 1).to(tl.int64)   # tail rows re-read row N-1, dropped at the store
    h_rows = h_ptr + rows_c[:, None] * stride_hn
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
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
                w = tl.load(w_cols + ks[:, None] * stride_wd)
            else:
                h = tl.load(h_rows + ks[None, :] * stride_hd, mask=ks[None, :] < D, other=0.0)
                w = tl.load(w_cols + ks[:, None] * stride_wd, mask=ks[:, None] < D, other=0.0)
            if UPCAST:  # interpreter only (it mishandles 16-bit tl.dot); widening is exact
                h = h.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(h, w, acc, input_precision=DOT_PRECISION)
        x = _finish_logits(acc, b_ptr, cols_c[None, :], logit_scale, softcap,
                           HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)
        skip = cols >= V
        if HAS_MASK:
            skip = skip | (cols == masked_token)
        x = tl.where(skip[None, :], float("-inf"), x)
        tile_max = tl.max(x, axis=1)
        tile_idx = tl.min(tl.where(x == tile_max[:, None], cols[None, :], V), axis=1)
        best_idx = tl.where(tile_max > m, tile_idx, best_idx)   # strict: the earlier tile wins ties
        m = tl.maximum(m, tile_max)
    base = pid_s * N + rows
    tl.store(val_ptr + base, m, mask=row_ok)
    tl.store(idx_ptr + base, best_idx, mask=row_ok)


def argmax_head_triton(hidden: torch.Tensor, weight: torch.Tensor, *,
                       bias: torch.Tensor | None = None, logit_scale: float = 1.0,
                       softcap: float | None = None, masked_token: int | None = None,
                       config=None) -> torch.Tensor:
    """Triton argmax head: hidden (N, d), weight (V, d) -> (N,) int64 (CUDA, or the CPU
    interpreter with TRITON_INTERPRET=1 set before import). `config` (a
    `kernels.fused_head_triton.HeadConfig`) overrides the block-size table."""
    _validate(hidden, weight, bias, logit_scale, softcap, masked_token)
    if not (_INTERPRET or hidden.is_cuda):
        raise ValueError(
            "the Triton argmax head needs CUDA tensors, or TRITON_INTERPRET=1 set before kernels "
            f"are imported to run on the CPU; got tensors on {hidden.device}")
    n, d = hidden.shape
    v = weight.shape[0]
    dev = hidden.device
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=dev)
    cfg = config or _pick_config(n, v, d, hidden.dtype, dev, bias is not None or softcap is not None)
    for name in ("block_n", "block_v", "block_k"):
        b = getattr(cfg, name)
        if b < 16 or b & (b - 1):
            raise ValueError(f"config.{name} must be a power of two >= 16, got {b}")
    row_blocks = triton.cdiv(n, cfg.block_n)
    v_tiles = triton.cdiv(v, cfg.block_v)
    splits = cfg.splits if cfg.splits is not None else _pick_splits(row_blocks, v_tiles, dev)
    splits = max(1, min(splits, v_tiles))
    tiles_per_split = triton.cdiv(v_tiles, splits)
    splits = triton.cdiv(v_tiles, tiles_per_split)   # no empty split: each sees a real column
    val = torch.empty((splits, n), dtype=torch.float32, device=dev)
    idx = torch.empty((splits, n), dtype=torch.int32, device=dev)
    launch_on = torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()
    with launch_on:  # Triton launches on the current device: make it the tensors' one
        _argmax_head_kernel[(row_blocks, splits)](
            hidden, weight, bias if bias is not None else hidden, val, idx,
            n, v, d,
            hidden.stride(0), hidden.stride(1), weight.stride(0), weight.stride(1),
            tiles_per_split,
            float(logit_scale), float(softcap) if softcap is not None else 1.0,
            int(masked_token) if masked_token is not None else -1,
            HAS_BIAS=bias is not None, HAS_SCALE=logit_scale != 1.0,
            HAS_SOFTCAP=softcap is not None, HAS_MASK=masked_token is not None,
            UPCAST=_INTERPRET and hidden.dtype != torch.float32,
            DOT_PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32",
            EVEN_K=d % cfg.block_k == 0,
            BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    if splits == 1:
        return idx[0].to(torch.int64)
    return idx.gather(0, val.argmax(dim=0, keepdim=True)).squeeze(0).to(torch.int64)
