"""kernels.argmax_head_screened: the bf16-screened argmax head against a float64 argmax and the
plain fp32 argmax head, its error bound against float64 logits, and every path it can take
(narrow and wide windows, exact ties, soft-cap, 16-bit and non-finite inputs handed to the
reference)."""

import pytest
import torch
from helpers import reference_logits

import kernels.argmax_head_screened as scr
from kernels.argmax_head import argmax_head_torch
from kernels.argmax_head_screened import ScreenedHead, argmax_head_screened


def reference(hidden, weight, bias=None, scale=1.0, softcap=None, masked=None):
    """float64 logits, masked column -inf, first (lowest) maximum."""
    logits = reference_logits(hidden, weight, bias, scale, softcap)
    if masked is not None:
        logits[:, masked] = float("-inf")
    return logits.argmax(dim=1)


def make(n, d, v, seed=0, *, scale=1.0, w_std=None):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g) * scale
    weight = torch.randn(v, d, generator=g) * (w_std if w_std is not None else 2.0 / d**0.5)
    return hidden, weight


@pytest.fixture
def reference_calls(monkeypatch):
    """Rows handed to the reference head (argmax_head_torch) by the screened head."""
    calls = []

    def spy(hidden, weight, **kw):
        calls.append(hidden.shape[0])
        return argmax_head_torch(hidden, weight, **kw)

    monkeypatch.setattr(scr, "argmax_head_torch", spy)
    return calls


@pytest.mark.parametrize("d,v,scale", [(48, 1000, 1.0), (512, 5000, 30.0), (200, 3001, 1e-3),
                                       (4096, 600, 1.0)])
def test_bound_holds_against_float64(d, v, scale):
    """|s_v - logit_v| <= a + u|s_v| for every row and token (the window's premise), with a
    bias, both signs, and logits from tiny to large; and the bound is not vacuous."""
    hidden, weight = make(64, d, v, seed=d, scale=scale)
    bias = torch.randn(v, generator=torch.Generator().manual_seed(1)) * scale
    head = ScreenedHead(weight, bias)
    exact = reference_logits(hidden, weight, bias, 1.0, None)                 # float64
    for sign in (1.0, -1.0):
        s, a, u = head.screen(hidden, sign=sign)
        err = (s.double() - sign * exact).abs()
        bound = a.double()[:, None] + u * s.double().abs()
        assert (err <= bound).all()
        assert (err.amax(1) > 0.02 * bound.amax(1)).all()     # real rounding, a real bound


