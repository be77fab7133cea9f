"""Fused LM head for bf16 inputs on CPUs with bf16 dot products: two bf16 GEMMs, fp32 decisions.

The plain twin (`kernels.fused_head_twin.fused_head_torch`) widens each bf16 weight chunk to fp32 and
runs an fp32 GEMM. Products of two bf16 numbers are exact in fp32, so that head's logits are
the exact dot products up to fp32 accumulation; only the GEMM's speed is fp32's. torch 2.13 on
CPU has no entry point for oneDNN's bf16 x bf16 -> fp32 GEMM (`torch.mm(..., out_dtype=)` and
`addmm`/`bmm` `.dtype` are CUDA-only, Inductor refuses `out_dtype` on CPU, `mkldnn_matmul`
wants one dtype for all three tensors, and the `cpublas` bf16 -> fp32 gemm reached through
`brgemm`'s non-VNNI fallback, like MKL's exported `cblas_gemm_bf16bf16f32`, measured at fp32
speed on this AMD EPYC; the CPU flash-attention kernel's fp32 log-sum-exp needs a value tensor
of the same width and ran slower than an fp32 GEMM). What torch does offer is oneDNN's bf16 GEMM with a bf16 output whose fp32
accumulator also takes a bf16 `C` before rounding (`addmm`). So each tile of logits is built
from two bf16 GEMMs ("bf16x2"):

    s = bf16(h @ w.T)                     the logits rounded to bf16: |x - s| <= 2^-9 |x|
    r = bf16(h @ w.T - s)                 addmm(s, h, w.T, beta=-1): the rounding error, rounded
    logit = float(s) + float(r)           |logit - x| <= 2^-9 |r| + accumulation <= ~2^-18 |x|

then the same fp32 epilogue (bias, scale, soft-cap) and online reduction as the twin. Per row:

- lse and the target log-prob come from these logits (the target's from the same tile). Each
  logit is within ~2^-18 |logit| of the fp32 one, so lse is within ~2^-18 max|logit|: on
  SmolLM2-135M (logits up to 38) NLLs differ from the widened twin's by up to 2.2e-4 nats,
  4.5e-4 relative, and 22 of 512 rows exceed 1e-4 relative. This head does NOT meet a 1e-4
  relative NLL bound for models with large logits, and on this CPU it is slower than the twin
  (docs/notes/kernels.md): it is opt-in (impl="bf16x2"), never picked by "auto".
- argmax: each row tracks its two best logits. Where they are closer than twice the error bound
  a = |scale| * (2^-16 + 4 gamma_d) * (|h| max|w| + max|b|) the row is recomputed by the twin
  itself, so the argmax is the fp32 head's on every row (beyond the bound the order is certain).

Only for bf16 hidden and weight on a CPU with native bf16 (`kernels.capability.native_bf16`);
the dispatcher (`kernels.fused_head.fused_head`, impl="bf16x2") sends anything else to the
twin. Its first use per process is checked against the twin on sampled rows with
`kernels.verify`'s bf16 tolerances, and a failure falls back to the twin with a warning.
"""

from __future__ import annotations

import warnings

import torch

from kernels.fused_head_twin import fused_head_torch
from kernels.validation import check_head_inputs, check_targets
from kernels.verify import TOLERANCES, KernelVerificationWarning, sample_rows

__all__ = ["fused_head_bf16x2", "bf16x2_applies", "BF16X2_CHUNK", "BF16X2_ROW_BLOCK",
           "checked_cpu_head", "cpu_head_note", "weight_norm_max", "tile_logits_epilogue"]

# (ROW_BLOCK, CHUNK) tiles: the bf16 GEMMs like long vocabulary chunks; 2048 x 4096 fp32 is
# 32 MiB of tile plus 2 x 16 MiB of bf16 buffers.
BF16X2_CHUNK = 4096
BF16X2_ROW_BLOCK = 2048
_GAMMA_U32 = 2.0 ** -24
_SPLIT_ERR = 2.0 ** -16            # 4x the two-term split's 2^-18 relative error


