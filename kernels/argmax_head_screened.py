"""Screened argmax head (CPU, fp32): a bf16 GEMM finds the few tokens that can be the argmax,
fp32 decides among them.

A greedy decode step needs `argmax(hidden @ weight.T)` over the whole vocabulary; on a CPU that
fp32 GEMM is about half of the step (Pythia-70M shape, 32 rows: ~28 ms of head next to ~30 ms
of backbone). On CPUs with bf16 dot-product instructions (AVX512-BF16, AMX) the same GEMM in
bf16 runs ~2.5x faster, and each bf16 logit is within a bound we compute of the fp32 one:

    s = bf16(hidden) @ bf16(weight).T (+ bias)      screen (n, V), fp32-accumulated
    |s_v - logit_v| <= a + u |s_v|                  a per row, u = 2^-8 / (1 - 2^-8)
    candidates = {v : s_v + a + u|s_v| >= s_max - a - u|s_max|}    (the argmax is among them)
    argmax over the candidates' fp32 logits         a few dot products per row

The bound, with dh = h - bf16(h) and dw_v = w_v - bf16(w_v) (both exact in fp32):
bf16(h).bf16(w_v) - h.w_v = -dh.w_v - h.dw_v + dh.dw_v, so by Cauchy-Schwarz the input rounding
moves a logit by at most |dh| max|w| + |h| max|dw| + |dh| max|dw| (the norms are computed once,
exactly, in float64: |dh| is about 0.4 u |h|, a third of the worst case, which is what makes the
window narrow); the fp32 accumulation of the bf16 products and the fp32 head we compare against
add gamma_d |h| max|w| each (Higham's gamma, any summation order); rounding the GEMM's output to
bf16 adds u |output| <= u (|s_v| + max|b|); the bias adds 2^-22 of the logit scale
|h| max|w| + max|b|; and a margin of 2^-20 of that scale puts every token outside the window
strictly below the argmax in any fp32 head's values, by more than an fp32 logit scale can round
away (plus 2^-100 absolute: bf16 dot-product instructions flush denormals to zero). On SmolLM2-135M (a real Llama-architecture LM, fp32 from GGUF) the window holds a median of
3 tokens (p90 15, max 130 over 2,112 rows) while the measured error is a third of the bound.

The candidates' logits are then computed in fp32 (their head rows gathered, one product-sum),
in the reference's bias -> scale order, and the largest wins, exact ties to the lowest index. So
the result is an fp32 head's argmax: it differs from another fp32 head (the chunked
`kernels.argmax_head.argmax_head_torch`, or HF's one `F.linear`) only where two correct fp32
GEMMs differ from each other, when the two best logits lie within fp32 rounding (~1e-6 of the
logit scale), never because of the screen. The soft-cap is not screened (tanh saturation ties tokens far
apart in logit): with a soft-cap, or for non-fp32 inputs, the reference runs instead.

    head = ScreenedHead(weight, bias)      once per model (bf16 copy: V*d*2 B; rebuilt by itself
                                           if the head is written in place, e.g. load_state_dict)
    head(hidden (n, d), logit_scale=..., softcap=..., masked_token=...)  -> (n,) int64

`bf16_is_fast()` says whether this CPU has bf16 dot products (without them the bf16 GEMM is
emulated and slower than fp32: `engine.decode_cache` screens only where it is fast).
"""

from __future__ import annotations

import torch

from kernels.argmax_head import argmax_head_torch
from kernels.capability import native_bf16
from kernels.validation import check_argmax_inputs, describe

__all__ = ["ScreenedHead", "argmax_head_screened", "bf16_is_fast"]

_U = 2.0 ** -8                       # bf16 unit roundoff
_U_OUT = _U / (1.0 - _U) * 1.001     # |bf16 output - fp32 accumulator| <= _U_OUT * |output|
_U32 = 2.0 ** -24
_NORM_ROWS = 4096                    # head rows per float64 block when taking norms
_SAFETY = 1.001                      # rounding of the bound's own (float64 -> fp32) arithmetic


def bf16_is_fast() -> bool:
    """True on CPUs with bf16 dot-product instructions: `kernels.capability.native_bf16("cpu")`."""
    return native_bf16("cpu")


def _gamma(d: int) -> float:
    """Higham's gamma for an fp32 dot product of length d (any summation order)."""
    return (d + 2) * _U32 / (1.0 - (d + 2) * _U32)


