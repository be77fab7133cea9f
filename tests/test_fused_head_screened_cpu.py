"""kernels.fused_head_screened_cpu: the screened CPU bf16 head (one bf16 GEMM screens, fp32
decides) against the widened fp32 twin (today's bf16 path) and float64 logits: identical argmax,
NLL within 1e-4 |NLL| + 2^-19 |lse| (the twin's own fp32 resolution) on every row, on flat and
peaked rows, planted exact and near ties, the options, shape sweeps; rows its bound rejects
come from the twin; dispatch and the first-use check."""

import pytest
import torch
from helpers import bf16_head_inputs as make
from helpers import reference_head, reference_logits

import kernels.fused_head_bf16_cpu as cpu_heads
import kernels.fused_head_screened_cpu as sc
from kernels import fused_head, fused_head_torch, native_bf16
from kernels.fused_head import head_implementation_note
from kernels.verify import KernelVerificationWarning

pytestmark = pytest.mark.skipif(not native_bf16("cpu"),
                                reason="the screened head runs on CPUs with bf16 dot products")


def assert_matches(got, want, rtol=1e-4):
    """Labels identical; lse and NLL within rtol |NLL| + 2^-19 |lse| (+1e-6) of `want`."""
    assert torch.equal(got[0], want[0])
    nll, want_nll = -got[2].double(), -want[2].double()
    tol = rtol * want_nll.abs() + 2.0**-19 * want[1].double().abs() + 1e-6
    assert ((nll - want_nll).abs() <= tol).all(), float((nll - want_nll).abs().max())
    assert ((got[1].double() - want[1].double()).abs() <= tol).all()


@pytest.mark.parametrize("h_std", [0.3, 3.0], ids=["random-init-scale", "logits-to-30"])
@pytest.mark.parametrize("d", [512, 768], ids=["pythia-70m", "pythia-160m"])
def test_pythia_shapes_match_the_twin_and_float64(d, h_std):
    hidden, weight, targets = make(96, d, 50304, seed=d, h_std=h_std)
    stats = {}
    got = sc.fused_head_screened(hidden, weight, targets, masked_token=0, row_block=64,
                                 stats=stats)
    assert_matches(got, fused_head_torch(hidden, weight, targets, masked_token=0))
    arg, lse, nll = reference_head(hidden, weight, targets, masked_token=0)
    assert torch.equal(got[0], arg)
    assert ((-got[2].double() - nll).abs() <= 1e-4 * nll + 2.0**-19 * lse.abs()).all()
    if h_std == 0.3:   # logits of a random-init model (|logit| < ~3): the screen decides all
        assert stats["twin_rows"] == 0 and stats["exact_pairs"] >= 96


def test_flat_and_peaked_rows():
    """Peaked rows (the hidden state is a multiple of the target's weight row: its logit ~24,
    the rest within ~20 nats) and flat ones (tiny hidden states) alternating in one batch:
    labels and NLLs are the twin's whichever path decided each row."""
    hidden, weight, targets = make(48, 64, 4000, seed=1, h_std=1.0)
    peaked = torch.arange(0, 48, 2)
    hidden[peaked] = (weight[targets[peaked]].float() * 6.0).bfloat16()
    hidden[peaked + 1] = (hidden[peaked + 1].float() * 1e-3).bfloat16()
    stats = {}
    got = sc.fused_head_screened(hidden, weight, targets, row_block=16, stats=stats)
    want = fused_head_torch(hidden, weight, targets)
    assert_matches(got, want)
    logit = reference_logits(hidden[peaked].float(), weight.float())
    assert float(logit.max()) > 20                                  # peaked, as planted
    assert torch.equal(got[0][peaked], targets[peaked])
    # the flat rows' bound always holds; only confident rows (NLL < 1e-2, so a tolerance of
    # ~2^-20 |lse|) can need the twin
    assert stats["twin_rows"] < len(peaked) and stats["exact_pairs"] > 48


