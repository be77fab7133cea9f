"""engine.score against independent oracles: HF greedy `generate` for exact_match / match_len,
HF forward + cross-entropy for the NLL columns, full-logits argmax for tf_accuracy."""

import numpy as np
import pytest
import torch
from helpers import hf_token_logprobs, leading_matches

import engine
from engine.scoring import SCORE_SCHEMA
from memtax.testing import ARCHS, hf_greedy, memorization_rows, tiny_model

V = 301


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    return request.param, tiny_model(request.param, seed=3)


def _rows(model, p, c, n=5, seed=0):
    mem, changed, pos, rand = memorization_rows(model, prefix_len=p, cont_len=c, vocab=V, n=n,
                                                seed=seed)
    return np.concatenate([mem, changed, rand]), pos


def _check_against_oracles(model, rows, p, c, table):
    df = table.to_pandas()
    gen = hf_greedy(model, rows[:, :p], c)
    ml = leading_matches(gen, rows[:, p:])
    np.testing.assert_array_equal(df.match_len.to_numpy(), ml)
    np.testing.assert_array_equal(df.exact_match.to_numpy(), ml == c)
    lp = hf_token_logprobs(model, rows)
    for col, span in (("prompt_nll", lp[:, : p - 1]), ("cont_nll", lp[:, p - 1 :]),
                      ("seq_nll", lp)):
        np.testing.assert_allclose(df[col].to_numpy(), -span.mean(1), atol=1e-4, rtol=0)
        np.testing.assert_allclose(df[col.replace("nll", "ppl")].to_numpy(),
                                   np.exp(-span.mean(1)), rtol=1e-4)
    for col, span in (("prompt_ppl_paper", lp[:, : p - 1]), ("cont_ppl_paper", lp[:, p - 1 :]),
                      ("seq_ppl_paper", lp)):
        np.testing.assert_allclose(df[col].to_numpy(), np.exp(-span.sum(1) / (p + c - 1)),
                                   rtol=1e-4)
    np.testing.assert_allclose(df.seq_ppl_paper, df.prompt_ppl_paper * df.cont_ppl_paper, rtol=1e-5)
    # teacher-forced accuracy: full logits, EOS excluded from the argmax
    with torch.no_grad():
        logits = model(torch.as_tensor(rows)).logits[:, p - 1 : -1]
    logits[..., model.config.eos_token_id] = -torch.inf
    acc = (logits.argmax(-1).numpy() == rows[:, p:]).mean(1)
    np.testing.assert_allclose(df.tf_accuracy.to_numpy(), acc, rtol=1e-6)
    return ml


def test_matches_hf_generate_and_forward(arch_model):
    arch, model = arch_model
    p, c = 6, 8
    rows, pos = _rows(model, p, c)
    table = engine.score(model, rows, prefix_len=p, cont_len=c, batch_size=4, progress=False)
    assert table.schema.names == SCORE_SCHEMA.names
    ml = _check_against_oracles(model, rows, p, c, table)
    n = len(pos)
    assert (ml[:n] == c).all(), "rows built from the model's own greedy output are memorized"
    np.testing.assert_array_equal(ml[n : 2 * n], pos)  # the changed token is the first mismatch
    np.testing.assert_array_equal(table.column("sample_id").to_numpy(), np.arange(len(rows)))
    assert table.schema.metadata[b"arch"] == arch.encode()


def test_default_lengths_32_plus_32():
    model = tiny_model("gpt_neox", seed=5)
    rows, pos = _rows(model, 32, 32, n=3, seed=2)
    table = engine.score(model, rows, batch_size="auto", progress=False)
    ml = _check_against_oracles(model, rows, 32, 32, table)
    assert (ml[:3] == 32).all() and (ml[3:6] == pos).all()
    assert table.schema.metadata[b"prefix_len"] == b"32"


def test_eos_masking_switch():
    """A head that always prefers EOS: masked scoring equals generate(min_new_tokens=...),
    unmasked scoring equals the plain argmax (EOS); the NLLs are the same either way."""
    model = tiny_model("gpt2", seed=1)
    with torch.no_grad():
        model.lm_head.weight[0] = model.lm_head.weight[1:].mean(0)  # tied: also the input
        model.transformer.ln_f.bias[:] = 0
        model.transformer.ln_f.weight[:] = 1
        bias = torch.zeros(V)
        bias[0] = 30.0
    model.lm_head.bias = torch.nn.Parameter(bias)  # a head bias (OPT-like), EOS always on top
    rows, _ = _rows(model, 4, 5, n=3, seed=4)
    masked = engine.score(model, rows, prefix_len=4, cont_len=5, progress=False).to_pandas()
    plain = engine.score(model, rows, prefix_len=4, cont_len=5, mask_eos=False,
                         progress=False).to_pandas()
    gen = hf_greedy(model, rows[:, :4], 5)
    np.testing.assert_array_equal(masked.match_len, leading_matches(gen, rows[:, 4:]))
    assert (masked.match_len[:3] == 5).all()
    assert (plain.match_len == 0).all()  # the unmasked argmax is EOS, never in the rows
    np.testing.assert_allclose(masked.seq_nll, plain.seq_nll, rtol=0, atol=0)
    lp = hf_token_logprobs(model, rows)
    np.testing.assert_allclose(plain.seq_nll, -lp.mean(1), atol=1e-4)


