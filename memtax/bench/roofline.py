"""The CPU's practical roofline: the bf16 GEMM rate measured on this machine, in this run.

A CPU has no datasheet peak that scoring could reach (clocks, cores shared with other work,
AMX or AVX512-BF16), so a CPU run is compared with what a plain bf16 `torch.mm` of the model's
own shapes achieves right before it (oneDNN's best case for those shapes). The rate is the best
of `repeats` timings of each GEMM, the roofline the best over the shapes:

    roofline_gflops(d, d_ff, vocab, tokens)   -> {"head": ..., "mlp": ..., "roofline": ...}
    fraction = model FLOPs / seconds / roofline

Under load (other processes on the same cores) both the roofline and the run slow down, but not
by the same factor; `os.getloadavg()` is reported beside every figure for that reason.
"""

from __future__ import annotations

import time

import torch

__all__ = ["gemm_gflops", "roofline_gflops"]


def gemm_gflops(m: int, k: int, n: int, *, dtype: torch.dtype = torch.bfloat16,
                repeats: int = 5) -> float:
    """Best GFLOP/s of (m, k) @ (k, n) in `dtype` on CPU over `repeats` timings (after one
    warm-up)."""
    if min(m, k, n) < 1 or repeats < 1:
        raise ValueError(f"gemm_gflops needs positive sizes and repeats, got {(m, k, n)} and "
                         f"{repeats}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(n, k, generator=g).to(dtype)
    torch.mm(a, b.T)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b.T)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best / 1e9


def roofline_gflops(d: int, d_ff: int, vocab: int, tokens: int, *,
                    dtype: torch.dtype = torch.bfloat16, repeats: int = 5) -> dict[str, float]:
    """The model's two dominant GEMMs (the LM head over a 4,096-token vocabulary chunk and the
    MLP up-projection) at `tokens` rows: each one's GFLOP/s and their best ("roofline")."""
    rates = {"head": gemm_gflops(tokens, d, min(vocab, 4096), dtype=dtype, repeats=repeats),
             "mlp": gemm_gflops(tokens, d, d_ff, dtype=dtype, repeats=repeats)}
    rates["roofline"] = max(rates.values())
    return rates