def test_ties_within_the_bound_are_decided_in_fp32():
    """An exact tie across distant rows of the head goes to the lowest index; a near tie whose
    gap (~2^-7 of one coordinate's product) is below the bf16 screen's resolution is decided
    by the fp32 logits, as the twin and float64 decide it."""
    hidden, weight, targets = make(8, 32, 700, seed=5)
    weight[650] = weight[20]
    hidden[:4] = (weight[20].float() * 8).bfloat16()
    weight[400] = weight[90]
    weight[400, 0] = (weight[90, 0].float() * (1 + 2.0**-6)).bfloat16()   # slightly larger
    hidden[4:] = (weight[90].float() * 8).bfloat16()
    hidden[4:, 0] = hidden[4:, 0].abs() * torch.tensor([1.0, -1.0, 1.0, -1.0]).bfloat16() * \
        weight[90, 0].sign()
    stats = {}
    got = sc.fused_head_screened(hidden, weight, targets, row_block=3, stats=stats)
    want = fused_head_torch(hidden, weight, targets)
    arg, _, _ = reference_head(hidden, weight, targets)
    assert stats["twin_rows"] == 0                                 # decided by the screen
    assert (got[0][:4] == 20).all()
    assert torch.equal(got[0], want[0]) and torch.equal(got[0], arg)
    assert set(got[0][4:].tolist()) == {90, 400}                    # the sign picks the winner
    assert_matches(got, want)


@pytest.mark.parametrize("opts", [
    dict(), dict(logit_scale=2.0), dict(sign=-1.0, logit_scale=-1.0, masked=5),
    dict(softcap=30.0, masked=5)], ids=["bias", "scale", "negative-scale-masked", "softcap"])
def test_options_match_the_twin_from_the_screen(opts):
    """Six tokens planted 15-18 nats above the rest through the bias (half the targets among
    them): the screen recomputes them in fp32 and screens the rest, and the bound vouches
    for every row, with bias, scale (negative too, the planted bias negated), soft-cap and a
    masked token (the best planted one): labels are float64's."""
    hidden, weight, targets = make(40, 64, 3001, seed=3, h_std=0.5)
    g = torch.Generator().manual_seed(4)
    top = torch.randperm(3001, generator=g)[:6]
    bias = torch.zeros(3001)
    bias[top] = torch.tensor([15.0, 16.0, 16.5, 17.0, 18.0, 18.2]) * opts.pop("sign", 1.0)
    targets[::2] = top[torch.arange(20) % 6]
    if "masked" in opts:
        opts["masked_token"] = int(top[opts.pop("masked")])
    opts["bias"] = bias.bfloat16()
    stats = {}
    got = sc.fused_head_screened(hidden, weight, targets, row_block=16, stats=stats, **opts)
    assert_matches(got, fused_head_torch(hidden, weight, targets, **opts))
    assert stats["twin_rows"] == 0 and stats["exact_pairs"] > 2 * 40
    masked = opts.get("masked_token")
    arg, _, _ = reference_head(hidden, weight, targets, **opts)
    assert torch.equal(got[0], arg) and torch.isin(got[0], top).all()
    assert masked is None or (got[0] != masked).all()


@pytest.mark.parametrize("n,d,v,row_block", [(0, 16, 50, 8), (1, 16, 1, 8), (5, 3, 7, 2),
                                             (300, 64, 1000, 64), (33, 200, 2500, 256)])
def test_shape_sweep_against_the_twin(n, d, v, row_block):
    hidden, weight, targets = make(n, d, v, seed=n + d + v, h_std=2.0)
    got = sc.fused_head_screened(hidden, weight, targets, row_block=row_block)
    want = fused_head_torch(hidden, weight, targets)
    assert all(g.shape == (n,) for g in got)
    assert got[0].dtype == torch.int64 and got[1].dtype == got[2].dtype == torch.float32
    assert_matches(got, want)