def test_bound_is_nearly_reached_by_aligned_rounding_errors():
    """Cauchy-Schwarz is tight when a rounding error lines up with the other vector: token 0's
    row is the direction of hidden's own bf16 rounding error (and bf16-exact), token 1's row
    rounds to all-ones with an error along hidden (which is bf16-exact). The bound must hold
    there, and come within a factor 2 of the error (a looser bound would pass every other
    test but widen every window)."""
    g = torch.Generator().manual_seed(7)
    d = 256
    h_a = torch.randn(d, generator=g)
    dh = h_a - h_a.bfloat16().float()
    y = torch.randn(d // 2, generator=g).bfloat16().float()
    h_b = torch.cat([y, -y])                                        # exact in bf16, sums to 0
    hidden = torch.stack([h_a, h_b])
    weight = torch.randn(4, d, generator=g) * 0.05
    weight[0] = (dh / dh.norm() * 16).bfloat16().float()           # exact in bf16, along dh
    weight[1] = 1.0 + 2.0 ** -10 * h_b / h_b.abs().max()           # rounds to 1, error along h_b
    head = ScreenedHead(weight)
    s, a, u = head.screen(hidden)
    err = (s.double() - reference_logits(hidden, weight)).abs()
    bound = a.double()[:, None] + u * s.double().abs()
    assert (err <= bound).all()
    assert err[0, 0] > 0.5 * bound[0, 0] and err[1, 1] > 0.5 * bound[1, 1]


@pytest.mark.parametrize("seed", range(3))
def test_matches_float64_and_the_fp32_head(seed, reference_calls):
    hidden, weight = make(40, 64, 4000, seed=seed)
    head = ScreenedHead(weight)
    got = head(hidden)
    assert got.dtype == torch.int64
    assert torch.equal(got, reference(hidden, weight))
    assert torch.equal(got, argmax_head_torch(hidden, weight))
    assert reference_calls == []          # decided by the screen and its candidates alone
    # the masked token is never chosen; rows whose argmax it was take their runner-up
    top = int(got[0])
    hidden[0] = weight[top] * 3
    got = head(hidden, masked_token=top)
    assert torch.equal(got, reference(hidden, weight, masked=top)) and not (got == top).any()


def test_bias_and_scale_of_either_sign():
    hidden, weight = make(33, 32, 900, seed=4)
    bias = torch.randn(900, generator=torch.Generator().manual_seed(5))
    head = ScreenedHead(weight, bias)
    for scale in (0.7, -1.3, 1.0):
        want = reference(hidden, weight, bias, scale, masked=7)
        assert torch.equal(head(hidden, logit_scale=scale, masked_token=7), want), scale
        assert torch.equal(argmax_head_screened(hidden, weight, bias=bias, logit_scale=scale,
                                                masked_token=7), want), scale


def test_exact_ties_go_to_the_lowest_index(reference_calls):
    """Duplicated head rows tie exactly (both in the window, same fp32 logit): lowest index."""
    hidden, weight = make(8, 32, 700, seed=1)
    weight[650] = weight[3]
    weight[520] = weight[130]
    hidden[:4] = weight[3] * 4
    hidden[4:] = weight[130] * 4
    got = ScreenedHead(weight)(hidden)
    assert got.tolist() == [3] * 4 + [130] * 4
    assert reference_calls == []


def test_wide_windows(reference_calls):
    """Rows whose window holds most of the vocabulary (a near-constant head, a flat
    distribution) are decided over it, still exactly."""
    hidden, weight = make(6, 32, 2000, seed=2)
    weight = weight * 1e-6 + 0.05                  # logits nearly equal for every token
    weight[1234] += 2e-4                            # a clear winner, deep inside the window
    head = ScreenedHead(weight)
    hidden = hidden.abs() + 1.0
    s, t = head.window(hidden)
    assert ((s >= t[:, None]).sum(1) > 1000).all()  # every row's window is wide
    got = head(hidden)
    assert (got == 1234).all() and reference_calls == []
    assert torch.equal(got, argmax_head_torch(hidden, weight))


def test_tiny_vocabulary_and_non_finite_states(reference_calls):
    hidden, weight = make(5, 16, 3, seed=3)
    head = ScreenedHead(weight)
    assert torch.equal(head(hidden, masked_token=2), reference(hidden, weight, masked=2))
    # a NaN state leaves no candidate: that row goes to the reference (which takes NaN as
    # the maximum), the others are screened as usual
    hidden[1, 0] = float("nan")
    got = head(hidden, masked_token=2)
    assert reference_calls == [1]
    assert torch.equal(got, argmax_head_torch(hidden, weight, masked_token=2))


def test_softcap_and_16_bit_inputs_use_the_reference(reference_calls):
    hidden, weight = make(7, 32, 500, seed=6)
    head = ScreenedHead(weight)
    got = head(hidden, softcap=2.0)
    assert torch.equal(got, reference(hidden, weight, softcap=2.0))
    assert reference_calls == [7]
    h16, w16 = hidden.half(), weight.half()
    got = argmax_head_screened(h16, w16)
    assert torch.equal(got, argmax_head_torch(h16, w16)) and reference_calls == [7, 7]
    assert head(hidden[:0]).shape == (0,)


def test_head_written_in_place_is_rescreened():
    """A head updated in place (a new checkpoint loaded into the same model) must not be
    screened with the old bf16 copy."""
    hidden, weight = make(16, 32, 800, seed=8)
    bias = torch.zeros(800)
    head = ScreenedHead(weight, bias)
    before = head(hidden)
    with torch.no_grad():
        weight.neg_()                   # every argmax moves (the old top tokens are now last)
    got = head(hidden)
    assert torch.equal(got, reference(hidden, weight, bias)) and not (got == before).any()
    with torch.no_grad():
        bias[5] = 100.0                 # token 5 wins everywhere once the new bias counts
    assert (head(hidden) == 5).all()


def test_bad_input():
    hidden, weight = make(4, 16, 100)
    with pytest.raises(ValueError, match="fp32"):
        ScreenedHead(weight.half())
    with pytest.raises(ValueError, match=r"bias must be None or an fp32 \(100,\)"):
        ScreenedHead(weight, torch.zeros(99))
    head = ScreenedHead(weight)
    with pytest.raises(ValueError, match=r"d=8, got a tensor of shape \(100, 16\)"):
        head(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="masked_token"):
        head(hidden, masked_token=100)
