"""kernels.fused_head: the Triton kernel (CPU interpreter, or CUDA) and its torch twin against
a full float64 `hidden @ weight.T` reference, plus the twin's bounded memory."""

import importlib
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import: run Triton on the CPU

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import reference_logits  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from kernels import fused_head, fused_head_torch  # noqa: E402
from kernels.fused_head_triton import HeadConfig, fused_head_triton  # noqa: E402

# the module, not the function of the same name that kernels/__init__ re-exports
fh = importlib.import_module("kernels.fused_head")
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
TOL = {torch.float32: 1e-5, torch.float16: 2e-3}

# Triton on CPU tensors needs the interpreter; with TRITON_INTERPRET=0 (gpu_check.sh) only the
# CUDA tests below run the kernel.
needs_interpreter = pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")
IMPLS = [pytest.param("triton", marks=needs_interpreter), "torch"]


def reference(hidden, weight, targets, bias=None, scale=1.0, softcap=None, masked=None):
    """Full float64 logits, then the three reductions the fused head must reproduce."""
    logits = reference_logits(hidden, weight, bias, scale, softcap)
    lse = torch.logsumexp(logits, dim=1)
    lp = logits.gather(1, targets[:, None].long()).squeeze(1) - lse
    greedy = logits.clone()
    if masked is not None:
        greedy[:, masked] = float("-inf")
    return greedy.argmax(dim=1), lse, lp, logits


def run(impl, *args, **kw):
    return fused_head(*args, impl=impl, **kw)


def make(n, d, v, dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)
    weight = (torch.randn(v, d, generator=g) * (2.0 / d**0.5)).to(device=device, dtype=dtype)
    targets = torch.randint(0, v, (n,), generator=g).to(device)
    return hidden, weight, targets


def check(out, ref, tol):
    argmax, lse, lp = out
    assert argmax.dtype == torch.int64 and lse.dtype == torch.float32 and lp.dtype == torch.float32
    assert torch.equal(argmax.cpu(), ref[0].cpu())
    torch.testing.assert_close(lse.double().cpu(), ref[1].cpu(), atol=tol, rtol=0)
    torch.testing.assert_close(lp.double().cpu(), ref[2].cpu(), atol=tol, rtol=0)


# --- agreement with the full reference -----------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(
    "n,d,v",
    [
        (1, 32, 100),  # one row; V smaller than any block
        (45, 64, 1000),  # V not a multiple of the vocabulary block (tail tile)
        (130, 48, 2053),  # several row blocks with a tail; d not a multiple of BLOCK_K
    ],
)
def test_matches_full_reference(impl, dtype, n, d, v):
    hidden, weight, targets = make(n, d, v, dtype)
    check(run(impl, hidden, weight, targets), reference(hidden, weight, targets), TOL[dtype])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bias_scale_softcap_and_mask(impl, dtype):
    hidden, weight, targets = make(70, 32, 1500, dtype, seed=1)
    bias = torch.randn(1500, generator=torch.Generator().manual_seed(2))
    kw = dict(bias=bias, logit_scale=0.6, softcap=2.5, masked_token=7)
    ref = reference(hidden, weight, targets, bias, 0.6, 2.5, 7)
    # soft-capping squeezes logits into (-2.5, 2.5): the cap is really in play
    assert ref[3].abs().max() > 2.0
    check(run(impl, hidden, weight, targets, **kw), ref, TOL[dtype])


@needs_interpreter
def test_triton_agrees_with_torch_twin():
    hidden, weight, targets = make(60, 64, 2000, torch.float32, seed=3)
    bias = torch.randn(2000, generator=torch.Generator().manual_seed(4))
    kw = dict(bias=bias, logit_scale=1.3, softcap=5.0, masked_token=0)
    a = fused_head_triton(hidden, weight, targets, **kw)
    b = fused_head_torch(hidden, weight, targets, chunk=700, row_block=32, **kw)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(a[2], b[2], atol=1e-5, rtol=0)


@needs_interpreter
@pytest.mark.parametrize("splits", [2, 5])
def test_vocabulary_split_reduction(splits):
    """Small tiles and several vocabulary splits per row block (the second-stage reduction)."""
    hidden, weight, targets = make(20, 32, 700, torch.float32, seed=5)
    cfg = HeadConfig(block_n=16, block_v=64, block_k=16, splits=splits)
    ref = reference(hidden, weight, targets, masked=3)
    out = fused_head_triton(hidden, weight, targets, masked_token=3, config=cfg)
    check(out, ref, 1e-5)
    again = fused_head_triton(hidden, weight, targets, masked_token=3, config=cfg)
    assert all(torch.equal(x, y) for x, y in zip(out, again))  # deterministic


# --- argmax semantics: ties and the masked token -------------------------------------------


