"""The perplexity columns of a score table, from the log-probs of one teacher-forced pass.

For a sample of L = P + C tokens, lp[t] = log p(token[t+1] | tokens[:t+1]), t = 0..L-2:

    prompt_nll = -mean(lp[0 : P-1])   cont_nll = -mean(lp[P-1 : L-1])   seq_nll = -mean(lp)
    *_ppl      = exp(*_nll)
    *_ppl_paper (profile "default") = exp(-sum(lp over the span) / (L-1)): the paper's divide-
        by-63 alone (every span over all L-1 log-probs, so seq_ppl_paper = prompt x cont)
    *_ppl_paper (profile "paper")   = `paper_perplexities`: the paper's code exactly, which
        also shortens the window by the count of token id 0 and moves the split with it
"""

from __future__ import annotations

import torch

from engine.profiles import check_profile

__all__ = ["perplexity_columns", "paper_perplexities"]


def perplexity_columns(lp: torch.Tensor, tokens: torch.Tensor, *, prefix_len: int,
                       profile: str = "default") -> dict[str, torch.Tensor]:
    """The nine NLL/perplexity columns (float64, one value per row) of lp (B, L-1) float64 and
    the sample tokens (B, L); the `*_ppl_paper` ones as `profile` defines them."""
    p, n = prefix_len, lp.shape[1]
    lp_prompt, lp_cont = lp[:, : p - 1].sum(1), lp[:, p - 1 :].sum(1)
    nan = torch.full_like(lp_prompt, float("nan"))
    prompt_nll = -lp_prompt / (p - 1) if p > 1 else nan                       # P=1: no prompt loss
    cont_nll = -lp_cont / (n - (p - 1))
    seq_nll = -(lp_prompt + lp_cont) / n
    cols = {
        "prompt_nll": prompt_nll,
        "cont_nll": cont_nll,
        "seq_nll": seq_nll,
        "prompt_ppl": prompt_nll.exp(),
        "cont_ppl": cont_nll.exp(),
        "seq_ppl": seq_nll.exp(),
        "prompt_ppl_paper": (-lp_prompt / n).exp(),
        "cont_ppl_paper": (-lp_cont / n).exp(),
        "seq_ppl_paper": seq_nll.exp(),
    }
    if check_profile(profile) == "paper":
        cols.update(paper_perplexities(lp, tokens))
    return cols


def paper_perplexities(lp: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The paper's three perplexities per row, as its code computes them (semantic-memorization,
    `inference.py: calculate_perplexity`), from lp (B, L-1) float64, lp[t] = log p(token[t+1] |
    tokens[:t+1]), and the sample's tokens (B, L).

    That function keeps the first n = L - 1 - (count of token id 0 among the L tokens)
    log-probs (`range(num_normal_tokens - 1)`, as if the 0s were padding at the end; Pythia's
    samples are unpadded and a 0 is a document boundary anywhere, so it drops the last
    log-probs, not the 0s' own); splits them at mid = n // 2 (prompt = the first mid,
    continuation = the rest: for 64 tokens without a 0, the 31 and 32 of the true split; each
    0 moves the end, and every second one the split, one token earlier; other lengths keep the
    code's n // 2, as the paper scored 32 + 32 only); and divides every sum by n. A row with
    n < 2 raised inside its `try` and got (-1, -1, -1). It takes softmax probabilities in
    float64 and then their log; here the log-probs themselves are summed (the same up to
    rounding).
    """
    count = lp.shape[1]
    kept = count - (tokens == 0).sum(1)                                        # n, per row
    mid = kept.div(2, rounding_mode="floor")
    pos = torch.arange(count, device=lp.device)[None, :]
    zero = torch.zeros((), dtype=lp.dtype, device=lp.device)
    prompt = torch.where(pos < mid[:, None], lp, zero).sum(1)
    cont = torch.where((pos >= mid[:, None]) & (pos < kept[:, None]), lp, zero).sum(1)
    n = kept.clamp(min=1).to(lp.dtype)
    failed = kept < 2

    def ppl(total: torch.Tensor) -> torch.Tensor:
        return torch.where(failed, -1.0, (-total / n).exp())

    return {"prompt_ppl_paper": ppl(prompt), "cont_ppl_paper": ppl(cont),
            "seq_ppl_paper": ppl(prompt + cont)}
