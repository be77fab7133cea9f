"""Triton kernel of the argmax-only LM head (see `kernels.argmax_head`).

One program owns BLOCK_N rows and a contiguous range of vocabulary tiles (grid axis 1 splits the
vocabulary when the row blocks alone would leave SMs idle). Per (BLOCK_N, BLOCK_V) tile it
computes the fused head kernel's own logits and keeps a running (max, lowest index of the max):
the fused head's vocabulary scan without the sum of exponentials
(`kernels.triton_common.scan_vocabulary`). Each split writes its partial (max, index); a
fixed-order torch reduction finishes them (splits are ordered by vocabulary and `argmax` takes
the first maximum, so ties go to the lowest index). Block sizes and split counts come from the
same table as the fused head's (`kernels.triton_common.pick_config`). The launch reads nothing
back to the host, so a CUDA graph can capture it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton_common import (
    HeadConfig,
    first_max_index,
    head_arguments,
    launch_device,
    plan_launch,
    require_triton_device,
    scan_vocabulary,
)
from kernels.validation import check_argmax_inputs

__all__ = ["argmax_head_triton"]


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
    m, best_idx, _ = scan_vocabulary(
        h_rows, w_ptr, b_ptr, pid_s, tiles_per_split, V, D, stride_hd, stride_wv, stride_wd,
        logit_scale, softcap, masked_token,
        HAS_BIAS, HAS_SCALE, HAS_SOFTCAP, HAS_MASK, UPCAST, DOT_PRECISION, EVEN_K, False,
        BLOCK_N, BLOCK_V, BLOCK_K,
    )
    base = pid_s * N + rows
    tl.store(val_ptr + base, m, mask=row_ok)
    tl.store(idx_ptr + base, best_idx, mask=row_ok)


def argmax_head_triton(hidden: torch.Tensor, weight: torch.Tensor, *,
                       bias: torch.Tensor | None = None, logit_scale: float = 1.0,
                       softcap: float | None = None, masked_token: int | None = None,
                       config: HeadConfig | None = None) -> torch.Tensor:
    """Triton argmax head: hidden (N, d), weight (V, d) -> (N,) int64 (CUDA, or the CPU
    interpreter with TRITON_INTERPRET=1 set before import). `config` (a
    `kernels.triton_common.HeadConfig`) overrides the block-size table."""
    check_argmax_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    require_triton_device(hidden, "argmax head")
    n = hidden.shape[0]
    dev = hidden.device
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=dev)
    plan = plan_launch(hidden, weight, bias is not None or softcap is not None, config)
    val = torch.empty((plan.splits, n), dtype=torch.float32, device=dev)
    idx = torch.empty((plan.splits, n), dtype=torch.int32, device=dev)
    scalars, flags = head_arguments(hidden, weight, bias, logit_scale, softcap, masked_token, plan)
    with launch_device(dev):
        _argmax_head_kernel[(plan.row_blocks, plan.splits)](
            hidden, weight, bias if bias is not None else hidden, val, idx, *scalars, **flags,
        )
    if plan.splits == 1:
        return idx[0].to(torch.int64)
    return first_max_index(val, idx)
