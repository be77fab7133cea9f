"""Oracles and fixtures for the engine tests: HF greedy generation, HF forward + cross-entropy,
rows built to be memorized, and saved tiny models in folder / revision / HF-cache layouts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def hf_greedy(model, prompts: np.ndarray, cont_len: int, *, forbid_eos: bool = True) -> np.ndarray:
    """HF `generate` greedy continuation (B, cont_len); `min_new_tokens` forbids EOS as
    Pythia's `min_length` did."""
    x = torch.as_tensor(prompts, dtype=torch.long)
    kwargs = dict(do_sample=False, max_new_tokens=cont_len, attention_mask=torch.ones_like(x),
                  pad_token_id=model.config.eos_token_id)
    if forbid_eos:
        kwargs["min_new_tokens"] = cont_len
    with torch.no_grad():
        out = model.generate(x, **kwargs)
    gen = out[:, x.shape[1]:].numpy()
    if gen.shape[1] < cont_len:  # stopped at EOS everywhere: pad with -1 (never a token)
        gen = np.pad(gen, ((0, 0), (0, cont_len - gen.shape[1])), constant_values=-1)
    return gen


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


def memorization_rows(model, *, prefix_len: int, cont_len: int, vocab: int, n: int, seed: int,
                      low: int = 1):
    """(memorized, changed, change_pos, random): `n` rows each. Memorized rows continue their
    random prompt with the model's own greedy output; changed rows are those with the token at a
    known continuation position replaced by a different one."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(low, vocab, size=(n, prefix_len))
    cont = hf_greedy(model, prompts, cont_len)
    memorized = np.concatenate([prompts, cont], axis=1)
    pos = rng.integers(0, cont_len, size=n)
    pos[0], pos[-1] = 0, cont_len - 1  # both ends
    changed = memorized.copy()
    for i, j in enumerate(pos):
        changed[i, prefix_len + j] = (changed[i, prefix_len + j] + 1 + rng.integers(0, vocab - 2)) % vocab
        if changed[i, prefix_len + j] == 0 and low:  # keep EOS out of the rows
            changed[i, prefix_len + j] = 1 if memorized[i, prefix_len + j] != 1 else 2
    rand = rng.integers(low, vocab, size=(n, prefix_len + cont_len))
    return memorized, changed, pos, rand


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
