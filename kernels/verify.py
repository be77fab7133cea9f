"""Verification on first use: a Triton LM head is checked against its torch twin before its
results are trusted, and replaced by the twin for the rest of the process if it fails.

The Triton kernels were compiled ahead of time for sm_90/sm_80 and pass under the interpreter,
but a GPU, driver or Triton version nobody has run can still miscompile them. So the first
Triton launch per (process, device, dtype, kernel) -- and again the first launch of each launch
variant (one program per row block, or the vocabulary split over several) -- is checked:

1. the inputs are validated first (a bad input is the caller's ValueError, never a kernel
   failure);
2. the real launch runs; any exception from the Triton path (compilation, resources, launch)
   is a failure, except an out-of-memory error, which is raised as it is (callers back off);
3. up to `SAMPLE_ROWS` rows, spread over the batch (first and last included), are recomputed
   by the torch twin (`kernels.fused_head.fused_head_torch`, `kernels.argmax_head.
   argmax_head_torch`) and compared with the launch's own outputs for those rows:

   argmax           equal, except on a near-tie: where the two picks differ, the twin's logit
                    of its pick and of the kernel's pick (fp32, the heads' exact logit
                    semantics) may differ by at most atol + rtol * |logit|; the kernel's pick
                    must be a token id in [0, V) and never the masked token
   lse, target      |triton - twin| <= atol + rtol * |twin| (NaN only where the twin has NaN)
   log-prob

   with (rtol, atol) from `TOLERANCES` by input dtype: fp32 (1e-5, 1e-4); fp16 and bf16
   (1e-4, 2e-3). Both implementations reduce fp32 logits, so they agree to fp32 rounding
   (~1e-6 measured under the interpreter); the 16-bit bound is looser for tensor-core
   accumulation order, and still well under what rounding the logits to 16 bits would move.

On a failure memtax warns once (`KernelVerificationWarning`, naming the kernel, device, dtype
and the difference), returns the twin's results for the call, and every later call for that
kernel, device and dtype goes to the twin. `implementation_note` says afterwards which
implementation ran ("triton", "torch", "torch (triton failed verification: ...)"), for a run's
metadata. Later launches of a verified variant are not compared again (they run at full speed);
an exception from them still falls back the same way.

While a CUDA graph is being captured nothing is compared (that needs a host sync) and nothing
is caught (a failure there is the capture's: the decode loop then decodes without graphs); the
decode loop's warm-up steps, run eagerly before capture, are its first launches.

The check is on by default; `verify=False` on the dispatchers (`kernels.fused_head`,
`kernels.argmax_head`) skips it -- for benchmarks, which time the kernel itself.

The verdicts are this process's memory of what ran on its devices (a cache, not an option):
`reset_verification()` forgets them (tests; a process that wants to re-check).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable

import torch

from kernels.validation import resolve_impl

__all__ = ["Tolerance", "TOLERANCES", "SAMPLE_ROWS", "HeadKernel", "KernelVerificationWarning",
           "checked_launch", "implementation_note", "reset_verification", "sample_rows"]

SAMPLE_ROWS = 16


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """|triton - twin| <= atol + rtol * |twin| (and the same bound on a near-tie's logit gap)."""

    rtol: float
    atol: float


TOLERANCES = {
    torch.float32: Tolerance(rtol=1e-5, atol=1e-4),
    torch.float16: Tolerance(rtol=1e-4, atol=2e-3),
    torch.bfloat16: Tolerance(rtol=1e-4, atol=2e-3),
}


class KernelVerificationWarning(RuntimeWarning):
    """A Triton kernel failed its first-use check; its torch twin is used instead."""


@dataclasses.dataclass(frozen=True)
class HeadKernel:
    """One LM head op as the check sees it (each dispatcher module defines its own:
    `kernels.fused_head.FUSED_HEAD`, `kernels.argmax_head.ARGMAX_HEAD`).

    name: the kernel's name in warnings and notes. triton_path: "module.function" of the Triton
    host function, looked up at call time. twin: the torch twin (same signature). tile_logits:
    the heads' torch logit function (`kernels.fused_head.tile_logits`), for near-ties.
    check(args, options, on_device): the twin's input checks (on_device: also those that read
    the device, e.g. the target ids' range; first use only). outputs: the output names, argmax
    first (the rest are compared as floats). row_args: the positional arguments indexed by
    row (hidden, targets).
    """

    name: str
    triton_path: str
    twin: Callable
    tile_logits: Callable
    check: Callable[[tuple, dict, bool], None]
    outputs: tuple[str, ...]
    row_args: tuple[int, ...]

    def triton(self) -> Callable:
        module, attr = self.triton_path.rsplit(".", 1)
        return getattr(importlib.import_module(module), attr)

    def take_rows(self, args: tuple, rows: torch.Tensor) -> tuple:
        return tuple(a[rows.to(a.device)] if i in self.row_args else a
                     for i, a in enumerate(args))


@dataclasses.dataclass
class _Verdicts:
    passed: set = dataclasses.field(default_factory=set)      # (key, variant)
    failed: dict = dataclasses.field(default_factory=dict)    # key -> what went wrong


_VERDICTS = _Verdicts()


def reset_verification() -> None:
    """Forget every verdict of this process: the next launches are checked again."""
    _VERDICTS.passed.clear()
    _VERDICTS.failed.clear()


def _device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _key(kernel_name: str, device, dtype: torch.dtype) -> tuple:
    return kernel_name, _device_name(device), dtype


def implementation_note(kernel_name: str, impl: str, device, dtype: torch.dtype) -> str:
    """Which implementation `impl` ("auto"|"triton"|"torch") ran for the kernel named
    `kernel_name` ("fused_head", "argmax_head") on `device` and
    `dtype` in this process: "torch"; "triton" (checked); "triton (unverified)" (no checked
    launch, e.g. verify=False); or "torch (triton failed verification: <why>)". The CPU bf16
    head keeps its own verdict: `kernels.fused_head.head_implementation_note` asks both."""
    if resolve_impl(impl, torch.device(device)) == "torch":
        return "torch"
    key = _key(kernel_name, device, dtype)
    if key in _VERDICTS.failed:
        return f"torch (triton failed verification: {_VERDICTS.failed[key]})"
    if any(k == key for k, _ in _VERDICTS.passed):
        return "triton"
    return "triton (unverified)"


# ---------------------------------------------------------------------------------------------
# The checked launch


def checked_launch(kernel: HeadKernel, args: tuple, options: dict):
    """`kernel`'s Triton launch on `args` / `options`, checked against the twin on first use
    (module docstring); the twin's results once the kernel has failed on this device/dtype."""
    hidden = args[0]
    key = _key(kernel.name, hidden.device, hidden.dtype)
    if key in _VERDICTS.failed:
        return kernel.twin(*args, **options)
    kernel.check(args, options, False)
    if _capturing(hidden):   # no comparison, and a failure belongs to the capture, not the kernel
        return kernel.triton()(*args, **options)
    if hidden.shape[0] == 0:
        return _launch(kernel, key, args, options)
    variant = _variant(hidden, args[1], options)
    if (key, variant) in _VERDICTS.passed:
        return _launch(kernel, key, args, options)
    kernel.check(args, options, True)
    try:
        out = kernel.triton()(*args, **options)
    except Exception as exc:  # noqa: BLE001 - any failure of the Triton path falls back
        _raise_if_oom(exc)
        return _fall_back(kernel, key, f"the Triton launch raised {exc!r}", args, options)
    problem = _compare(kernel, out, args, options)
    if problem is not None:
        return _fall_back(kernel, key, problem, args, options)
    _VERDICTS.passed.add((key, variant))
    return out


def _launch(kernel: HeadKernel, key: tuple, args: tuple, options: dict):
    """A launch that is not compared: an exception still falls back (bad input, already
    checked, and out-of-memory errors are raised)."""
    try:
        return kernel.triton()(*args, **options)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a new specialisation failing to compile
        _raise_if_oom(exc)
        return _fall_back(kernel, key, f"the Triton launch raised {exc!r}", args, options)


def _fall_back(kernel: HeadKernel, key: tuple, problem: str, args: tuple, options: dict):
    _VERDICTS.failed[key] = problem
    _, device, dtype = key
    warnings.warn(
        f"Triton {kernel.name} on {device} ({_dtype_name(dtype)}) failed verification against "
        f"its torch twin: {problem}; using the torch twin for {kernel.name} on {device} "
        f"({_dtype_name(dtype)}) for the rest of this process",
        KernelVerificationWarning, stacklevel=4)
    return kernel.twin(*args, **options)


def _raise_if_oom(exc: BaseException) -> None:
    """Out of memory is the caller's to handle (engine.score halves its batch), not a kernel
    failure."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        raise exc
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        raise exc


def _capturing(hidden: torch.Tensor) -> bool:
    return hidden.is_cuda and torch.cuda.is_current_stream_capturing()


def _variant(hidden: torch.Tensor, weight: torch.Tensor, options: dict) -> str:
    """The launch variant (a separately compiled specialisation): 'split' when the vocabulary
    is split over several programs per row block (small batches on a GPU), else 'single'."""
    from kernels.triton_common import plan_launch

    heavy = options.get("bias") is not None or options.get("softcap") is not None
    return "split" if plan_launch(hidden, weight, heavy, None).splits > 1 else "single"


# ---------------------------------------------------------------------------------------------
# The comparison


def sample_rows(n: int, k: int = SAMPLE_ROWS) -> torch.Tensor:
    """Up to k distinct row indices spread evenly over [0, n), first and last included."""
    return torch.linspace(0, n - 1, min(n, k)).round().long().unique()


def _compare(kernel: HeadKernel, out, args: tuple, options: dict) -> str | None:
    """What differs between the launch's outputs and the twin's on a sample of rows beyond
    the tolerance (module docstring), or None."""
    outs = out if isinstance(out, tuple) else (out,)
    rows = sample_rows(args[0].shape[0])
    sub = kernel.take_rows(args, rows)
    want = kernel.twin(*sub, **options)
    want = want if isinstance(want, tuple) else (want,)
    got = tuple(o[rows.to(o.device)] for o in outs)
    tol = TOLERANCES[args[0].dtype]
    problem = _argmax_problem(kernel, got[0], want[0], sub[0], sub[1], options, tol)
    for name, g, w in zip(kernel.outputs[1:], got[1:], want[1:]):
        problem = problem or _value_problem(name, g, w, tol)
    return None if problem is None else f"{problem} (on {rows.numel()} sampled rows)"


def _argmax_problem(kernel: HeadKernel, got, want, hidden, weight, options: dict,
                    tol: Tolerance) -> str | None:
    v = weight.shape[0]
    masked = options.get("masked_token")
    invalid = (got < 0) | (got >= v)
    if masked is not None:
        invalid |= got == masked
    if bool(invalid.any()):
        return (f"argmax gave token {int(got[invalid][0])}, not a token id in [0, {v})"
                f"{'' if masked is None else f' other than the masked token {masked}'}")
    differ = (got != want).nonzero().flatten()
    if differ.numel() == 0:
        return None
    gaps, bounds = [], []
    for r in differ.tolist():
        pair = torch.stack([want[r], got[r]])
        bias = options.get("bias")
        logits = kernel.tile_logits(
            hidden[r : r + 1].float(), weight[pair].float(),
            bias[pair].float() if bias is not None else None, options.get("logit_scale", 1.0),
            options.get("softcap"), out=torch.empty((1, 2), device=hidden.device))[0]
        gaps.append(float(logits[0] - logits[1]))
        bounds.append(tol.atol + tol.rtol * abs(float(logits[0])))
    worst = max(range(len(gaps)), key=lambda i: gaps[i] - bounds[i])
    if gaps[worst] <= bounds[worst]:
        return None                                         # near-ties only
    return (f"argmax differs on {differ.numel()} row(s), not a near-tie: the twin's token "
            f"beats the kernel's by {gaps[worst]:.3g} in logit (tolerance {bounds[worst]:.3g})")


def _value_problem(name: str, got, want, tol: Tolerance) -> str | None:
    got, want = got.float(), want.float()
    nan_mismatch = torch.isnan(got) != torch.isnan(want)
    err = (got - want).abs().nan_to_num(nan=0.0)
    allowed = tol.atol + tol.rtol * want.abs().nan_to_num(nan=0.0)
    bad = nan_mismatch | (err > allowed)
    if not bool(bad.any()):
        return None
    if bool(nan_mismatch.any()):
        return f"{name} is NaN where the twin's is not (or the reverse)"
    return (f"{name} differs by up to {float(err.max()):.3g} (tolerance {tol.atol:g} + "
            f"{tol.rtol:g} x |value|)")
