"""Semantic and textual matches: explicit embeddings with brute-force cosine, a plain DP
Levenshtein, and the bundled MiniLM against a hand-written mean-pooling forward pass."""

import numpy as np
import pytest

from features import semantic


def dp_levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def oracle(emb, prompts, ref, ref_prompts, exclude_self):
    sims = emb.astype(np.float64) @ ref.astype(np.float64).T
    sem = np.zeros(len(emb), np.int64)
    txt = np.zeros(len(emb), np.int64)
    for i in range(len(emb)):
        for j in range(len(ref)):
            if exclude_self and i == j:
                continue
            if sims[i, j] >= 0.8:
                sem[i] += 1
                d = dp_levenshtein(prompts[i], ref_prompts[j])
                txt[i] += 0 < d < 20
    return sem, txt


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_matches_against_brute_force():
    rng = np.random.default_rng(0)
    # clusters of near-identical directions (cosine > 0.8 inside) plus scattered points
    centers = unit(rng.normal(size=(4, 16)))
    emb = unit(np.concatenate([
        centers[rng.integers(0, 4, 30)] + 0.15 * rng.normal(size=(30, 16)),
        rng.normal(size=(10, 16)),
    ]))
    words = ["alpha beta gamma", "alpha beta gamma!", "alpha beta gamna", "zzzz" * 10, ""]
    prompts = [words[i % len(words)] + ("x" * (i % 3)) for i in range(40)]
    sem, txt = semantic.matches(emb, prompts, emb, prompts, exclude_self=True, progress=False,
                                chunk=7)
    want_sem, want_txt = oracle(emb, prompts, emb, prompts, True)
    assert want_sem.sum() > 0 and want_txt.sum() > 0  # the case exercises both counts
    assert np.array_equal(sem, want_sem)
    assert np.array_equal(txt, want_txt)


def test_threshold_is_inclusive_and_reference_distinct():
    # cosines 0.8 exactly (in float64), just above and just below
    def at(c):
        return unit([c, np.sqrt(1 - c * c), 0.0])

    q = unit([[1.0, 0.0, 0.0]])
    ref = np.stack([at(0.8), at(0.81), at(0.79), unit([0.0, 0.0, 1.0])])
    sims = (q @ ref.T)[0]
    prompts_ref = ["abc", "abd", "abd", "xyz"]
    sem, txt = semantic.matches(q, ["abc"], ref, prompts_ref, progress=False)
    assert sem[0] == int(np.sum(sims >= np.float32(0.8)))
    # among the neighbours, "abc" has distance 0 (not counted) and "abd" distance 1
    neigh = [p for p, s in zip(prompts_ref, sims) if s >= np.float32(0.8)]
    assert txt[0] == sum(0 < dp_levenshtein("abc", p) < 20 for p in neigh)


def test_levenshtein_cutoff_at_twenty():
    e = unit(np.ones((3, 4)))
    a = "a" * 40
    prompts = [a, "b" * 19 + a[19:], "b" * 20 + a[20:]]  # distances 19 and 20 from the first
    sem, txt = semantic.matches(e[:1], prompts[:1], e[1:], prompts[1:], progress=False)
    assert sem[0] == 2
    assert txt[0] == 1


def test_matches_bad_inputs():
    e = unit(np.ones((2, 4)))
    with pytest.raises(ValueError, match="widths"):
        semantic.matches(e, ["a", "b"], unit(np.ones((2, 5))), ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="prompts"):
        semantic.matches(e, ["a"], e, ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="exclude_self"):
        semantic.matches(e, ["a", "b"], e[:1], ["a"], exclude_self=True, progress=False)
    s, t = semantic.matches(e[:0], [], e, ["a", "b"], progress=False)
    assert s.shape == (0,) and t.shape == (0,)


@pytest.fixture(scope="module")
def minilm():
    return semantic.load_embedder()


def test_embed_matches_manual_mean_pooling(minilm):
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = semantic.model_path()
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "def f(x):\n    return x + 1", "The cat sat on the mat.", "caf\ufffd au lait"]
    got = semantic.embed(texts, model=minilm, progress=False)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1)
        want = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.array_equal(got[0], got[3])  # identical texts embedded once
    # the paraphrase pair is a semantic match, the code is not
    sims = got @ got.T
    assert sims[0, 1] >= 0.8 > sims[0, 2]
