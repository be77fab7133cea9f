"""What the Triton LM head kernels share: the logit tile and its epilogue, the block-size table,
and the launch plan (row blocks, vocabulary splits, constexpr flags).

Both kernels (`kernels.fused_head_triton`, `kernels.argmax_head_triton`) walk the vocabulary the
same way: one program owns BLOCK_N rows and a contiguous range of BLOCK_V-wide vocabulary tiles;
per tile, `masked_tile_logits` computes fp32-accumulated `tl.dot` logits, applies bias, then
scale, then soft-cap (`finish_logits`), and sets the padding and the masked token to -inf;
`scan_vocabulary` folds the tiles into a running maximum and its lowest index, and for the fused
head the sum of exponentials of the online log-sum-exp.

Block sizes come from a small table (`pick_config`), chosen by GPU generation and dtype:

    arch / dtype                     BLOCK_N BLOCK_V BLOCK_K warps stages  smem    regs
    Hopper (sm90+), 16-bit           128     256     64      8     3       144 KiB 241
      ... with bias or soft-cap      128     128     64      8     4       128 KiB 158
    Ampere (sm80/86/89), 16-bit      128     128     32      8     4        48 KiB 220
    any GPU, fp32 (IEEE, no TF32)    64      64      32      4     3        32 KiB 168
    interpreter (CPU)                <=64    <=512   <=128   -     -       few, large tiles: the
                                                                           interpreter pays per op

Why these: the fused head kernel was compiled ahead of time for sm_90a and sm_80 on a machine
without a GPU and its registers read back with `ptxas -v` (`python benchmarks/bench_kernels.py
--ptxas 90`). The picks are the largest tiles that keep the epilogue free of register spills:
128x256 (cuBLAS's usual bf16 tile; half the re-reads of the hidden block per FLOP of 128x128)
fits on Hopper without bias and cap, spills 8 KB per thread with them, and spills on Ampere.
They are not timed yet; `bench_kernels.py --table --sweep` times alternatives on a GPU, and this
table should follow its results.

The CPU interpreter is on when TRITON_INTERPRET=1; Triton reads that variable when it is first
imported, so it must be set before any kernel module is imported. `interpreting()` reads it at
call time.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

__all__ = ["HeadConfig", "LaunchPlan", "interpreting", "require_triton_device", "pick_config",
           "pick_splits", "plan_launch", "head_arguments", "launch_device", "first_max_index",
           "finish_logits", "masked_tile_logits", "scan_vocabulary"]


@dataclass(frozen=True)
class HeadConfig:
    """Launch parameters. block_* must be powers of two and at least 16 (tl.dot's minimum)."""

    block_n: int
    block_v: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    splits: int | None = None  # vocabulary splits per row block; None: pick for the GPU's size


@dataclass(frozen=True)
class LaunchPlan:
    """A kernel launch: the config, the grid (row_blocks, splits) and each split's tile count."""

    config: HeadConfig
    row_blocks: int
    splits: int
    tiles_per_split: int


def interpreting() -> bool:
    """Whether Triton runs on its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def require_triton_device(hidden: torch.Tensor, what: str) -> None:
    """ValueError unless Triton can run on `hidden`'s device (CUDA, or the CPU interpreter)."""
    if not (interpreting() or hidden.is_cuda):
        raise ValueError(
            f"the Triton {what} needs CUDA tensors, or TRITON_INTERPRET=1 set before kernels "
            f"are imported to run on the CPU; got tensors on {hidden.device}")


def _pow2_at_least(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(1, x))))


def pick_config(n: int, v: int, d: int, dtype: torch.dtype, device: torch.device,
                heavy_epilogue: bool) -> HeadConfig:
    """The block-size table documented in the module docstring. heavy_epilogue: a bias or a
    soft-cap, whose extra registers make the largest Hopper tile spill."""
    if interpreting() or device.type != "cuda":
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


