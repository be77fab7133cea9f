"""Helpers for the generate-mode and cascade tests: tie-free tiny models, the HF `generate`
oracle, and rows built around the model's own greedy output.

Why not `tiny_models.tiny_model` as is: at the default init (std 0.02) tiny Llama and GPT-2
models decode one constant token and GPT-NeoX's logits are nearly flat (top-2 gaps down to
1e-4), so free-running decoding is either a weak test or one where fp32 rounding differences
between two correct implementations (a 63-token pass vs. incremental steps, ~1e-6) can flip a
near-tie. With weights drawn at std 0.4 the greedy continuations are varied (20+ distinct
tokens in 32) and the smallest top-2 logit gap over the test rows is ~4e-3, three orders of
magnitude above that noise, so equality with `generate` is a fair, exact requirement.
"""

from __future__ import annotations

import numpy as np
import torch
import transformers

from memtax.testing import tiny_config

INIT_STD = 0.4


def varied_model(arch: str, seed: int = 0, **config_kwargs):
    """A tiny fp32 causal LM (as `tiny_model`) whose weights are drawn at std INIT_STD."""
    torch.manual_seed(seed)
    config = tiny_config(arch, **config_kwargs)
    config.initializer_range = INIT_STD
    if arch == "opt":
        config.init_std = INIT_STD
    model = transformers.AutoModelForCausalLM.from_config(config)
    return model.eval()


@torch.inference_mode()
def hf_greedy(model, prompts: torch.Tensor, cont_len: int, *, pythia: bool = False) -> torch.Tensor:
    """HF `generate` greedy continuations (B, cont_len) of prompts (B, P).

    Default: `min_new_tokens=cont_len` (EOS forbidden at every step, as Pythia's min_length did).
    pythia=True: Pythia's own call, `max_length=P+C, min_length=P+C`.
    A config without an EOS id decodes freely (nothing is masked, nothing stops).
    """
    p = prompts.shape[1]
    kw = dict(do_sample=False, attention_mask=torch.ones_like(prompts), num_beams=1,
              pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None
              else 0)
    if pythia:
        kw.update(max_length=p + cont_len, min_length=p + cont_len)
    else:
        kw.update(max_new_tokens=cont_len, min_new_tokens=cont_len)
    out = model.generate(prompts, **kw)
    assert out.shape[1] == p + cont_len
    return out[:, p:]


def random_prompts(n: int, p: int, vocab: int, seed: int, low: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, vocab, (n, p), generator=g)


def build_rows(model, *, prefix_len: int = 32, cont_len: int = 32, n_memorized: int = 3,
               n_random: int = 8, seed: int = 0):
    """Rows (N, P+C) int64 with what their greedy continuation must be.

    - memorized: random prompt + its own greedy continuation (match_len C);
    - diverging at j for every j in 0..C-1: a memorized row with token j changed to another
      id (match_len j); its greedy continuation is still the prompt's own one;
    - diverging at j and random afterwards (every 3rd j): greedy is again the prompt's own one;
    - random: random prompt and continuation (greedy from the HF oracle).
    Returns (rows, expected_greedy (N, C), expected_match_len (N,)).
    """
    vocab = model.config.vocab_size
    p, c = prefix_len, cont_len
    g = torch.Generator().manual_seed(seed + 7)
    prompts = random_prompts(n_memorized, p, vocab, seed)
    greedy = hf_greedy(model, prompts, c)
    rows, want, mlen = [], [], []
    for i in range(n_memorized):
        rows.append(torch.cat([prompts[i], greedy[i]]))
        want.append(greedy[i])
        mlen.append(c)
    for j in range(c):
        i = j % n_memorized
        cont = greedy[i].clone()
        other = int(torch.randint(2, vocab, (1,), generator=g))
        cont[j] = other if other != cont[j] else (other + 1) % vocab
        rows.append(torch.cat([prompts[i], cont]))
        want.append(greedy[i])
        mlen.append(j)
        if j % 3 == 1:
            cont = cont.clone()
            cont[j + 1 :] = torch.randint(2, vocab, (c - j - 1,), generator=g)
            rows.append(torch.cat([prompts[i], cont]))
            want.append(greedy[i])
            mlen.append(j)
    rnd = random_prompts(n_random, p + c, vocab, seed + 1)
    rnd_greedy = hf_greedy(model, rnd[:, :p], c)
    for i in range(n_random):
        rows.append(rnd[i])
        want.append(rnd_greedy[i])
        m = 0
        while m < c and rnd_greedy[i, m] == rnd[i, p + m]:
            m += 1
        mlen.append(m)
    return torch.stack(rows), torch.stack(want), torch.tensor(mlen)


def min_top2_gap(model, rows: torch.Tensor, greedy: torch.Tensor, prefix_len: int) -> float:
    """Smallest top-2 logit gap along the greedy paths of rows (how far from a tie they are)."""
    seq = torch.cat([rows[:, :prefix_len], greedy], dim=1)
    with torch.inference_mode():
        logits = model(seq[:, :-1]).logits[:, prefix_len - 1 :].float()
        eos = model.config.eos_token_id
        if eos is not None:
            logits[..., eos] = float("-inf")
        top = logits.topk(2, dim=-1).values
    return float((top[..., 0] - top[..., 1]).min())


def levenshtein(a, b) -> int:
    """Plain dynamic-programming edit distance (the independent oracle for rapidfuzz)."""
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for k, y in enumerate(b, 1):
            cur[k] = min(prev[k] + 1, cur[k - 1] + 1, prev[k - 1] + (x != y))
        prev = cur
    return prev[-1]


def as_numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
