"""Screened fused LM head for bf16 on CPU: one bf16 GEMM screens, fp32 decides (opt-in).

The twin (`kernels.fused_head_twin.fused_head_torch`) widens bf16 weights and runs fp32 GEMMs.
This head runs one bf16 GEMM per block of rows (oneDNN: fp32 accumulation, bf16 output) and
recomputes in fp32 only what decides the outputs:

    c     = bf16(exact raw target logit)             per row; exact in bf16, so the shift is
    s     = bf16(h . w - c)                          exact: addmm with C = -c enters oneDNN's
                                                     fp32 accumulator before the one rounding
    z     = epilogue(s + c) (- c where there is no epilogue)     fp32, the row's logits shifted
    S     = {v : z_v >= max z - T}                   T per row: what the tail bound below
                                                     asks for one token outside S, at most
                                                     tail_nats (12)
    exact = fp32 logits of S (one fp32 GEMM of the block against the union of its rows' S,
            the twin's bias -> scale -> soft-cap epilogue) and of the target
    lse   = log(sum_S exp(exact) + sum_rest exp(z))
    argmax = exact argmax over S (the masked token excluded; exact ties -> lowest index)

Error bound per logit (v outside S, or any v before recomputation): with u = 2^-8/(1 - 2^-8)
(bf16 output rounding), gamma = (d + 3) 2^-24 (fp32 accumulation of exact bf16 products and
of C, any order, for oneDNN's sum and for any fp32 head compared with) and
a = gamma (|h| max_v |w_v| + |c|) + 2^-22 (|h| max|w| + max|b| + |c|) (the epilogue's roundings),

    |z_v - logit_v| <= rho_v = |scale| (u |s_v| + a)           (tanh contracts: soft-cap too)

- argmax: S always holds the window {v : z_v >= max z - 2 rho_max} (rho_max from the row's
  largest |s|; the masked token excluded from the max), outside which no token's logit can
  reach the logit of the max-z token, so the exact argmax over S is the fp32 head's.
- lse: tokens outside S enter through exp(z). Their error exp(z_v) - exp(logit_v) lies in
  +-rho_v e^rho_max exp(z_v); the bf16 rounding of the accumulator is round-to-nearest of a
  value whose low 16 bits are effectively random, so the errors are independent and zero-mean
  (an assumption, not a worst case: in the worst case the errors add up and no T short of the
  whole vocabulary would do), and Hoeffding's inequality bounds the tail sum's error, with
  probability 1 - 1e-9 per row, by
        t = 6.54 e^rho_max sqrt(sum_rest rho_v^2 exp(2 z_v)),
  with rho_v^2 <= 2 scale^2 (u^2 s_v^2 + a^2). Each row's lse error is then at most
  -log(1 - t / Z), Z = the row's sum of exp. A row is accepted when that is within
  `rtol` |NLL| + 2^-20 |lse| (the second term: the twin's own distance from float64, 2.5e-5
  nats on SmolLM2-135M's real-text rows with lse up to 44, is ~7 fp32 ulps of lse; no second
  fp32 implementation can promise the twin's bits); otherwise the row goes to the twin (and
  once more than half the rows so far have, the rest of the call goes to the twin without
  screening). Where a block's union of S would make its fp32 GEMM pass `union_max` of the
  vocabulary, S is the argmax window only (for that block and the call's later ones).

Measured (docs/notes/kernels.md, "bf16 on CPU"): on this 2-core AMD EPYC (AVX512-BF16, no
AMX) a bf16 GEMM runs only ~2x an fp32 one, and on real SmolLM2-135M text the mass within 4-12
nats of the max spreads over hundreds to thousands of tokens per row, so most rows fail the
bound and the head is slower than the twin. It is opt-in (`impl="screened"`), never "auto".
"""

from __future__ import annotations

import math

import torch

from kernels.fused_head_bf16_cpu import tile_logits_epilogue, weight_norm_max
from kernels.fused_head_twin import fused_head_torch
from kernels.validation import check_head_inputs, check_targets

