"""Fused LM head: per row, the greedy token, the log-sum-exp and the target log-prob.

`fused_head` never materialises the full (N, V) logits. The plain-torch twin reduces the
vocabulary chunk by chunk (bounded memory); the Triton kernel (`kernels.fused_head_triton`)
sits behind the same signature. Semantics shared by both:

    logits = (hidden @ weight.T + bias) * logit_scale
    if softcap: logits = softcap * tanh(logits / softcap)        # scale first, then cap
    argmax = argmax over logits with `masked_token` excluded     # ties -> lowest index
    lse    = logsumexp(logits)                                   # model's own distribution
    target_logprob = logits[target] - lse

Logits are accumulated and reduced in fp32 for every input dtype (fp32, fp16, bf16) and never
rounded to 16 bits, so both implementations agree to fp32 rounding. Both check their inputs
with the same functions (`kernels.validation`); `impl="auto"` picks Triton for CUDA tensors and
torch elsewhere. The Triton kernel is checked against the twin on first use (`kernels.verify`).
"""

from __future__ import annotations

import torch

from kernels.fused_head_twin import DEFAULT_CHUNK, DEFAULT_ROW_BLOCK, fused_head_torch, tile_logits
from kernels.validation import check_head_inputs, check_targets, resolve_impl
from kernels.verify import HeadKernel, checked_launch, implementation_note

__all__ = ["fused_head", "fused_head_torch", "tile_logits", "FUSED_HEAD", "DEFAULT_CHUNK",
           "DEFAULT_ROW_BLOCK"]

def _check_fused(args: tuple, options: dict, on_device: bool) -> None:
    hidden, weight, targets = args
    check_head_inputs(hidden, weight, options["bias"], options["logit_scale"],
                      options["softcap"], options["masked_token"])
    if on_device:
        check_targets(targets, hidden.shape[0], weight.shape[0])


# The fused head as `kernels.verify` checks it on first use.
FUSED_HEAD = HeadKernel("fused_head", "kernels.fused_head_triton.fused_head_triton",
                        fused_head_torch, tile_logits, _check_fused,
                        ("argmax", "lse", "target_logprob"), row_args=(0, 2))


def fused_head(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    masked_token: int | None = None,
    impl: str = "auto",
    verify: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax, log-sum-exp and target log-prob of `hidden @ weight.T` without the logits.

    impl: "auto" (Triton on CUDA, torch elsewhere), "triton" (anywhere Triton runs, including
    its CPU interpreter under TRITON_INTERPRET=1), "torch", or one of the opt-in CPU bf16
    heads, for bf16 inputs on a CPU with bf16 dot products (other inputs go to the torch twin):
    "bf16x2" (logits from two bf16 GEMMs, `kernels.fused_head_bf16_cpu`) or "screened" (one
    bf16 GEMM screens, fp32 decides, rows it cannot vouch for from the twin,
    `kernels.fused_head_screened_cpu`).
    verify: check the Triton kernel (or the CPU bf16 head) against the torch twin on first use
    and fall back to the twin if it fails (`kernels.verify`); False (benchmarks) launches it
    unchecked.
    """
    options = dict(bias=bias, logit_scale=logit_scale, softcap=softcap,
                   masked_token=masked_token)
    if impl == "bf16x2":
        return _bf16x2(hidden, weight, targets, options, verify)
    if impl == "screened":
        return _screened(hidden, weight, targets, options, verify)
    if resolve_impl(impl, hidden) == "torch":
        return fused_head_torch(hidden, weight, targets, **options)
    if verify:
        return checked_launch(FUSED_HEAD, (hidden, weight, targets), options)
    from kernels.fused_head_triton import fused_head_triton  # imported lazily: Triton is heavy

    return fused_head_triton(hidden, weight, targets, **options)


def _bf16x2(hidden, weight, targets, options: dict, verify: bool):
    """The bf16x2 head where it applies (checked on first use unless verify=False), else the
    twin."""
    from kernels import fused_head_bf16_cpu as bf16x2

    if not bf16x2.bf16x2_applies(hidden, weight):
        return fused_head_torch(hidden, weight, targets, **options)
    if verify:
        return bf16x2.checked_bf16x2(hidden, weight, targets, **options)
    return bf16x2.fused_head_bf16x2(hidden, weight, targets, **options)


def _screened(hidden, weight, targets, options: dict, verify: bool):
    """The screened CPU bf16 head where it applies (checked on first use unless
    verify=False), else the twin."""
    from kernels import fused_head_bf16_cpu as cpu_heads
    from kernels import fused_head_screened_cpu as screened

    if not screened.screened_applies(hidden, weight):
        return fused_head_torch(hidden, weight, targets, **options)
    if verify:
        return cpu_heads.checked_cpu_head(
            "screened", lambda *a, **k: screened.fused_head_screened(*a, **k),
            hidden, weight, targets, **options)
    return screened.fused_head_screened(hidden, weight, targets, **options)


def head_implementation_note(impl: str, device, dtype: torch.dtype) -> str:
    """Which implementation `fused_head(impl=impl)` ran on `device` / `dtype` in this process
    (`kernels.verify.implementation_note`; impl="bf16x2" or "screened" answers from that CPU
    bf16 head's own first-use verdict, `kernels.fused_head_bf16_cpu.cpu_head_note`)."""
    if impl in ("bf16x2", "screened"):
        from kernels.fused_head_bf16_cpu import cpu_head_note

        return cpu_head_note(impl, device, dtype)
    return implementation_note("fused_head", impl, device, dtype)
