"""kernels.argmax_head (the decode steps' argmax-only head): torch twin and Triton kernel (CPU
interpreter, or CUDA) against a float64 full-logits argmax, with exact ties (lowest index must
win), the masked token, bias, scale and soft-cap; and against kernels.fused_head's argmax."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import: run Triton on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import reference_logits  # noqa: E402

from kernels import fused_head_torch  # noqa: E402
from kernels.argmax_head import argmax_head, argmax_head_torch  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")
IMPLS = [pytest.param("triton", marks=needs_interpreter), "torch"]


def reference(hidden, weight, bias=None, scale=1.0, softcap=None, masked=None):
    """float64 logits, masked column -inf, first (lowest) maximum."""
    logits = reference_logits(hidden, weight, bias, scale, softcap)
    if masked is not None:
        logits[:, masked] = float("-inf")
    return logits.argmax(dim=1)


def make(n, d, v, dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)
    weight = (torch.randn(v, d, generator=g) * (2.0 / d**0.5)).to(device=device, dtype=dtype)
    return hidden, weight


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_float64_argmax(impl, dtype):
    # V = 1000: several vocabulary chunks/tiles with a ragged tail; d = 48: ragged K blocks
    hidden, weight = make(37, 48, 1000, dtype)
    want = reference(hidden, weight)
    top = want[0].item()
    got = argmax_head(hidden, weight, impl=impl)
    assert got.dtype == torch.int64 and torch.equal(got, want)
    # the masked token is never chosen; rows whose argmax it was take their runner-up
    hidden[0] = weight[top] * 3  # row 0's greedy token is `top` for sure
    want = reference(hidden, weight, masked=top)
    got = argmax_head(hidden, weight, masked_token=top, impl=impl)
    assert torch.equal(got, want) and not (got == top).any()


@pytest.mark.parametrize("impl", IMPLS)
def test_ties_go_to_the_lowest_index(impl):
    hidden, weight = make(8, 32, 700, torch.float32, seed=1)
    # exact ties: token 650 duplicates 3, 520 duplicates 130 (across chunks/tiles and splits)
    weight[650] = weight[3]
    weight[520] = weight[130]
    hidden[:4] = weight[3] * 4
    hidden[4:] = weight[130] * 4
    got = argmax_head(hidden, weight, impl=impl)
    assert got.tolist() == [3] * 4 + [130] * 4
    # masking the lower twin hands the row to the upper one
    assert argmax_head(hidden[:4], weight, masked_token=3, impl=impl).tolist() == [650] * 4


@pytest.mark.parametrize("impl", IMPLS)
def test_bias_scale_softcap(impl):
    hidden, weight = make(19, 64, 513, torch.float32, seed=2)
    bias = torch.randn(513, generator=torch.Generator().manual_seed(3))
    for kw in ({"bias": bias}, {"logit_scale": 0.25}, {"softcap": 3.0},
               {"bias": bias, "logit_scale": 1.5, "softcap": 2.0}):
        want = reference(hidden, weight, kw.get("bias"), kw.get("logit_scale", 1.0),
                         kw.get("softcap"), masked=7)
        got = argmax_head(hidden, weight, masked_token=7, impl=impl, **kw)
        assert torch.equal(got, want), kw


def test_torch_twin_equals_the_fused_heads_argmax():
    """Same logits, bit for bit: the argmax the decode steps take is the scorer's argmax."""
    hidden, weight = make(64, 64, 9000, torch.float32, seed=4)
    bias = torch.randn(9000, generator=torch.Generator().manual_seed(5)) * 0.1
    want = fused_head_torch(hidden, weight, torch.zeros(64, dtype=torch.long), bias=bias,
                            masked_token=0)[0]
    assert torch.equal(argmax_head_torch(hidden, weight, bias=bias, masked_token=0), want)


@needs_interpreter
def test_triton_vocabulary_splits():
    """Several vocabulary splits per row block (as on a large GPU), reduced in order."""
    from kernels.argmax_head_triton import argmax_head_triton
    from kernels.fused_head_triton import HeadConfig

    hidden, weight = make(5, 32, 600, torch.float32, seed=6)
    weight[590] = weight[40]
    hidden[0] = weight[40] * 4
    got = argmax_head_triton(hidden, weight, masked_token=2,
                             config=HeadConfig(16, 32, 32, splits=4))
    want = reference(hidden, weight, masked=2)
    assert torch.equal(got, want) and got[0].item() == 40


def test_bad_input():
    hidden, weight = make(3, 8, 20, torch.float32)
    with pytest.raises(ValueError, match="hidden must be a 2-D"):
        argmax_head(hidden[0], weight)
    with pytest.raises(ValueError, match="weight must be a"):
        argmax_head(hidden, weight[:, :4])
    with pytest.raises(ValueError, match="masked_token"):
        argmax_head(hidden, weight, masked_token=20)
    with pytest.raises(ValueError, match="dtype"):
        argmax_head(hidden.half(), weight)
    with pytest.raises(ValueError, match="impl"):
        argmax_head(hidden, weight, impl="cuda")
    assert argmax_head(hidden[:0], weight).shape == (0,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_kernel(dtype):
    """On the GPU the kernel equals the torch twin's argmax of the same fp32-accumulated
    logits (Pythia-160M head shape, a decode step's row count)."""
    hidden, weight = make(1024, 768, 50304, dtype, device="cuda")
    got = argmax_head(hidden, weight, masked_token=0)
    want = argmax_head_torch(hidden, weight, masked_token=0)
    # fp32 accumulation in different orders: only near-ties may differ
    assert (got == want).float().mean() > 0.999
