"""kernels.fused_head_bf16_cpu: the bf16x2 head (logits from two bf16 GEMMs) against the widened
fp32 twin (today's bf16 path) and float64 logits on Pythia-70M/160M head shapes: identical argmax,
NLL within 1e-4 relative; planted exact and near ties; the options; dispatch and the first-use
check."""


import pytest
import torch
from helpers import bf16_head_inputs as make
from helpers import reference_head

import kernels.fused_head_bf16_cpu as bx
from kernels import fused_head, fused_head_torch, native_bf16
from kernels.fused_head import head_implementation_note
from kernels.verify import KernelVerificationWarning

pytestmark = pytest.mark.skipif(not native_bf16("cpu"),
                                reason="the bf16x2 head runs on CPUs with bf16 dot products")


@pytest.mark.parametrize("d", [512, 768], ids=["pythia-70m", "pythia-160m"])
def test_pythia_shapes_match_the_widened_head(d):
    hidden, weight, targets = make(96, d, 50304, seed=d, h_std=3.0)
    got = bx.fused_head_bf16x2(hidden, weight, targets, masked_token=0, chunk=8192)
    want = fused_head_torch(hidden, weight, targets, masked_token=0)
    ref_arg, ref_lse, ref_nll = reference_head(hidden, weight, targets, masked_token=0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[0], ref_arg)
    nll, want_nll = -got[2].double(), -want[2].double()
    assert ((nll - want_nll).abs() <= 1e-4 * want_nll.abs()).all()
    assert ((nll - ref_nll).abs() <= 1e-4 * ref_nll.abs()).all()
    # the split's bound: |logit error| <= ~2^-18 |logit|, so lse is within 2^-16 of itself
    assert torch.allclose(got[1].double(), ref_lse, rtol=2.0**-16, atol=1e-6)


def test_options_match_the_twin():
    hidden, weight, targets = make(40, 64, 3001, seed=3, h_std=4.0)
    bias = (torch.randn(3001) * 0.5).bfloat16()
    for opts in (dict(bias=bias), dict(logit_scale=0.25), dict(softcap=5.0, masked_token=17),
                 dict(bias=bias, logit_scale=-1.5, masked_token=0)):
        got = bx.fused_head_bf16x2(hidden, weight, targets, chunk=500, row_block=16, **opts)
        want = fused_head_torch(hidden, weight, targets, **opts)
        assert torch.equal(got[0], want[0]), opts
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-5)


def test_exact_ties_go_to_the_lowest_index_across_chunks():
    hidden, weight, targets = make(8, 32, 700, seed=5)
    weight[650] = weight[20]          # a duplicate row in a later chunk: an exact tie
    hidden = (weight[20].float() * 8).bfloat16().expand(8, -1).contiguous()
    got = bx.fused_head_bf16x2(hidden, weight, targets, chunk=256)
    assert (got[0] == 20).all()


def test_near_tied_rows_are_decided_by_the_twin(monkeypatch):
    hidden, weight, targets = make(6, 32, 300, seed=7)
    hidden = (weight[10].float() * 6).bfloat16().expand(6, -1).contiguous()
    weight[200] = weight[10]
    weight[200, 0] = weight[10, 0] + weight[10, 0].abs() * 2.0 ** -7   # a tiny logit gap
    calls = []

    def spy(h, *args, **kw):
        calls.append(h.shape[0])
        return fused_head_torch(h, *args, **kw)

    monkeypatch.setattr(bx, "fused_head_torch", spy)
    got = bx.fused_head_bf16x2(hidden, weight, targets, chunk=128)
    want = fused_head_torch(hidden, weight, targets)
    assert calls == [6] and torch.equal(got[0], want[0])


def test_dispatch_sends_other_inputs_to_the_twin():
    hidden, weight, targets = make(12, 32, 200, seed=9)
    h32, w32 = hidden.float(), weight.float()
    got = fused_head(h32, w32, targets, impl="bf16x2")
    want = fused_head_torch(h32, w32, targets)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with pytest.raises(ValueError, match="bf16 hidden and weight"):
        bx.fused_head_bf16x2(h32, w32, targets)


def test_first_use_check_falls_back_on_a_wrong_kernel(monkeypatch):
    hidden, weight, targets = make(20, 32, 300, seed=11)
    real = bx.fused_head_bf16x2

    def broken(*args, **kw):
        argmax, lse, tlp = real(*args, **kw)
        return argmax, lse + 0.5, tlp

    bx.reset_bf16x2_verification()
    monkeypatch.setattr(bx, "fused_head_bf16x2", broken)
    try:
        with pytest.warns(KernelVerificationWarning, match="lse differs"):
            got = fused_head(hidden, weight, targets, impl="bf16x2")
        want = fused_head_torch(hidden, weight, targets)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        again = fused_head(hidden, weight, targets, impl="bf16x2")   # the twin from now on
        assert torch.equal(again[1], want[1])
        note = head_implementation_note("bf16x2", "cpu", torch.bfloat16)
        assert note.startswith("torch (bf16x2 failed verification: lse differs")
    finally:
        bx.reset_bf16x2_verification()
    monkeypatch.setattr(bx, "fused_head_bf16x2", real)
    got = fused_head(hidden, weight, targets, impl="bf16x2")
    assert torch.equal(got[0], want[0])
    assert head_implementation_note("bf16x2", "cpu", torch.bfloat16) == "bf16x2"
    assert head_implementation_note("bf16x2", "cpu", torch.float32) == "torch"
    bx.reset_bf16x2_verification()
    assert head_implementation_note("bf16x2", "cpu",
                               torch.bfloat16) == "bf16x2 (unverified)"


@pytest.mark.slow
def test_smollm2_on_stdlib_text_labels_equal_and_nll_within_the_split_bound():
    """Real model, real text: labels are the widened head's on every row; each NLL is within
    the two-term split's bound, 2^-17 x the row's largest |logit| (float64), of the widened
    head's (the bf16x2 head does not promise 1e-4 relative: see its module docstring)."""
    import sysconfig
    from pathlib import Path

    from engine.models import load_model
    from engine.tokenizers import encode_text, load_tokenizer
    from memtax.demo import smollm2_gguf

    gguf = str(smollm2_gguf())
    sm = load_model(gguf, dtype="bf16", device="cpu")
    text = "\n".join(p.read_text(errors="replace") for p in
                     sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20])
    ids = torch.tensor(encode_text(load_tokenizer(gguf), text)[: 8 * 65]).view(8, 65)
    with torch.inference_mode():
        hidden = sm.backbone(ids[:, :-1]).hidden.reshape(-1, sm.hidden_size)
        targets = ids[:, 1:].reshape(-1)
        got = bx.fused_head_bf16x2(hidden, sm.weight, targets, masked_token=sm.eos_token_id)
        want = fused_head_torch(hidden, sm.weight, targets, masked_token=sm.eos_token_id)
        logit_max = (hidden.double() @ sm.weight.double().T).abs().amax(dim=1)
    assert torch.equal(got[0], want[0])
    assert ((got[2].double() - want[2].double()).abs() <= 2.0**-17 * logit_max).all()
