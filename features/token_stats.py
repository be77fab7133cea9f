"""Token frequency statistics: corpus frequency of each of a sample's tokens, summarised.

    stats = token_frequency_stats(tokens, unigram_counts)   # tokens (N, T) ints, counts (V,)
    stats["token_freq_median"]                              # (N,) float64

For each sample, f_j = unigram_counts[token_j] for its T tokens; the columns are max, mean, min,
median, 25th and 75th percentile of f (percentiles with linear interpolation between order
statistics, numpy's default "linear" method). Fully vectorised: one gather and one sort of (N, T).

The paper profile takes p25 and p75 as order statistics, as the paper's Spark query did
(semantic-memorization `filters/token_frequency_statistics_filter.py`:
`F.percentile_approx("frequency", 0.25)` and `0.75`): the smallest value whose rank is at least
ceil(p * T), i.e. sorted f[ceil(p * T) - 1]. (Spark's Greenwald-Khanna summary at its default
accuracy, 10,000, keeps every value of so few, and its query then returns that order statistic.)
The median is interpolated in both profiles (the paper's `F.median` is Spark's exact percentile,
which interpolates like numpy).
"""

from __future__ import annotations

import math

import numpy as np

from engine.profiles import check_profile

__all__ = ["token_frequency_stats", "COLUMNS", "DEFINITION", "PAPER_DEFINITION"]

COLUMNS = (
    "token_freq_max",
    "token_freq_mean",
    "token_freq_min",
    "token_freq_median",
    "token_freq_p25",
    "token_freq_p75",
)
DEFINITION = (
    "f_j = corpus unigram count of each of the sample's tokens; max, mean, min, median, 25th and "
    "75th percentile of f over the sample (linear interpolation, numpy 'linear')"
)
PAPER_DEFINITION = (
    "f_j = corpus unigram count of each of the sample's tokens; max, mean, min, median "
    "(interpolated) of f, and 25th/75th percentile as Spark's percentile_approx: sorted "
    "f[ceil(p * T) - 1]"
)


def _quantile_sorted(s: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile along axis 1 of row-sorted `s` (numpy's default method)."""
    t = s.shape[1]
    pos = q * (t - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, t - 1)
    frac = pos - lo
    a = s[:, lo].astype(np.float64)
    if frac == 0.0:
        return a
    return a + (s[:, hi] - a) * frac


def _order_statistic(s: np.ndarray, q: float) -> np.ndarray:
    """Spark's percentile_approx on few values, along axis 1 of row-sorted `s`: the value of
    rank ceil(q * T) (1-based)."""
    rank = max(1, math.ceil(q * s.shape[1]))
    return s[:, rank - 1].astype(np.float64)


def token_frequency_stats(tokens: np.ndarray, unigram_counts: np.ndarray, *,
                          profile: str = "default") -> dict[str, np.ndarray]:
    """tokens (N, T) integer ids, unigram_counts (V,) -> dict of the six (N,) float64 columns.
    `profile="paper"`: p25 and p75 as the paper's order statistics (module docstring).

    Raises ValueError for a token id outside [0, V) (a table from another vocabulary).
    """
    quantile = _order_statistic if check_profile(profile) == "paper" else _quantile_sorted
    tokens = np.asarray(tokens)
    counts = np.asarray(unigram_counts)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be a (N, T) integer array, got {tokens.dtype} {tokens.shape}")
    if counts.ndim != 1:
        raise ValueError(f"unigram_counts must be 1-D, got shape {counts.shape}")
    n, t = tokens.shape
    if n == 0:
        return {c: np.zeros(0, dtype=np.float64) for c in COLUMNS}
    if t == 0:
        return {c: np.full(n, np.nan) for c in COLUMNS}
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= counts.shape[0]:
        raise ValueError(
            f"token ids span [{lo}, {hi}] but the corpus unigram counts cover a vocabulary of "
            f"{counts.shape[0]} (samples and index from different tokenizers?)"
        )
    f = np.sort(counts[tokens], axis=1)
    return {
        "token_freq_max": f[:, -1].astype(np.float64),
        "token_freq_mean": f.mean(axis=1, dtype=np.float64),
        "token_freq_min": f[:, 0].astype(np.float64),
        "token_freq_median": _quantile_sorted(f, 0.5),
        "token_freq_p25": quantile(f, 0.25),
        "token_freq_p75": quantile(f, 0.75),
    }