def test_rows_the_bound_rejects_come_from_the_twin(monkeypatch):
    """With no tolerance at all (rtol 0, no fp32 floor) only rows without any tail could be
    vouched for, so every row here is the twin's own, bit for bit; a NaN hidden row too. Once
    more than half the rows so far failed, the rest is not screened at all."""
    hidden, weight, targets = make(20, 32, 300, seed=11, h_std=2.0)
    hidden[7] = float("nan")
    calls = []

    def spy(h, *args, **kw):
        calls.append(h.shape[0])
        return fused_head_torch(h, *args, **kw)

    blocks = []
    real_block = sc._block

    def counted(*args, **kw):
        blocks.append(args[1].shape[0])
        return real_block(*args, **kw)

    monkeypatch.setattr(sc, "fused_head_torch", spy)
    monkeypatch.setattr(sc, "_block", counted)
    monkeypatch.setattr(sc, "_LSE_FLOOR", 0.0)
    stats = {}
    got = sc.fused_head_screened(hidden, weight, targets, rtol=0.0, row_block=8, stats=stats)
    want = fused_head_torch(hidden, weight, targets)
    assert calls == [20] and stats["twin_rows"] == 20 and blocks == [8]
    assert torch.equal(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        assert torch.equal(g.isnan(), w.isnan()) and torch.equal(g.nan_to_num(), w.nan_to_num())


def test_bad_input_and_options_are_refused():
    hidden, weight, targets = make(4, 16, 30)
    with pytest.raises(ValueError, match="bf16 hidden and weight"):
        sc.fused_head_screened(hidden.float(), weight.float(), targets)
    with pytest.raises(ValueError, match="tail_nats > 0"):
        sc.fused_head_screened(hidden, weight, targets, tail_nats=0.0)
    with pytest.raises(ValueError, match=r"targets must be token ids in \[0, 30\)"):
        sc.fused_head_screened(hidden, weight, targets + 30)


def test_dispatch_and_first_use_check(monkeypatch):
    hidden, weight, targets = make(20, 32, 300, seed=13)
    h32, w32 = hidden.float(), weight.float()
    got = fused_head(h32, w32, targets, impl="screened")             # not bf16: the twin
    assert all(torch.equal(a, b) for a, b in zip(got, fused_head_torch(h32, w32, targets)))
    want = fused_head_torch(hidden, weight, targets)
    cpu_heads.reset_bf16x2_verification()
    try:
        assert head_implementation_note("screened", "cpu",
                                        torch.bfloat16) == "screened (unverified)"
        assert_matches(fused_head(hidden, weight, targets, impl="screened"), want)
        assert head_implementation_note("screened", "cpu", torch.bfloat16) == "screened"
        assert head_implementation_note("screened", "cpu", torch.float32) == "torch"
        cpu_heads.reset_bf16x2_verification()
        real = sc.fused_head_screened
        monkeypatch.setattr(sc, "fused_head_screened",
                            lambda *a, **k: (real(*a, **k)[0] + 1, *real(*a, **k)[1:]))
        with pytest.warns(KernelVerificationWarning, match="fused_head_screened on cpu"):
            got = fused_head(hidden, weight, targets, impl="screened")
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        note = head_implementation_note("screened", "cpu", torch.bfloat16)
        assert note == "torch (screened failed verification: argmax differs)"
        assert head_implementation_note("bf16x2", "cpu", torch.bfloat16) == "bf16x2 (unverified)"
    finally:
        cpu_heads.reset_bf16x2_verification()


def test_engine_score_with_the_screened_head_records_it():
    """engine.score(head_impl="screened") on a bf16 model: the scores of the widened twin
    (labels exact, floats to 1e-4) and "screened" in the run's metadata."""
    import numpy as np
    from helpers import assert_same_scores

    import engine
    from memtax.testing import tiny_model

    cpu_heads.reset_bf16x2_verification()
    model = tiny_model("gpt_neox").to(torch.bfloat16)
    samples = np.random.default_rng(0).integers(0, 301, (6, 16))
    kw = dict(prefix_len=8, cont_len=8, dtype="bf16", device="cpu", progress=False)
    try:
        got = engine.score(model, samples, head_impl="screened", **kw)
        want = engine.score(model, samples, head_impl="torch", **kw)
        assert got.schema.metadata[b"head_impl"] == b"screened"
        assert_same_scores(got, want, rtol=1e-4)
    finally:
        cpu_heads.reset_bf16x2_verification()