class ScreenedHead:
    """The bf16 copy of an fp32 head and the norms its bound needs; call it like the argmax
    head. weight (V, d) fp32, bias (V,) fp32 or None."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        if (not isinstance(weight, torch.Tensor) or weight.dim() != 2
                or weight.dtype != torch.float32):
            raise ValueError("ScreenedHead needs an fp32 (V, d) weight, got "
                             f"{describe(weight)} of {getattr(weight, 'dtype', None)}")
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.dtype != torch.float32
                                 or bias.shape != (weight.shape[0],)):
            raise ValueError(f"bias must be None or an fp32 ({weight.shape[0]},) tensor, got "
                             f"{describe(bias)}")
        self.weight = weight.detach()          # shares storage and version counter
        self.bias = bias.detach() if bias is not None else None
        self._build()

    def _stamp(self) -> tuple:
        """Changes whenever the head is written in place (e.g. a new checkpoint loaded into
        the same model with load_state_dict), so the bf16 copy is never stale."""
        return tuple((t.data_ptr(), t._version) for t in (self.weight, self.bias) if t is not None)

    def _build(self) -> None:
        weight, bias = self.weight, self.bias
        self.w16 = weight.to(torch.bfloat16)
        # max_v |w_v| and max_v |w_v - bf16(w_v)| in float64 (the bound must not be rounded
        # down), a block of rows at a time (a float64 copy of a whole head is 4x its size)
        self.w_max = self.dw_max = 0.0
        for start in range(0, weight.shape[0], _NORM_ROWS):
            w64 = weight[start : start + _NORM_ROWS].double()
            self.w_max = max(self.w_max, float(w64.norm(dim=1).max()))
            w64 -= self.w16[start : start + _NORM_ROWS].double()
            self.dw_max = max(self.dw_max, float(w64.norm(dim=1).max()))
        self.b_max = float(bias.double().abs().max()) if bias is not None else 0.0
        self.gamma = _gamma(weight.shape[1])
        self.built = self._stamp()

    def screen(self, hidden: torch.Tensor, *, sign: float = 1.0,
               masked_token: int | None = None):
        """s (n, V) fp32 = sign * (bf16 logits + bias), masked token -inf; a (n,) fp32 and
        u (float) with |s_v - sign * logit_v| <= a + u * |s_v| for every v of a row (logit_v
        real-valued or as any fp32 head computes it)."""
        if self._stamp() != self.built:
            self._build()
        h16 = hidden.to(torch.bfloat16)
        s = (h16 @ self.w16.T).float()                                        # (n, V)
        if self.bias is not None:
            s += self.bias
        if sign < 0:
            s.neg_()
        if masked_token is not None:
            s[:, masked_token] = float("-inf")
        h64 = hidden.double()
        hn = h64.norm(dim=1)
        dhn = (h64 - h16.double()).norm(dim=1)                                # |h - bf16(h)|
        norm = hn * self.w_max + self.b_max              # the scale of the row's logits
        a = (dhn * self.w_max + hn * self.dw_max + dhn * self.dw_max          # bf16 rounding
             + 2.0 * self.gamma * (1.0 + _U) ** 2 * hn * self.w_max          # two fp32 sums
             + _U_OUT * self.b_max                                            # |out| <= |s|+|b|
             + 2.0 ** -22 * norm                                              # bias adds
             + 2.0 ** -20 * norm                                              # tie margin
             + 2.0 ** -100)                  # CPUs flush denormals in bf16 dot products
        return s, (a * _SAFETY).float(), _U_OUT

    def window(self, hidden: torch.Tensor, *, sign: float = 1.0,
               masked_token: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(s (n, V), t (n,)): the screen and each row's threshold; the tokens that can be the
        argmax are those with s_v >= t."""
        s, a, u = self.screen(hidden, sign=sign, masked_token=masked_token)
        # candidates: s_v + a + u|s_v| >= s_max - a - u|s_max| (the argmax-s token's lowest
        # possible logit); x + u|x| is increasing, so that is s_v >= t
        top = s.amax(dim=1)
        r = top - 2.0 * a - u * top.abs()
        return s, torch.where(r >= 0, r / (1.0 + u), r / (1.0 - u))

    def __call__(self, hidden: torch.Tensor, *, logit_scale: float = 1.0,
                 softcap: float | None = None, masked_token: int | None = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        check_argmax_inputs(hidden, weight, bias, logit_scale, softcap, masked_token)
        n, v = hidden.shape[0], weight.shape[0]
        ref = dict(bias=bias, logit_scale=logit_scale, softcap=softcap, masked_token=masked_token)
        if softcap is not None or hidden.dtype != torch.float32 or n == 0:
            return argmax_head_torch(hidden, weight, **ref)
        s, t = self.window(hidden, sign=1.0 if logit_scale > 0 else -1.0,
                           masked_token=masked_token)
        rows, cols = (s >= t[:, None]).nonzero(as_tuple=True)                # a few per row
        # the candidates' fp32 logits, in the reference's bias -> scale order
        f = (weight[cols] * hidden[rows]).sum(dim=1)
        if bias is not None:
            f += bias[cols]
        if logit_scale != 1.0:
            f *= logit_scale
        best = torch.full((n,), float("-inf"), device=f.device).scatter_reduce(
            0, rows, f, "amax")
        win = f == best[rows]                                   # exact ties -> lowest index
        nxt = torch.full((n,), v, dtype=torch.int64, device=f.device).scatter_reduce(
            0, rows[win], cols[win], "amin")
        lost = nxt == v             # no candidate: only for non-finite hidden states
        if bool(lost.any()):
            nxt[lost] = argmax_head_torch(hidden[lost], weight, **ref)
        return nxt


def argmax_head_screened(hidden: torch.Tensor, weight: torch.Tensor, *,
                         bias: torch.Tensor | None = None, logit_scale: float = 1.0,
                         softcap: float | None = None, masked_token: int | None = None
                         ) -> torch.Tensor:
    """One-off form of `ScreenedHead` (builds the bf16 copy every call: for tests and
    benchmarks; a decode loop keeps one `ScreenedHead`)."""
    if weight.dtype != torch.float32 or hidden.dtype != torch.float32:
        return argmax_head_torch(hidden, weight, bias=bias, logit_scale=logit_scale,
                                 softcap=softcap, masked_token=masked_token)
    return ScreenedHead(weight, bias)(hidden, logit_scale=logit_scale, softcap=softcap,
                                           masked_token=masked_token)