def tied_problem(dtype):
    """Integer-valued data (exact in fp16 and fp32 whatever the summation order) with the best
    weight row copied to several vocabulary positions in different tiles, chunks and splits."""
    g = torch.Generator().manual_seed(6)
    n, d, v = 24, 32, 1500
    hidden = torch.randint(-2, 3, (n, d), generator=g).to(dtype)
    weight = torch.randint(-1, 2, (v, d), generator=g).to(dtype) * 0.25
    champion = hidden.sum(0).sign().to(dtype)  # scores well against every row at once
    for pos in (1300, 130, 777, 131):
        weight[pos] = champion
    weight[900:1000] = weight[130]  # a whole run of ties inside one tile
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, targets


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ties_go_to_lowest_index(impl, dtype):
    hidden, weight, targets = tied_problem(dtype)
    ref = reference(hidden, weight, targets)
    assert (ref[0] == 130).float().mean() > 0.5  # the planted tie decides most rows
    check(run(impl, hidden, weight, targets), ref, TOL[dtype])


@needs_interpreter
def test_ties_across_splits_and_small_tiles():
    hidden, weight, targets = tied_problem(torch.float32)
    ref = reference(hidden, weight, targets)
    cfg = HeadConfig(block_n=16, block_v=64, block_k=16, splits=6)
    check(fused_head_triton(hidden, weight, targets, config=cfg), ref, 1e-5)
    check(fused_head_torch(hidden, weight, targets, chunk=250, row_block=10), ref, 1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_masked_token_is_the_true_maximum(impl, dtype):
    g = torch.Generator().manual_seed(7)
    n, d, v, eos = 33, 32, 1100, 600
    hidden = torch.rand(n, d, generator=g).to(dtype)  # positive, so an all-0.5 row wins
    weight = (torch.randn(v, d, generator=g) * 0.1).to(dtype)
    weight[eos] = 0.5
    targets = torch.randint(0, v, (n,), generator=g)
    targets[:5] = eos  # its log-prob stays the model's own
    unmasked = reference(hidden, weight, targets)
    assert (unmasked[0] == eos).all()
    ref = reference(hidden, weight, targets, masked=eos)
    assert not (ref[0] == eos).any()
    out = run(impl, hidden, weight, targets, masked_token=eos)
    check(out, ref, TOL[dtype])
    torch.testing.assert_close(out[1].double(), unmasked[1], atol=TOL[dtype], rtol=0)
    assert (out[2][:5] > -1.0).all()  # EOS, the likeliest token, keeps its high log-prob


# --- layouts, empty input, dispatch --------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_strided_inputs(impl):
    """Views as the engine passes them: hidden a column slice, weight a row-strided view."""
    big_h, big_w, targets = make(50, 96, 2400, torch.float32, seed=8)
    hidden = big_h[:, 16:80]  # (50, 64), row stride 96
    weight = big_w.view(1200, 2, 96)[:, 0, 16:80]  # (1200, 64), row stride 192
    targets = targets % 1200
    ref = reference(hidden, weight, targets)
    check(run(impl, hidden, weight, targets), ref, 1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_batch(impl):
    hidden, weight, _ = make(0, 32, 100, torch.float32)
    argmax, lse, lp = run(impl, hidden, weight, torch.zeros(0, dtype=torch.int64))
    assert argmax.shape == lse.shape == lp.shape == (0,)


def test_auto_uses_torch_twin_on_cpu(monkeypatch):
    calls = []

    def spy(*args, **kw):
        calls.append(kw)
        return fused_head_torch(*args, **kw)

    monkeypatch.setattr(fh, "fused_head_torch", spy)
    hidden, weight, targets = make(5, 16, 50, torch.float32)
    out = fh.fused_head(hidden, weight, targets, masked_token=2, impl="auto")
    assert len(calls) == 1 and calls[0]["masked_token"] == 2
    check(out, reference(hidden, weight, targets, masked=2), 1e-5)


# --- bad input ------------------------------------------------------------------------------


def _bad_cases():
    h, w, t = make(4, 8, 20, torch.float32)
    return [
        ("hidden must be a 2-D", (h[0], w, t[:1]), {}),
        ("weight must be a .V, d. tensor with d=8", (h, w[:, :5], t), {}),
        ("targets must be a 1-D tensor of length N=4", (h, w, t[:3]), {}),
        ("share one dtype", (h, w.half(), t), {}),
        ("share one dtype", (h.double(), w.double(), t), {}),
        ("targets must be an integer tensor", (h, w, t.float()), {}),
        (r"token ids in \[0, 20\)", (h, w, t + 20), {}),
        (r"token ids in \[0, 20\)", (h, w, t - 100), {}),
        ("bias must be a", (h, w, t), {"bias": torch.zeros(19)}),
        ("masked_token must be a token id", (h, w, t), {"masked_token": 20}),
        ("softcap must be None or a finite positive", (h, w, t), {"softcap": 0.0}),
        ("logit_scale must be a finite non-zero", (h, w, t), {"logit_scale": float("nan")}),
        ("impl must be", (h, w, t), {"impl": "cuda"}),
    ]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("match,args,kw", _bad_cases())
def test_bad_input_raises(impl, match, args, kw):
    kw = {"impl": impl, **kw}
    with pytest.raises(ValueError, match=match):
        fused_head(*args, **kw)


@needs_interpreter
def test_bad_config_raises():
    h, w, t = make(4, 16, 40, torch.float32)
    with pytest.raises(ValueError, match="block_v must be a power of two >= 16"):
        fused_head_triton(h, w, t, config=HeadConfig(block_n=16, block_v=24, block_k=16))


# --- the torch twin's bounded memory -------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (allocations, matmul outputs, temps)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(x, torch.Tensor):
                self.largest = max(self.largest, x.numel() * x.element_size())
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torch_twin_never_allocates_more_than_one_tile(dtype):
    n, d, v, chunk, row_block = 200, 16, 3000, 512, 128
    hidden, weight, targets = make(n, d, v, dtype, seed=9)
    with LargestTensor() as mode:
        out = fused_head_torch(
            hidden, weight, targets, masked_token=1, softcap=4.0, chunk=chunk, row_block=row_block
        )
    tile = row_block * chunk * 4  # one fp32 (row_block, chunk) tile of logits
    assert 0 < mode.largest <= tile < n * v * 4
    check(out, reference(hidden, weight, targets, softcap=4.0, masked=1), TOL[dtype])
    with LargestTensor() as full:
        hidden.float() @ weight.float().T  # the oracle sees the unfused allocation
    assert full.largest == n * v * 4


# --- CUDA (gpu_check.sh runs these with TRITON_INTERPRET=0) ---------------------------------

gpu = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(INTERPRET, reason="run CUDA kernel tests with TRITON_INTERPRET=0"),
]
GPU_TOL = {torch.float32: 5e-5, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def check_gpu(out, ref, tol, masked):
    """As `check`, but an argmax may differ from the float64 reference only on a near-tie
    (fp32 accumulation order differs from float64's)."""
    argmax, lse, lp = (x.cpu() for x in out)
    assert not (argmax == masked).any()
    greedy = ref[3].clone()
    greedy[:, masked] = float("-inf")
    rows = torch.arange(len(argmax))
    if ref[0].numel():
        gap = greedy[rows, ref[0]] - greedy[rows, argmax]
        assert (gap <= 1e-4).all(), f"argmax off by more than a near-tie: {gap.max()}"
        assert (argmax == ref[0]).float().mean() > 0.999
    torch.testing.assert_close(lse.double(), ref[1], atol=tol, rtol=0)
    torch.testing.assert_close(lp.double(), ref[2], atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n,d,v", [(1, 512, 50304), (300, 768, 50304), (4099, 512, 50277)])
def test_gpu_matches_reference(dtype, n, d, v):
    hidden, weight, targets = make(n, d, v, dtype, seed=10, device="cuda")
    bias = torch.randn(v, device="cuda") * 0.1
    kw = dict(bias=bias, logit_scale=0.9, softcap=30.0, masked_token=0)
    ref = reference(hidden.cpu(), weight.cpu(), targets.cpu(), bias.cpu(), 0.9, 30.0, 0)
    out = fused_head(hidden, weight, targets, impl="auto", **kw)
    check_gpu(out, ref, GPU_TOL[dtype], masked=0)
    twin = fused_head_torch(hidden, weight, targets, **kw)
    check_gpu(twin, ref, GPU_TOL[dtype], masked=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_ties_and_mask(dtype):
    hidden, weight, targets = tied_problem(dtype)
    hidden, weight, targets = hidden.cuda(), weight.cuda(), targets.cuda()
    ref = reference(hidden.cpu(), weight.cpu(), targets.cpu(), masked=130)
    out = fused_head(hidden, weight, targets, masked_token=130, impl="triton")
    check(out, ref, GPU_TOL[dtype])  # exact data: argmax must match exactly, ties included
    for splits in (1, 3):
        cfg = HeadConfig(block_n=16, block_v=64, block_k=32, splits=splits)
        check(fused_head_triton(hidden, weight, targets, masked_token=130, config=cfg), ref, 1e-4)


def test_gpu_memory_is_linear_in_n():
    hidden, weight, targets = make(8192, 512, 50304, torch.bfloat16, seed=11, device="cuda")
    fused_head(hidden, weight, targets, impl="triton")  # compile outside the measurement
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fused_head(hidden, weight, targets, masked_token=0, impl="triton")
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < 64 * 8192 * 4  # a few (N,) vectors and split partials, far below N * V


for _name in [k for k in list(globals()) if k.startswith("test_gpu_")]:
    for _mark in gpu:
        globals()[_name] = _mark(globals()[_name])