def bf16x2_applies(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the bf16x2 head serves these inputs: bf16 hidden and weight on a CPU with
    bf16 dot products."""
    from kernels.capability import native_bf16

    return (hidden.device.type == "cpu" and hidden.dtype == torch.bfloat16
            and weight.dtype == torch.bfloat16 and native_bf16("cpu"))


def _tile(h16, w16, out, bufs) -> torch.Tensor:
    """fp32 logits (n, v) of bf16 h16 (n, d) @ w16 (v, d).T into `out`, from two bf16 GEMMs."""
    s, r = bufs
    torch.mm(h16, w16.T, out=s)
    torch.addmm(s, h16, w16.T, beta=-1.0, out=r)     # bf16(h.w - s): C enters the fp32 sum
    out.copy_(s)
    return out.add_(r)


class _Rows:
    """The running per-row state of the online reduction."""

    def __init__(self, n: int, device):
        ninf = float("-inf")
        self.best = torch.full((n,), ninf, device=device)
        self.second = torch.full((n,), ninf, device=device)
        self.idx = torch.zeros((n,), dtype=torch.int64, device=device)
        self.run_max = torch.full((n,), ninf, device=device)
        self.run_sum = torch.zeros((n,), device=device)
        self.tgt = torch.zeros((n,), device=device)


def _reduce(logits, st: _Rows, rows: slice, start: int, targets, mcol: int | None) -> None:
    """Fold one tile (rows, start:start+width) into the row state, in place on the tile."""
    width = logits.shape[1]
    t = targets[rows]
    in_chunk = (t >= start) & (t < start + width)
    picked = logits.gather(1, (t - start).clamp_(0, width - 1)[:, None]).squeeze(1)
    st.tgt[rows] = torch.where(in_chunk, picked, st.tgt[rows])
    if mcol is not None:
        saved = logits[:, mcol].clone()
        logits[:, mcol] = float("-inf")
    top = logits.topk(min(2, width), dim=1)
    cval, cidx = top.values[:, 0], top.indices[:, 0]
    c2 = top.values[:, 1] if width > 1 else torch.full_like(cval, float("-inf"))
    best = st.best[rows]
    st.second[rows] = torch.maximum(torch.maximum(st.second[rows], c2),
                                    torch.minimum(best, cval))
    better = cval > best
    st.best[rows] = torch.where(better, cval, best)
    st.idx[rows] = torch.where(better, cidx + start, st.idx[rows])
    cmax = cval
    if mcol is not None:
        logits[:, mcol] = saved
        cmax = torch.maximum(cval, saved)
    csum = logits.sub_(cmax[:, None]).exp_().sum(dim=1)
    old = st.run_max[rows]
    new = torch.maximum(old, cmax)
    st.run_sum[rows] = st.run_sum[rows] * torch.exp(old - new) + csum * torch.exp(cmax - new)
    st.run_max[rows] = new


_NORMS: dict[tuple, float] = {}      # one entry: the last head's max row norm, by its stamp


def weight_norm_max(weight: torch.Tensor) -> float:
    """max_v |w_v| in fp32, remembered for the last head seen (a pass over the whole head per
    call would cost as much as the widening the bf16x2 head avoids); the stamp changes when the
    head is written in place."""
    stamp = (weight.data_ptr(), weight._version, tuple(weight.shape), tuple(weight.stride()))
    if stamp not in _NORMS:
        _NORMS.clear()
        _NORMS[stamp] = float(torch.linalg.vector_norm(weight, dim=1, dtype=torch.float32).max())
    return _NORMS[stamp]


def _argmax_bound(hidden, weight, bias, logit_scale) -> torch.Tensor:
    """Per row, twice the largest |bf16x2 logit - any fp32 head's logit| (module docstring)."""
    w_max = weight_norm_max(weight)
    b_max = float(bias.float().abs().max()) if bias is not None else 0.0
    h_norm = torch.linalg.vector_norm(hidden, dim=1, dtype=torch.float32)
    gamma = (hidden.shape[1] + 2) * _GAMMA_U32
    scale = (h_norm * w_max + b_max) * abs(logit_scale)
    return 2.0 * (_SPLIT_ERR + 4.0 * gamma) * scale * 1.01 + 2.0 ** -100


def fused_head_bf16x2(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    chunk: int = BF16X2_CHUNK,
    row_block: int = BF16X2_ROW_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(argmax int64, lse fp32, target_logprob fp32), each (N,), of bf16 hidden (N, d) against
    a bf16 weight (V, d) on CPU: the twin's semantics (`kernels.fused_head`), logits from two
    bf16 GEMMs; near-tied rows' argmax from the twin."""
    check_head_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    check_targets(targets, hidden.shape[0], weight.shape[0])
    if hidden.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16:
        raise ValueError(f"fused_head_bf16x2 needs bf16 hidden and weight, got "
                         f"{hidden.dtype} and {weight.dtype}")
    if chunk < 1 or row_block < 1:
        raise ValueError(f"chunk and row_block must be >= 1, got {chunk} and {row_block}")
    n, v = hidden.shape[0], weight.shape[0]
    st = _Rows(n, hidden.device)
    if n == 0:
        return st.idx, st.run_max, st.tgt
    targets = targets.to(dtype=torch.int64)
    hidden = hidden.contiguous()
    row_block, chunk = min(row_block, n), min(chunk, v)
    out = torch.empty(row_block * chunk)
    bufs = [torch.empty(row_block * chunk, dtype=torch.bfloat16) for _ in range(2)]
    for start in range(0, v, chunk):
        stop = min(start + chunk, v)
        w16 = weight[start:stop]
        b = bias[start:stop].float() if bias is not None else None
        mcol = (masked_token - start if masked_token is not None and start <= masked_token < stop
                else None)
        for r0 in range(0, n, row_block):
            r1 = min(r0 + row_block, n)
            shape = (r1 - r0, stop - start)
            logits = _tile(hidden[r0:r1], w16, out[: shape[0] * shape[1]].view(shape),
                           [x[: shape[0] * shape[1]].view(shape) for x in bufs])
            tile_logits_epilogue(logits, b, logit_scale, softcap)
            _reduce(logits, st, slice(r0, r1), start, targets, mcol)
    lse = st.run_max + torch.log(st.run_sum)
    argmax = st.idx
    close = (st.best - st.second <= _argmax_bound(hidden, weight, bias, logit_scale)).nonzero()
    if close.numel():
        rows = close.flatten()
        argmax[rows] = fused_head_torch(hidden[rows], weight, targets[rows], bias=bias,
                                        logit_scale=logit_scale, softcap=softcap,
                                        masked_token=masked_token)[0]
    return argmax, lse, st.tgt - lse


def tile_logits_epilogue(logits, bias32, logit_scale, softcap) -> None:
    """The twin's epilogue (bias, then scale, then soft-cap) on fp32 logits, in place: the
    twin's `tile_logits` with its GEMM already done."""
    if bias32 is not None:
        logits += bias32
    if logit_scale != 1.0:
        logits *= logit_scale
    if softcap is not None:
        logits.div_(softcap).tanh_().mul_(softcap)


# ---------------------------------------------------------------------------------------------
# First use per process: sampled rows against the twin (kernels.verify's bf16 tolerances).
# Each CPU bf16 head ("bf16x2" here, "screened" in kernels.fused_head_screened_cpu) keeps its
# own verdict.

_CHECKED: dict[str, str | None] = {}     # head name -> None (passed) or what went wrong


def checked_bf16x2(hidden, weight, targets, **options):
    """`fused_head_bf16x2`, its first launch in this process compared with the twin on sampled
    rows; after a failure (warned once) every call goes to the twin."""
    return checked_cpu_head("bf16x2", lambda *a, **k: fused_head_bf16x2(*a, **k),
                            hidden, weight, targets, **options)


def checked_cpu_head(name: str, head, hidden, weight, targets, **options):
    """`head(hidden, weight, targets, **options)` (a CPU bf16 head named `name`), its first
    call in this process compared with the twin on sampled rows; after a failure (warned
    once) every call goes to the twin."""
    state = _CHECKED.get(name, "unchecked")
    if state is not None and state != "unchecked":
        return fused_head_torch(hidden, weight, targets, **options)
    out = head(hidden, weight, targets, **options)
    if state is None or hidden.shape[0] == 0:
        return out
    rows = sample_rows(hidden.shape[0])
    want = fused_head_torch(hidden[rows], weight, targets[rows], **options)
    problem = _compare(tuple(o[rows] for o in out), want)
    _CHECKED[name] = problem
    if problem is None:
        return out
    warnings.warn(f"fused_head_{name} on cpu failed verification against its torch twin: "
                  f"{problem}; using the torch twin for the rest of this process",
                  KernelVerificationWarning, stacklevel=4)
    return fused_head_torch(hidden, weight, targets, **options)


def _compare(got, want) -> str | None:
    if not torch.equal(got[0], want[0]):
        return "argmax differs"
    tol = TOLERANCES[torch.bfloat16]
    for name, g, w in zip(("lse", "target_logprob"), got[1:], want[1:]):
        err = (g - w).abs().nan_to_num(nan=0.0)
        if bool((err > tol.atol + tol.rtol * w.abs().nan_to_num(nan=0.0)).any()):
            return f"{name} differs by up to {float(err.max()):.3g}"
        if not torch.equal(torch.isnan(g), torch.isnan(w)):
            return f"{name} is NaN where the twin's is not (or the reverse)"
    return None


def bf16x2_note(device, dtype: torch.dtype) -> str:
    """What impl="bf16x2" ran on `device` / `dtype` in this process (`cpu_head_note`)."""
    return cpu_head_note("bf16x2", device, dtype)


def cpu_head_note(name: str, device, dtype: torch.dtype) -> str:
    """What impl=`name` ("bf16x2", "screened") ran on `device` / `dtype` in this process:
    "torch" where it does not apply, `name` (checked), "<name> (unverified)" (no checked call
    yet), or "torch (<name> failed verification: <why>)"."""
    from kernels.capability import native_bf16

    if (torch.device(device).type != "cpu" or dtype != torch.bfloat16
            or not native_bf16("cpu")):
        return "torch"
    state = _CHECKED.get(name, "unchecked")
    if state == "unchecked":
        return f"{name} (unverified)"
    return name if state is None else f"torch ({name} failed verification: {state})"


def reset_bf16x2_verification() -> None:
    """Forget the first-use verdicts of every CPU bf16 head (tests)."""
    _CHECKED.clear()
