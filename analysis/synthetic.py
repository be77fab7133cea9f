"""Synthetic feature tables whose labels follow known (planted) logistic models per category:
for tests, benchmarks and demos of `analysis.predict` (`synthetic_study` adds a set of extra
memorized rows for the study design)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis import taxonomy
from analysis.design import CONTINUOUS, FEATURES

__all__ = ["synthetic_table", "synthetic_study"]

# Span lengths behind the paper's perplexity columns: each span's log-prob sum over 63.
_PAPER_SPANS = {"cont_ppl": 32 / 63, "prompt_ppl": 31 / 63, "seq_ppl": 1.0}


def synthetic_table(
    n: int,
    *,
    differ: bool = True,
    seed: int = 0,
    recitation_share: float = 0.2,
    templating_share: float = 0.15,
    coef_scale: float = 0.8,
) -> tuple[pd.DataFrame, dict[str, tuple[float, np.ndarray]]]:
    """A feature table whose labels follow known logistic models per category.

    For tests, benchmarks and demos. Features are independent draws (duplicates 6..40 in
    recitation rows, 0..5 elsewhere; is_templating Bernoulli; the rest Gaussian with assorted
    means and scales); within category k, ``P(exact_match) = sigmoid(b0_k + x @ beta_k)`` on the
    *raw* FEATURES. With `differ=False` all categories share one model.

    The paper profile's `*_ppl_paper` columns are the synthetic perplexity columns times the
    span's share of 63 positions (the Gaussian draws stand for log-perplexities here); labels do
    not depend on them.

    Returns:
        (DataFrame with score and feature columns, {category: (b0, beta (len(FEATURES),))}).
    """
    rng = np.random.default_rng(seed)
    rec = rng.random(n) < recitation_share
    dup = np.where(rec, rng.integers(6, 41, n), rng.integers(0, 6, n)).astype(np.int64)
    tmpl = rng.random(n) < templating_share
    cols = {"duplicates": dup}
    means = np.linspace(-1.0, 3.0, len(CONTINUOUS) - 1)
    scales = np.linspace(0.5, 2.0, len(CONTINUOUS) - 1)
    for j, f in enumerate(CONTINUOUS[1:]):
        cols[f] = rng.normal(means[j], scales[j], n)
    cols["is_templating"] = tmpl
    X = np.column_stack([np.asarray(cols[f], dtype=np.float64) for f in FEATURES])
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    cats = np.where(rec, "recitation", np.where(tmpl, "reconstruction", "recollection"))
    planted = {}
    shared = rng.normal(0, coef_scale, len(FEATURES))
    logit = np.empty(n)
    for k, c in enumerate(taxonomy.CATEGORIES):
        z = rng.normal(0, coef_scale, len(FEATURES)) if differ else shared
        beta = z / np.where(np.arange(len(FEATURES)) == 0, 10.0, sd)  # duplicates: per ~10
        b0 = -2.0 - float(X.mean(axis=0) @ beta) + (0.8 * k if differ else 0.0)
        planted[c] = (b0, beta)
        rows = cats == c
        logit[rows] = b0 + X[rows] @ beta
    y = rng.random(n) < expit(logit)
    df = pd.DataFrame(cols)
    df.insert(0, "sample_id", np.arange(n, dtype=np.int64))
    df.insert(1, "exact_match", y)
    df["match_len"] = np.where(y, 32, rng.integers(0, 32, n)).astype(np.int16)
    df["prompt_duplicates"] = dup + rng.integers(0, 3, n)
    df["sample_duplicates"] = np.minimum(dup, df["prompt_duplicates"])
    df["zlib_ratio"] = rng.uniform(0.2, 1.0, n)
    df["is_repeating"] = tmpl & (rng.random(n) < 0.5)
    df["is_incrementing"] = tmpl & ~df["is_repeating"].to_numpy()
    df["code_score"] = rng.random(n)
    for col, share in _PAPER_SPANS.items():
        df[f"{col}_paper"] = df[col] * share
    return df, planted


def synthetic_study(
    n: int, n_extra: int, *, seed: int = 0, **kwargs
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[float, np.ndarray]]]:
    """A random sample of `n` rows and `n_extra` extra memorized rows from one planted
    population (`synthetic_table` with the same keywords): the random sample is the first `n`
    rows, the extra rows the first memorized rows after them (their own sample ids).

    Returns:
        (random sample, extra memorized rows, planted models).
    """
    total = n + 4 * n_extra + 1000
    while True:
        df, planted = synthetic_table(total, seed=seed, **kwargs)
        mem = df.iloc[n:][df["exact_match"].to_numpy()[n:]]
        if len(mem) >= n_extra:
            return df.iloc[:n].reset_index(drop=True), mem.iloc[:n_extra].reset_index(
                drop=True), planted
        total *= 2
