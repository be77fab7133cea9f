"""kernels.verify: the first Triton launch of each LM head is checked against its torch twin.
A kernel that fails to compile (a deliberately broken kernel) or returns wrong values (a
perturbed host function) falls back to the twin with one warning naming the kernel and dtype,
and the results are the twin's (equal to impl="torch"); near-ties are tolerated; verify=False
skips the comparison. Runs the kernels under the Triton interpreter (CUDA tests at the end)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import: run Triton on the CPU

import dataclasses  # noqa: E402
import importlib  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import kernels.argmax_head_triton as argmax_triton  # noqa: E402
import kernels.fused_head_triton as fused_triton  # noqa: E402
from kernels import fused_head  # noqa: E402
from kernels import verify as kv  # noqa: E402
from kernels.argmax_head import argmax_head  # noqa: E402

fused_module = importlib.import_module("kernels.fused_head")  # `kernels.fused_head` is the function

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(not INTERPRET and not torch.cuda.is_available(),
                                reason="needs TRITON_INTERPRET=1 or CUDA")
DEVICE = "cpu" if INTERPRET else "cuda"


@pytest.fixture(autouse=True)
def fresh_verdicts():
    kv.reset_verification()
    yield
    kv.reset_verification()


def make(n=40, d=32, v=300, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g)
    weight = torch.randn(v, d, generator=g) * (2.0 / d**0.5)
    targets = torch.randint(0, v, (n,), generator=g)
    return (hidden.to(DEVICE, dtype), weight.to(DEVICE, dtype), targets.to(DEVICE))


def assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@triton.jit
def _broken_argmax_kernel(h_ptr, w_ptr, b_ptr, val_ptr, idx_ptr, N, V, D, stride_hn, stride_hd,
                          stride_wv, stride_wd, tiles_per_split, logit_scale, softcap,
                          masked_token, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
                          HAS_SOFTCAP: tl.constexpr, HAS_MASK: tl.constexpr,
                          UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
                          EVEN_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    tl.static_assert(BLOCK_N < 0, "deliberately broken kernel")   # fails at compile time


@triton.jit
def _broken_fused_kernel(h_ptr, w_ptr, b_ptr, t_ptr, idx_ptr, lse_ptr, lp_ptr, part_ptr,
                         part_idx_ptr, N, V, D, stride_hn, stride_hd, stride_wv, stride_wd,
                         tiles_per_split, logit_scale, softcap, masked_token,
                         HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
                         HAS_SOFTCAP: tl.constexpr, HAS_MASK: tl.constexpr,
                         UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
                         EVEN_K: tl.constexpr, SPLIT: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):
    tl.static_assert(BLOCK_N < 0, "deliberately broken kernel")


def perturbed_fused(shift_lse=0.0, shift_argmax=0):
    """The real Triton host function with its outputs moved (a miscompiled kernel)."""
    real = fused_triton.fused_head_triton

    def wrong(hidden, weight, targets, **kw):
        idx, lse, lp = real(hidden, weight, targets, **kw)
        idx = (idx + shift_argmax) % weight.shape[0]
        return idx, lse + shift_lse, lp - shift_lse

    return wrong


class Spy:
    """Counts the calls of a function it wraps."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def test_a_correct_kernel_is_kept_and_checked_once(monkeypatch):
    hidden, weight, targets = make()
    unchecked = fused_head(hidden, weight, targets, masked_token=0, impl="triton", verify=False)
    twin = Spy(fused_module.FUSED_HEAD.twin)
    monkeypatch.setattr(fused_module, "FUSED_HEAD",
                        dataclasses.replace(fused_module.FUSED_HEAD, twin=twin))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = fused_head(hidden, weight, targets, masked_token=0, impl="triton")
        assert twin.calls == 1                   # the check: the twin on the sampled rows
        second = fused_head(hidden, weight, targets, masked_token=0, impl="triton")
    assert twin.calls == 1                       # checked once, then trusted
    assert_same(first, unchecked)                # the kernel's own results are returned
    assert_same(second, unchecked)
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.float32) == "triton"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_kernel_that_fails_to_compile_falls_back_once(monkeypatch, dtype):
    hidden, weight, targets = make(dtype=dtype)
    want = fused_head(hidden, weight, targets, masked_token=0, impl="torch")
    monkeypatch.setattr(fused_triton, "_fused_head_kernel", _broken_fused_kernel)
    name = str(dtype).removeprefix("torch.")
    with pytest.warns(kv.KernelVerificationWarning,
                      match=rf"fused_head on {DEVICE}.*\({name}\).*deliberately broken"):
        got = fused_head(hidden, weight, targets, masked_token=0, impl="triton")
    assert_same(got, want)
    launches = Spy(fused_triton.fused_head_triton)
    monkeypatch.setattr(fused_triton, "fused_head_triton", launches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # once only: no second warning
        again = fused_head(hidden, weight, targets, masked_token=0, impl="triton")
    assert_same(again, want)
    assert launches.calls == 0                   # the rest of the process uses the twin
    note = kv.implementation_note("fused_head", "triton", DEVICE, dtype)
    assert note.startswith("torch (triton failed verification: the Triton launch raised")
    # another dtype is another key: still checked, still the kernel's
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.bfloat16) == (
        "triton (unverified)")


