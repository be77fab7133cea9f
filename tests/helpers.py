"""Oracles and fixtures the tests share (independent of the code under test): plain HF forward
+ cross-entropy, leading matches by a Python loop, float64 LM-head logits, brute-force n-gram
counts, saved tiny models in folder / HF-cache layouts, and score-table equality.

Models and samples (tiny random models, Pythia shapes, HF greedy generation, planted memorized
rows) live in `memtax.testing`, which the benchmarks use too.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Scoring oracles


def leading_matches(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Length of the leading run where pred == true, per row (a plain Python loop)."""
    out = []
    for p, t in zip(pred, true):
        k = 0
        while k < len(t) and p[k] == t[k]:
            k += 1
        out.append(k)
    return np.array(out)


def hf_token_logprobs(model, tokens: np.ndarray) -> np.ndarray:
    """log p(token[t+1] | tokens[:t+1]) from a plain HF forward + cross-entropy, (B, L-1)."""
    x = torch.as_tensor(tokens, dtype=torch.long)
    with torch.no_grad():
        logits = model(x).logits[:, :-1].double()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                         reduction="none")
    return -ce.view(x.shape[0], -1).numpy()


def reference_logits(hidden, weight, bias=None, scale=1.0, softcap=None):
    """(N, V) float64 logits with the LM heads' semantics: bias, then scale, then soft-cap."""
    logits = hidden.double() @ weight.double().T
    if bias is not None:
        logits = logits + bias.double()
    logits = logits * scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return logits


def bf16_head_inputs(n, d, v, seed=0, h_std=1.0):
    """(hidden (n, d), weight (v, d)) in bf16 with the scale of a trained head (std h_std and
    2/sqrt(d)), and targets (n,) int64, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, d, generator=g) * h_std).bfloat16()
    weight = (torch.randn(v, d, generator=g) * (2.0 / d**0.5)).bfloat16()
    targets = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, targets


def reference_head(hidden, weight, targets, *, bias=None, logit_scale=1.0, softcap=None,
                   masked_token=None):
    """(argmax, lse, nll) in float64 with `kernels.fused_head`'s keywords: lse and nll over the
    unmasked distribution, argmax with `masked_token` excluded."""
    logits = reference_logits(hidden.float(), weight.float(), bias, logit_scale, softcap)
    lse = torch.logsumexp(logits, dim=1)
    nll = lse - logits.gather(1, targets[:, None]).squeeze(1)
    if masked_token is not None:
        logits[:, masked_token] = float("-inf")
    return logits.argmax(dim=1), lse, nll


def assert_same_scores(a, b, rtol: float = 2e-6):
    """Score tables equal: ids, labels and match lengths exactly; floats to `rtol` (BLAS may
    round a row differently when the batch it sits in has another size)."""
    from engine.scoring import SCORE_SCHEMA

    assert a.num_rows == b.num_rows
    for f in SCORE_SCHEMA:
        x, y = a.column(f.name).to_numpy(), b.column(f.name).to_numpy()
        if f.name in ("sample_id", "exact_match", "match_len"):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, err_msg=f.name)


# ---------------------------------------------------------------------------------------------
# Saved models


def save_tiny(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def make_hf_cache(model, cache_dir, repo_id: str, revisions: dict[str, str]):
    """A Hugging Face hub cache layout holding `model` under each ref name -> commit hash."""
    org, name = repo_id.split("/")
    root = cache_dir / f"models--{org}--{name}"
    for ref, commit in revisions.items():
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(snap, safe_serialization=True)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return root


# ---------------------------------------------------------------------------------------------
# Corpus-index oracles (brute force, independent of features.index)


def brute_count(docs: list[np.ndarray], q: np.ndarray) -> int:
    """Sliding-window count of q inside each document (never across two)."""
    n = len(q)
    total = 0
    for d in docs:
        if len(d) < n:
            continue
        w = np.lib.stride_tricks.sliding_window_view(np.asarray(d, dtype=np.int64), n)
        total += int(np.all(w == np.asarray(q, dtype=np.int64), axis=1).sum())
    return total


def brute_window_counts(docs: list[np.ndarray], n: int) -> np.ndarray:
    """Count of the n-gram at every position of the concatenated corpus (0 past a doc end)."""
    grams = Counter()
    for d in docs:
        for i in range(len(d) - n + 1):
            grams[tuple(int(x) for x in d[i : i + n])] += 1
    out = []
    for d in docs:
        for i in range(len(d)):
            out.append(grams[tuple(int(x) for x in d[i : i + n])] if i + n <= len(d) else 0)
    return np.array(out, dtype=np.int64)


def brute_locate(docs: list[np.ndarray], q: np.ndarray) -> np.ndarray:
    out, base, n = [], 0, len(q)
    for d in docs:
        for i in range(len(d) - n + 1):
            if np.array_equal(np.asarray(d[i : i + n], dtype=np.int64), np.asarray(q, np.int64)):
                out.append(base + i)
        base += len(d)
    return np.array(out, dtype=np.int64)


def sample_queries(docs: list[np.ndarray], n: int, k: int, alphabet: int, rng) -> np.ndarray:
    """k queries of length n: half cut from the concatenated corpus (some crossing document
    boundaries), half random."""
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    qs = []
    for i in range(k):
        if i % 2 == 0 and len(flat) >= n:
            s = int(rng.integers(0, len(flat) - n + 1))
            qs.append(flat[s : s + n])
        else:
            qs.append(rng.integers(0, alphabet, size=n))
    return np.array(qs, dtype=np.int64)
