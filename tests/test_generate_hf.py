"""mode="generate": free-running greedy continuations and Pythia's score against HF `generate`.

Oracle: `model.generate(do_sample=False, min_new_tokens=C)` in fp32 (and Pythia's own
`max_length=64, min_length=64`), on tiny random GPT-NeoX, Llama, GPT-2 and OPT models whose
weights are drawn wide enough that no greedy step is a near-tie (see tests/gen_oracle.py).
Rows: memorized on purpose (the model's own greedy continuation), the same with the token at
every position 0..C-1 changed (and, for some, random tokens after it), and random rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gen_oracle import (
    build_rows,
    hf_greedy,
    levenshtein,
    min_top2_gap,
    random_prompts,
    varied_model,
)

from engine.generate import (
    gen_columns,
    generation_columns,
    resume_greedy,
    teacher_forced_greedy,
)
from engine.models import wrap_model

P, C = 32, 32
ARCHS = ("gpt_neox", "llama", "gpt2", "opt")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=ARCHS)
def case(request):
    model = varied_model(request.param)
    rows, want, mlen = build_rows(model, prefix_len=P, cont_len=C)
    return request.param, model, wrap_model(model), rows, want, mlen


def test_oracle_rows_are_far_from_ties(case):
    arch, model, _, rows, want, _ = case
    # equality with generate is only a fair requirement when no greedy step is a near-tie
    assert min_top2_gap(model, rows, want, P) > 1e-4, arch


def test_resumed_greedy_equals_hf_generate(case):
    arch, _, sm, rows, want, mlen = case
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    assert torch.equal(ml, mlen), arch
    # the set covers every first-mismatch position, memorized rows and random rows
    assert set(mlen.tolist()) >= set(range(C + 1))
    greedy = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                           tf_argmax=tf, cache=cache)
    assert torch.equal(greedy, want), (arch, (greedy != want).any(1).nonzero().flatten())


def test_columns_equal_hf_generate(case):
    arch, _, sm, rows, want, _ = case
    cols = gen_columns(sm, rows, prefix_len=P, cont_len=C, masked_token=0, keep_tokens=True)
    truth = rows[:, P:]
    count = (want == truth).sum(1).numpy()
    np.testing.assert_array_equal(cols["gen_match_count"], count)
    np.testing.assert_array_equal(cols["gen_score"], (count / C).astype(np.float32))
    assert cols["gen_score"].dtype == np.float32 and cols["gen_match_count"].dtype == np.int16
    dist = [levenshtein(a, b) for a, b in zip(want.tolist(), truth.tolist())]
    np.testing.assert_array_equal(cols["gen_edit_distance"], dist)
    np.testing.assert_array_equal(np.stack(cols["gen_tokens"]), want.numpy())
    # memorized rows score 1; a row changed at j alone scores (C-1)/C
    mem = count == C
    assert mem.sum() >= 3 and (cols["gen_score"][mem] == 1).all()


def test_resume_without_the_scorers_cache(case):
    """Rebuilding the prefix (no cache, with or without the scorer's argmax) decodes the same."""
    arch, _, sm, rows, want, mlen = case
    tf, _, _ = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    g1 = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=mlen)
    g2 = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=mlen,
                       tf_argmax=tf)
    assert torch.equal(g1, want) and torch.equal(g2, want), arch


def test_pythia_call_is_reproduced():
    """Pythia's evaluation: generate(ctx, max_length=64, min_length=64) (EOS never emitted)."""
    model = varied_model("gpt_neox", seed=3)
    # make EOS (id 0) a frequent greedy choice so that masking it matters
    with torch.no_grad():
        model.get_output_embeddings().weight[0] *= 4
    sm = wrap_model(model)
    rows = random_prompts(12, P + C, model.config.vocab_size, seed=5)
    want = hf_greedy(model, rows[:, :P], C, pythia=True)
    assert not (want == 0).any()
    got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=sm.eos_token_id)
    assert torch.equal(got, want)
    # without the mask the model would have emitted EOS: the mask is doing real work
    free = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=None)
    assert (free == 0).any()


def test_unmasked_decoding_matches_generate_without_eos():
    """masked_token=None: EOS is an ordinary token and nothing stops (generate with no EOS)."""
    model = varied_model("llama", seed=4, eos_token_id=None)
    with torch.no_grad():
        model.get_output_embeddings().weight[0] *= 4  # tied: id 0 becomes a frequent greedy choice
    sm = wrap_model(model)
    assert sm.eos_token_id is None
    rows = random_prompts(10, P + C, model.config.vocab_size, seed=6)
    want = hf_greedy(model, rows[:, :P], C)
    assert (want == 0).any()
    got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=None)
    assert torch.equal(got, want)


def test_generation_columns_against_brute_force():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(40, 9))
    greedy = truth.copy()
    flip = rng.random(truth.shape) < 0.4
    greedy[flip] = rng.integers(0, 5, size=flip.sum())
    greedy[:5] = np.roll(truth[:5], 1, axis=1)  # shifted copies: low edit distance, few matches
    cols = generation_columns(greedy, truth)
    for i in range(len(truth)):
        assert cols["gen_match_count"][i] == sum(a == b for a, b in zip(greedy[i], truth[i]))
        assert cols["gen_edit_distance"][i] == levenshtein(greedy[i], truth[i])
    assert np.allclose(cols["gen_score"], cols["gen_match_count"] / 9)
    assert "gen_tokens" not in cols


def test_bad_input():
    sm = wrap_model(varied_model("gpt2"))
    rows = random_prompts(2, P + C, 301, seed=1)
    with pytest.raises(ValueError, match="prefix_len"):
        resume_greedy(sm, rows, prefix_len=0, cont_len=C, masked_token=0)
    with pytest.raises(ValueError, match="columns"):
        resume_greedy(sm, rows[:, :-1], prefix_len=P, cont_len=C, masked_token=0)
    with pytest.raises(ValueError, match="integer"):
        resume_greedy(sm, rows.float(), prefix_len=P, cont_len=C, masked_token=0)
    with pytest.raises(ValueError, match="match_len"):
        resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0,
                      match_len=[0, C + 1])
    with pytest.raises(ValueError, match="shape"):
        resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=[0])
    short = sm.backbone(rows[:, : P + 3], use_cache=True).past_key_values
    with pytest.raises(ValueError, match="cache holds 35 slots"):
        resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=[10, 0],
                      tf_argmax=torch.zeros((2, C), dtype=torch.long), cache=short)
    with pytest.raises(ValueError, match="one shape"):
        generation_columns(np.zeros((2, 3)), np.zeros((2, 4)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_hf_generate():
    """The same rows decoded on the GPU (fp32; Triton fused head in the pass, Triton argmax head
    in the lean loop's steps) equal CPU HF generate."""
    model = varied_model("gpt_neox", seed=9)
    rows, want, mlen = build_rows(model, n_memorized=3, n_random=8, seed=51)
    sm = wrap_model(model.cuda())
    tf, ml, cache = teacher_forced_greedy(sm, rows.cuda(), prefix_len=P, cont_len=C,
                                          masked_token=0)
    assert torch.equal(ml.cpu(), mlen)
    got = resume_greedy(sm, rows.cuda(), prefix_len=P, cont_len=C, masked_token=0,
                        match_len=ml, tf_argmax=tf, cache=cache)
    assert torch.equal(got.cpu(), want)