@pytest.mark.parametrize(("shift_lse", "shift_argmax", "what"),
                         [(0.05, 0, "lse differs by up to 0.05"),
                          (0.0, 1, "argmax differs on 16 row")])
def test_a_kernel_with_wrong_values_falls_back(monkeypatch, shift_lse, shift_argmax, what):
    hidden, weight, targets = make()
    want = fused_head(hidden, weight, targets, impl="torch")
    monkeypatch.setattr(fused_triton, "fused_head_triton", perturbed_fused(shift_lse, shift_argmax))
    with pytest.warns(kv.KernelVerificationWarning, match=rf"fused_head .*float32.*{what}"):
        got = fused_head(hidden, weight, targets, impl="triton")
    assert_same(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(fused_head(hidden, weight, targets, impl="triton"), want)
    assert what in kv.implementation_note("fused_head", "auto" if DEVICE == "cuda" else
                                          "triton", DEVICE, torch.float32)


def test_a_lse_error_within_tolerance_is_accepted(monkeypatch):
    hidden, weight, targets = make()
    tol = kv.TOLERANCES[torch.float32].atol
    monkeypatch.setattr(fused_triton, "fused_head_triton", perturbed_fused(shift_lse=tol / 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused_head(hidden, weight, targets, impl="triton")
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.float32) == "triton"


def test_a_near_tie_is_not_a_failure_but_a_clear_gap_is(monkeypatch):
    hidden, weight, targets = make(n=8, v=300)
    # plant a near-tie: token 200 is token 7 nudged by 1e-7 relative; every row's best is one
    # of the two (hidden along token 7's head row)
    weight[200] = weight[7] * (1 + 1e-7)
    hidden[:] = weight[7] * 3
    want = fused_head(hidden, weight, targets, impl="torch")[0]
    assert set(want.tolist()) <= {7, 200}
    picks = [torch.where(want == 7, 200, 7)]   # the kernel "picks" the other of the pair
    real = fused_triton.fused_head_triton

    def swapped(h, w, t, **kw):
        _, lse, lp = real(h, w, t, **kw)
        return picks[0].clone(), lse, lp

    monkeypatch.setattr(fused_triton, "fused_head_triton", swapped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fused_head(hidden, weight, targets, impl="triton")
    assert torch.equal(got[0], picks[0])        # tolerated: a near-tie
    kv.reset_verification()
    weight[200] = weight[7] * 0.5               # now token 200 is far behind token 7
    picks[0] = torch.full_like(want, 200)
    with pytest.warns(kv.KernelVerificationWarning, match="not a near-tie"):
        got = fused_head(hidden, weight, targets, impl="triton")
    assert torch.equal(got[0], torch.full_like(got[0], 7))


def test_the_masked_token_is_never_accepted(monkeypatch):
    hidden, weight, targets = make()
    picks_masked = _wrap_argmax(fused_triton.fused_head_triton, torch.zeros_like)
    monkeypatch.setattr(fused_triton, "fused_head_triton", picks_masked)
    with pytest.warns(kv.KernelVerificationWarning, match="other than the masked token 0"):
        got = fused_head(hidden, weight, targets, masked_token=0, impl="triton")
    assert_same(got, fused_head(hidden, weight, targets, masked_token=0, impl="torch"))


def _wrap_argmax(real, change):
    def wrapped(h, w, t, **kw):
        idx, lse, lp = real(h, w, t, **kw)
        return change(idx), lse, lp

    return wrapped


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_argmax_head_falls_back_on_a_broken_kernel(monkeypatch, dtype):
    hidden, weight, _ = make(dtype=dtype)
    want = argmax_head(hidden, weight, masked_token=3, impl="torch")
    monkeypatch.setattr(argmax_triton, "_argmax_head_kernel", _broken_argmax_kernel)
    name = str(dtype).removeprefix("torch.")
    with pytest.warns(kv.KernelVerificationWarning, match=rf"argmax_head on .*\({name}\)"):
        got = argmax_head(hidden, weight, masked_token=3, impl="triton")
    assert torch.equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(argmax_head(hidden, weight, masked_token=3, impl="triton"), want)
    # the fused head on the same device and dtype is a different kernel: not affected
    assert kv.implementation_note("fused_head", "triton", DEVICE, dtype) == "triton (unverified)"


def test_argmax_head_falls_back_on_wrong_tokens(monkeypatch):
    hidden, weight, _ = make()
    want = argmax_head(hidden, weight, impl="torch")
    real = argmax_triton.argmax_head_triton
    monkeypatch.setattr(argmax_triton, "argmax_head_triton",
                        lambda h, w, **kw: (real(h, w, **kw) + 5) % w.shape[0])
    with pytest.warns(kv.KernelVerificationWarning, match=r"argmax_head .*float32.*argmax differs"):
        got = argmax_head(hidden, weight, impl="triton")
    assert torch.equal(got, want)


def test_verify_off_skips_the_comparison(monkeypatch):
    hidden, weight, targets = make()
    wrong = perturbed_fused(shift_lse=1.0)
    monkeypatch.setattr(fused_triton, "fused_head_triton", wrong)
    compare = Spy(kv._compare)
    monkeypatch.setattr(kv, "_compare", compare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fused_head(hidden, weight, targets, impl="triton", verify=False)
    assert compare.calls == 0                    # the wrong values came through unchecked
    assert torch.allclose(got[1], fused_head(hidden, weight, targets, impl="torch")[1] + 1.0)
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.float32) == (
        "triton (unverified)")
    with pytest.warns(kv.KernelVerificationWarning, match="lse differs"):
        fused_head(hidden, weight, targets, impl="triton", verify=True)
    assert compare.calls == 1                    # verify on: the same values are compared


def test_bad_input_is_a_value_error_not_a_fallback():
    hidden, weight, targets = make()
    targets[3] = 10_000
    with pytest.raises(ValueError, match="targets must be token ids"):
        fused_head(hidden, weight, targets, impl="triton")
    with pytest.raises(ValueError, match="hidden and weight must share one dtype"):
        argmax_head(hidden, weight.half(), impl="triton")
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.float32) == (
        "triton (unverified)")


def test_out_of_memory_is_raised_not_a_fallback(monkeypatch):
    hidden, weight, targets = make()

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory (planted)")

    monkeypatch.setattr(fused_triton, "fused_head_triton", oom)
    with pytest.raises(torch.OutOfMemoryError):
        fused_head(hidden, weight, targets, impl="triton")
    assert kv.implementation_note("fused_head", "triton", DEVICE, torch.float32) == (
        "triton (unverified)")


def test_implementation_note_for_the_twin():
    assert kv.implementation_note("fused_head", "torch", "cuda:0", torch.bfloat16) == "torch"
    assert kv.implementation_note("argmax_head", "auto", "cpu", torch.float32) == "torch"


def test_sample_rows_cover_the_batch():
    assert kv.sample_rows(1).tolist() == [0]
    assert kv.sample_rows(5).tolist() == [0, 1, 2, 3, 4]
    rows = kv.sample_rows(1000)
    assert rows.numel() == kv.SAMPLE_ROWS and rows[0] == 0 and rows[-1] == 999


# --- CUDA (gpu_check.sh runs these with TRITON_INTERPRET=0) ---------------------------------

gpu = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(INTERPRET, reason="run CUDA kernel tests with TRITON_INTERPRET=0"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [16, 8192])         # the split and the single-program variants
def test_gpu_kernels_pass_their_first_use_check(dtype, n):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(n, 768, generator=g).to("cuda", dtype)
    weight = (torch.randn(50304, 768, generator=g) * 0.05).to("cuda", dtype)
    targets = torch.randint(0, 50304, (n,), generator=g).cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error", kv.KernelVerificationWarning)
        fused_head(hidden, weight, targets, masked_token=0)
        argmax_head(hidden, weight, masked_token=0)
    for kernel in ("fused_head", "argmax_head"):
        assert kv.implementation_note(kernel, "auto", "cuda", dtype) == "triton"


for _mark in gpu:
    test_gpu_kernels_pass_their_first_use_check = _mark(test_gpu_kernels_pass_their_first_use_check)