def pick_splits(row_blocks: int, v_tiles: int, device: torch.device) -> int:
    """Enough vocabulary splits to give every SM about two programs, each >= 16 tiles."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = triton.cdiv(2 * sms, row_blocks)
    return max(1, min(want, v_tiles // 16))


def plan_launch(hidden: torch.Tensor, weight: torch.Tensor, heavy_epilogue: bool,
                config: HeadConfig | None) -> LaunchPlan:
    """The grid for hidden (N, d) against weight (V, d): `config` or the table's pick, checked,
    and the vocabulary split so that no split is empty (each sees a real column)."""
    n, d = hidden.shape
    v = weight.shape[0]
    cfg = config or pick_config(n, v, d, hidden.dtype, hidden.device, heavy_epilogue)
    for name in ("block_n", "block_v", "block_k"):
        b = getattr(cfg, name)
        if b < 16 or b & (b - 1):
            raise ValueError(f"config.{name} must be a power of two >= 16, got {b}")
    row_blocks = triton.cdiv(n, cfg.block_n)
    v_tiles = triton.cdiv(v, cfg.block_v)
    splits = cfg.splits if cfg.splits is not None else pick_splits(row_blocks, v_tiles,
                                                                    hidden.device)
    splits = max(1, min(splits, v_tiles))
    tiles_per_split = triton.cdiv(v_tiles, splits)
    splits = triton.cdiv(v_tiles, tiles_per_split)
    return LaunchPlan(cfg, row_blocks, splits, tiles_per_split)


def head_arguments(hidden: torch.Tensor, weight: torch.Tensor, bias, logit_scale, softcap,
                   masked_token, plan: LaunchPlan) -> tuple[tuple, dict]:
    """The kernels' shared trailing arguments: (N, V, D, strides, tiles_per_split, logit_scale,
    softcap, masked_token) and the constexpr flags, block sizes, warps and stages."""
    n, d = hidden.shape
    cfg = plan.config
    scalars = (
        n, weight.shape[0], d,
        hidden.stride(0), hidden.stride(1), weight.stride(0), weight.stride(1),
        plan.tiles_per_split,
        float(logit_scale), float(softcap) if softcap is not None else 1.0,
        int(masked_token) if masked_token is not None else -1,
    )
    flags = dict(
        HAS_BIAS=bias is not None, HAS_SCALE=logit_scale != 1.0,
        HAS_SOFTCAP=softcap is not None, HAS_MASK=masked_token is not None,
        # Interpreter only: bf16 tiles would be multiplied as raw uint16 (garbage), and numpy
        # multiplies fp16 slowly; widening is exact and keeps fp32 accumulation.
        UPCAST=interpreting() and hidden.dtype != torch.float32,
        DOT_PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32",
        EVEN_K=d % cfg.block_k == 0,
        BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return scalars, flags


def launch_device(device: torch.device):
    """Context for a launch: Triton launches on the current device, so make it the tensors'."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def first_max_index(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per column of (SPLITS, N) partial maxima `values` and their token ids `index`: the id of
    the first (lowest split) maximum, int64. Splits are ordered by vocabulary, so ties resolve to
    the lowest token id; a fixed-order reduction, hence deterministic."""
    return index.gather(0, values.argmax(dim=0, keepdim=True)).squeeze(0).to(torch.int64)


@triton.jit
def _tanh(x):
    # tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1: never overflows, no cancellation
    # beyond fp32 rounding; portable across Triton versions and the interpreter.
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def finish_logits(x, b_ptr, cols, logit_scale, softcap,
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
def masked_tile_logits(
    h_rows, w_ptr, b_ptr, v0, V, D, stride_hd, stride_wv, stride_wd,
    logit_scale, softcap, masked_token,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    EVEN_K: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The (BLOCK_N, BLOCK_V) fp32 logits of rows `h_rows` against vocabulary tile [v0,
    v0 + BLOCK_V), with the tail's padding and the masked token at -inf; and the tile's columns.
    Columns past V re-read row V-1 (in bounds, no masked loads in the hot loop)."""
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
        if UPCAST:  # interpreter only (see head_arguments)
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, w, acc, input_precision=DOT_PRECISION)
    x = finish_logits(acc, b_ptr, cols_c[None, :], logit_scale, softcap,
                      HAS_BIAS, HAS_SCALE, HAS_SOFTCAP)
    skip = cols >= V  # the tail tile's padding
    if HAS_MASK:
        skip = skip | (cols == masked_token)
    x = tl.where(skip[None, :], float("-inf"), x)
    return x, cols


@triton.jit
def scan_vocabulary(
    h_rows, w_ptr, b_ptr, pid_s, tiles_per_split, V, D, stride_hd, stride_wv, stride_wd,
    logit_scale, softcap, masked_token,
    HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    HAS_MASK: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    EVEN_K: tl.constexpr, WITH_SUM: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program's vocabulary range (split `pid_s`, `tiles_per_split` tiles) for rows
    `h_rows`: (m, best_idx, s) = the running maximum logit (masked token excluded), the lowest
    index holding it, and with WITH_SUM the sum of exp(logit - m) over the same columns (else
    zeros)."""
    m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_N,), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int32)
    v_begin = pid_s * tiles_per_split * BLOCK_V
    v_end = tl.minimum(V, v_begin + tiles_per_split * BLOCK_V)
    for v0 in range(v_begin, v_end, BLOCK_V):
        x, cols = masked_tile_logits(
            h_rows, w_ptr, b_ptr, v0, V, D, stride_hd, stride_wv, stride_wd,
            logit_scale, softcap, masked_token,
            HAS_BIAS, HAS_SCALE, HAS_SOFTCAP, HAS_MASK, UPCAST, DOT_PRECISION, EVEN_K,
            BLOCK_N, BLOCK_V, BLOCK_K,
        )
        # lowest index among the tile's equal maxima; the strict '>' across tiles keeps the
        # earlier (lower) index
        tile_max = tl.max(x, axis=1)
        tile_idx = tl.min(tl.where(x == tile_max[:, None], cols[None, :], V), axis=1)
        best_idx = tl.where(tile_max > m, tile_idx, best_idx)
        m_new = tl.maximum(m, tile_max)
        if WITH_SUM:
            # online sum of exponentials; m_ref avoids -inf - -inf (a tile whose only real
            # column is the masked token) without changing anything else
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_ref) + tl.sum(tl.exp(x - m_ref[:, None]), axis=1)
        m = m_new
    return m, best_idx, s