def test_identical_across_batch_sizes():
    model = tiny_model("llama", seed=2)
    rows, _ = _rows(model, 5, 7, n=3, seed=9)
    tabs = [engine.score(model, rows, prefix_len=5, cont_len=7, batch_size=b,
                         progress=False).to_pandas() for b in (2, 5, 9)]
    for t in tabs[1:]:
        for col in ("sample_id", "exact_match", "match_len"):
            np.testing.assert_array_equal(t[col], tabs[0][col])
        for col in SCORE_SCHEMA.names[3:]:
            np.testing.assert_allclose(t[col], tabs[0][col], rtol=2e-6, atol=0)


def test_rows_longer_than_needed_use_their_first_tokens():
    model = tiny_model("opt", seed=0)
    rows, _ = _rows(model, 4, 4, n=2, seed=1)
    extra = np.concatenate([rows, np.full((len(rows), 7), 5)], axis=1)
    a = engine.score(model, rows, prefix_len=4, cont_len=4, progress=False)
    b = engine.score(model, extra, prefix_len=4, cont_len=4, progress=False)
    assert a.select(SCORE_SCHEMA.names).equals(b.select(SCORE_SCHEMA.names))


def test_generate_mode_matches_hf_generate():
    """mode="generate" adds Pythia's free-running score (engine.generate): HF generate's, with
    the exact columns of mode="exact" unchanged; an unknown mode is a clear ValueError."""
    model = tiny_model("gpt_neox", seed=3)
    rows, _ = _rows(model, 5, 6, n=3, seed=8)
    table = engine.score(model, rows, prefix_len=5, cont_len=6, mode="generate",
                         batch_size=4, progress=False)
    gen = hf_greedy(model, rows[:, :5], 6)
    np.testing.assert_allclose(table.column("gen_score").to_numpy(),
                               (gen == rows[:, 5:]).mean(1), rtol=1e-6)
    exact = engine.score(model, rows, prefix_len=5, cont_len=6, batch_size=4, progress=False)
    assert table.select(SCORE_SCHEMA.names).equals(exact.select(SCORE_SCHEMA.names))
    with pytest.raises(ValueError, match="mode must be"):
        engine.score(model, rows, prefix_len=5, cont_len=6, mode="beam", progress=False)


def test_score_batch_never_builds_full_logits(monkeypatch):
    """The head goes through kernels.fused_head only; a (B, T, V) tensor would need the model's
    own lm_head forward, which we make fail."""
    model = tiny_model("gpt_neox", seed=0)

    def boom(*a, **k):
        raise AssertionError("full logits computed")

    monkeypatch.setattr(model.get_output_embeddings(), "forward", boom)
    rows = np.random.default_rng(0).integers(1, V, size=(3, 10))
    engine.score(model, rows, prefix_len=5, cont_len=5, progress=False)


def test_out_of_memory_backs_off_to_smaller_batches(monkeypatch):
    from engine import scoring as score_mod

    model = tiny_model("gpt2", seed=0)
    rows = np.random.default_rng(5).integers(1, V, size=(11, 8))
    real, sizes = score_mod._score_batch, []

    def fake_oom(sm, tokens, **kw):
        sizes.append(len(tokens))
        if len(tokens) > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(sm, tokens, **kw)

    monkeypatch.setattr(score_mod, "_score_batch", fake_oom)
    table = engine.score(model, rows, prefix_len=4, cont_len=4, batch_size=16, progress=False)
    assert sizes[:3] == [11, 8, 4] and max(sizes[3:]) <= 2
    monkeypatch.setattr(score_mod, "_score_batch", real)
    ref = engine.score(model, rows, prefix_len=4, cont_len=4, batch_size=2, progress=False)
    assert table.select(SCORE_SCHEMA.names).equals(ref.select(SCORE_SCHEMA.names))

    def other_error(sm, tokens, **kw):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(score_mod, "_score_batch", other_error)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        engine.score(model, rows, prefix_len=4, cont_len=4, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp32_matches_cpu_and_auto_is_bf16():
    model = tiny_model("llama", seed=6)
    rows, _ = _rows(model, 8, 8, n=8, seed=3)
    cpu = engine.score(model, rows, prefix_len=8, cont_len=8, device="cpu", progress=False)
    gpu = engine.score(model, rows, prefix_len=8, cont_len=8, device="cuda", dtype="fp32",
                       progress=False)
    np.testing.assert_array_equal(gpu.column("match_len"), cpu.column("match_len"))
    np.testing.assert_allclose(gpu.column("seq_nll"), cpu.column("seq_nll"), atol=1e-4)
    auto = engine.score(model, rows, prefix_len=8, cont_len=8, device="cuda", progress=False)
    assert auto.schema.metadata[b"dtype"] == b"bf16"
    np.testing.assert_allclose(auto.column("seq_nll"), cpu.column("seq_nll"), rtol=0.05)


def test_engine_score_is_the_function_after_any_import():
    """`engine.score` is the function whatever was imported before (the module is
    `engine.scoring`, so importing it never rebinds the package attribute)."""
    import engine
    import engine.scoring

    assert engine.score is engine.scoring.score
    assert engine.score.__module__ == "engine.scoring"