__all__ = ["fused_head_screened", "screened_applies", "SCREEN_TAIL_NATS", "SCREEN_ROW_BLOCK",
           "SCREEN_UNION_MAX"]

SCREEN_TAIL_NATS = 12.0       # S reaches at most this many nats below the row's max
SCREEN_ROW_BLOCK = 256        # rows per bf16 GEMM (the whole vocabulary at once: 25 MB bf16)
SCREEN_UNION_MAX = 0.25       # the block's exact fp32 GEMM covers at most this share of V
SCREEN_GIVE_UP = 0.5          # past this share of rows handed to the twin, it takes the rest
_U_OUT = 2.0 ** -8 / (1.0 - 2.0 ** -8)
_U32 = 2.0 ** -24
_HOEFFDING = math.sqrt(2.0 * math.log(2.0 / 1e-9))     # 6.54: failure probability 1e-9 a row
_LSE_FLOOR = 2.0 ** -20
_PAIRS_PER_UNION = 4          # more (row, token) pairs than this x the union budget: too many


def screened_applies(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the screened head serves these inputs: bf16 hidden and weight on a CPU with
    bf16 dot products."""
    from kernels.capability import native_bf16

    return (hidden.device.type == "cpu" and hidden.dtype == torch.bfloat16
            and weight.dtype == torch.bfloat16 and native_bf16("cpu"))


class _Head:
    """The head's tensors and options, and the parts of the error bound fixed per call."""

    def __init__(self, weight, bias, logit_scale, softcap, masked_token, tail_nats, union_max):
        self.weight, self.scale, self.softcap = weight, logit_scale, softcap
        self.bias32 = bias.float() if bias is not None else None
        self.masked, self.tail, self.union_max = masked_token, tail_nats, union_max
        self.window_only = False      # set once a block's S was too large (flat rows)
        self.plain = bias is None and logit_scale == 1.0 and softcap is None
        self.w_max = weight_norm_max(weight)
        self.b_max = float(self.bias32.abs().max()) if bias is not None else 0.0
        self.gamma = (weight.shape[1] + 3) * _U32 / (1.0 - (weight.shape[1] + 3) * _U32)

    def epilogue(self, raw: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """The twin's bias -> scale -> soft-cap on fp32 raw logits (in place); cols: the
        vocabulary columns of raw's last dimension (None: all)."""
        b = self.bias32 if self.bias32 is None or cols is None else self.bias32[cols]
        tile_logits_epilogue(raw, b, self.scale, self.softcap)
        return raw


def fused_head_screened(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    tail_nats: float = SCREEN_TAIL_NATS,
    row_block: int = SCREEN_ROW_BLOCK,
    union_max: float = SCREEN_UNION_MAX,
    rtol: float = 1e-4,
    stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(argmax int64, lse fp32, target_logprob fp32), each (N,), of bf16 hidden (N, d) against
    a bf16 weight (V, d) on CPU with the twin's semantics (`kernels.fused_head`): screened by
    one bf16 GEMM, decided in fp32 (module docstring); rows the bound cannot vouch for come
    from the twin. stats, if given, receives "rows", "twin_rows" and "exact_pairs"."""
    check_head_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
    check_targets(targets, hidden.shape[0], weight.shape[0])
    if hidden.dtype != torch.bfloat16 or weight.dtype != torch.bfloat16:
        raise ValueError(f"fused_head_screened needs bf16 hidden and weight, got "
                         f"{hidden.dtype} and {weight.dtype}")
    if not (tail_nats > 0 and row_block >= 1 and 0 < union_max <= 1 and rtol >= 0):
        raise ValueError(f"need tail_nats > 0, row_block >= 1, 0 < union_max <= 1, rtol >= 0; "
                         f"got {tail_nats}, {row_block}, {union_max}, {rtol}")
    n = hidden.shape[0]
    out = (torch.zeros(n, dtype=torch.int64), torch.empty(n), torch.empty(n))
    twin = torch.zeros(n, dtype=torch.bool)
    head = _Head(weight.detach(), bias, logit_scale, softcap, masked_token, tail_nats, union_max)
    hidden, targets = hidden.detach().contiguous(), targets.to(dtype=torch.int64)
    bufs = _Buffers(min(row_block, max(n, 1)), weight.shape[0])
    pairs = 0
    for r0 in range(0, n, row_block):
        if r0 and int(twin[:r0].sum()) > SCREEN_GIVE_UP * r0:
            twin[r0:] = True            # this head's rows fail the bound: the twin does the rest
            break
        rows = slice(r0, min(r0 + row_block, n))
        pairs += _block(head, hidden[rows], targets[rows], bufs,
                        tuple(o[rows] for o in out), twin[rows], rtol)
    redo = twin.nonzero().flatten()
    if redo.numel():
        fixed = fused_head_torch(hidden[redo], weight, targets[redo], bias=bias,
                                 logit_scale=logit_scale, softcap=softcap,
                                 masked_token=masked_token)
        for o, f in zip(out, fixed):
            o[redo] = f
    if stats is not None:
        stats.update(rows=n, twin_rows=int(redo.numel()), exact_pairs=pairs)
    return out


class _Buffers:
    """One block's reusable tiles: the bf16 screen and its fp32 copy."""

    def __init__(self, rows: int, v: int):
        self.s16 = torch.empty(rows, v, dtype=torch.bfloat16)
        self.z = torch.empty(rows, v)

    def view(self, r: int):
        return self.s16[:r], self.z[:r]


def _block(head: _Head, h16, t, bufs: _Buffers, out, twin, rtol: float) -> int:
    """One block of rows: fills out (argmax, lse, target_logprob) and marks rows for the twin
    in `twin`; returns how many logits it recomputed in fp32."""
    s16, z = bufs.view(h16.shape[0])
    h32 = h16.float()
    raw_t = (head.weight[t].float() * h32).sum(dim=1)            # exact raw target logits
    c = raw_t.to(torch.bfloat16)
    torch.addmm(c.neg()[:, None], h16, head.weight.T, out=s16)   # bf16(h.w - c)
    z.copy_(s16)
    off = c.float()
    if not head.plain:
        head.epilogue(z.add_(off[:, None]))
        off = torch.zeros_like(off)
    rho_a, rho_max = _error_scale(head, h32, c, s16)
    top, top_arg = _row_max(head, z)
    z_t = head.epilogue(raw_t.clone(), t) - off                  # t: each row's own bias
    window = top_arg - 2.0 * rho_max * 1.001                    # S always holds the window
    thr = torch.minimum(top - _tail_nats(head, top, z_t, off, rho_max, rtol), window)
    rs, cs, exact = _exact_set(head, h32, z, thr, window, off)
    argmax = _argmax(head, rs, cs, exact, h16.shape[0])
    twin |= argmax == head.weight.shape[0]                       # no candidate: non-finite
    out[0].copy_(argmax)
    lse, bound = _lse(head, z, s16, rs, cs, exact, top, rho_a, rho_max)
    twin |= ~(bound <= rtol * (lse - z_t).abs() + _LSE_FLOOR * (lse + off).abs())
    out[1].copy_(lse + off)
    out[2].copy_(z_t - lse)
    return int(rs.numel())


def _tail_nats(head: _Head, top, z_t, off, rho_max, rtol: float) -> torch.Tensor:
    """Per row, how far below the max S must reach for the bound to accept the row if one
    token just outside S held the tail: 6.54 rho_max e^rho_max exp(-T) <= half the row's
    tolerance (the NLL at least top - z_t - rho_max, the lse at least top + off - rho_max,
    Z >= 1), at most `tail_nats`."""
    nll = (top - z_t - rho_max).clamp(min=0.0)
    tol = rtol * nll + _LSE_FLOOR * (top + off - rho_max).abs()
    need = torch.log(2.0 * _HOEFFDING * rho_max * torch.exp(rho_max) / tol)
    return need.nan_to_num(nan=head.tail).clamp(min=0.0, max=head.tail)


def _error_scale(head: _Head, h32, c, s16):
    """Per row, (a |scale|, rho_max): rho_v = |scale| (u |s_v| + a) >= |z_v - logit_v| for
    every v, and its largest value over the row."""
    norm = torch.linalg.vector_norm(h32, dim=1) * head.w_max
    cabs = c.float().abs()
    a = head.gamma * (norm + cabs) + 2.0 ** -22 * (norm + head.b_max + cabs) + 2.0 ** -100
    s_abs = torch.maximum(s16.amax(dim=1).float().abs(), s16.amin(dim=1).float().abs())
    scale = abs(head.scale) * 1.001
    return a * scale, (_U_OUT * s_abs + a) * scale


def _row_max(head: _Head, z):
    """(max over all tokens, max over the tokens the argmax may pick)."""
    if head.masked is None:
        top = z.amax(dim=1)
        return top, top
    saved = z[:, head.masked].clone()
    z[:, head.masked] = float("-inf")
    top_arg = z.amax(dim=1)
    z[:, head.masked] = saved
    return torch.maximum(top_arg, saved), top_arg


def _exact_set(head: _Head, h32, z, thr, window, off):
    """(rows, cols, exact shifted logits) of S; where the block's union of S would pass
    `union_max` of V, S shrinks to the argmax window, for this block and the call's later
    ones (flat distributions: their rows are alike)."""
    v = z.shape[1]
    mask = z >= (window if head.window_only else thr)[:, None]
    if not head.window_only and (int(torch.count_nonzero(mask))
                                 > head.union_max * v * _PAIRS_PER_UNION):
        head.window_only = True
        mask = torch.ge(z, window[:, None], out=mask)
    rs, cs = mask.nonzero(as_tuple=True)
    cols, inv = torch.unique(cs, return_inverse=True)
    if cols.numel() > head.union_max * v and not head.window_only:
        head.window_only = True
        rs, cs = torch.ge(z, window[:, None], out=mask).nonzero(as_tuple=True)
        cols, inv = torch.unique(cs, return_inverse=True)
    raw = h32 @ head.weight[cols].float().T                      # (rows, |union|) fp32
    exact = head.epilogue(raw, cols)[rs, inv] - off[rs]
    return rs, cs, exact


def _argmax(head: _Head, rs, cs, exact, n: int) -> torch.Tensor:
    """Per row, the exact argmax over S (masked token excluded, ties -> lowest index); V for
    a row without a finite candidate."""
    if head.masked is not None:
        exact = exact.masked_fill(cs == head.masked, float("-inf"))
    best = torch.full((n,), float("-inf")).scatter_reduce(0, rs, exact, "amax")
    win = exact == best[rs]
    v = head.weight.shape[0]
    return torch.full((n,), v, dtype=torch.int64).scatter_reduce(0, rs[win], cs[win], "amin")


def _lse(head: _Head, z, s16, rs, cs, exact, top, rho_a, rho_max):
    """(lse of the shifted logits, bound on its error) per row (module docstring); z is
    scratch afterwards."""
    z.sub_(top[:, None]).exp_()                                  # the screen's exp(z - top)
    z[rs, cs] = 0.0                                              # S is counted exactly instead
    tail = z.sum(dim=1)
    spread = torch.linalg.vector_norm(z, dim=1).square()         # sum_rest exp(2 (z - top))
    spread_s = torch.linalg.vector_norm(z.mul_(s16), dim=1).square()    # ... times s_v^2
    total = torch.zeros_like(top).index_add_(0, rs, torch.exp(exact - top[rs])) + tail
    var = 2.0 * ((head.scale * 1.001 * _U_OUT) ** 2 * spread_s + rho_a ** 2 * spread)
    ratio = _HOEFFDING * torch.exp(rho_max) * var.sqrt() / total
    bound = torch.where(ratio < 0.5, -torch.log1p(-ratio.clamp(max=0.5)),
                        torch.full_like(ratio, float("inf")))
    return top + torch.log(total), bound
