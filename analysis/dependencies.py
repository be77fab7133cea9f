"""Dependence between each feature and memorization: Pearson, Spearman, Chatterjee's xi.

Computed on all rows, on each taxonomy category, and on code and natural-language subsets
(`code_score >= code_threshold` is code; the column is optional).

Chatterjee's xi (Chatterjee 2021, "A new coefficient of correlation"), as the paper's
`xicorrelation` package computes it: sort the pairs by x (ties in x broken at random, seeded),
let r_i = #{j : y_j <= y_(i)} and l_i = #{j : y_j >= y_(i)}; then

    xi = 1 - n * sum_i |r_{i+1} - r_i| / (2 * sum_i l_i (n - l_i)).

Its p-value is the one-sided asymptotic test of independence with the variance that allows ties
in y (the label is binary, so always tied): Chatterjee's Theorem 2.2, as in the R package XICOR.
xi is not symmetric: it measures how well memorization is a function of the feature.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis import taxonomy
from analysis.predict import FEATURES


def xi_correlation(x, y, *, seed: int = 0) -> tuple[float, float]:
    """Chatterjee's xi of y on x and its one-sided p-value; x, y (n,) -> (xi, p)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 2 or y.shape != x.shape:
        raise ValueError(
            f"xi needs two equal-length arrays of >= 2 values, got {x.shape}, {y.shape}"
        )
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    order = np.lexsort((tiebreak, x))  # by x, ties at random
    ys = y[order]
    sorted_y = np.sort(y)
    r = np.searchsorted(sorted_y, ys, side="right").astype(np.float64)  # #{y_j <= y_i}
    ell = (n - np.searchsorted(sorted_y, ys, side="left")).astype(np.float64)  # #{y_j >= y_i}
    denom = np.sum(ell * (n - ell))
    if denom == 0:
        return float("nan"), float("nan")  # y constant
    xi = 1.0 - n * np.sum(np.abs(np.diff(r))) / (2.0 * denom)
    # Variance under independence with ties in y (XICOR's formula).
    fr = np.sort(r / n)
    gr = ell / n
    ind = np.arange(1, n + 1, dtype=np.float64)
    ind2 = 2 * n - 2 * ind + 1
    a = np.mean(ind2 * fr * fr) / n
    c = np.mean(ind2 * fr) / n
    cq = np.cumsum(fr)
    m = (cq + (n - ind) * fr) / n
    b = np.mean(m * m)
    cu = np.mean(gr * (1 - gr))
    var = (a - 2 * b + c * c) / (cu * cu)
    p = float(stats.norm.sf(np.sqrt(n) * xi / np.sqrt(var))) if var > 0 else float("nan")
    return float(xi), p


def _pair(x: np.ndarray, y: np.ndarray, seed: int) -> list[tuple[str, float, float]]:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        nan = float("nan")
        return [("pearson", nan, nan), ("spearman", nan, nan), ("xi", nan, nan)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    xi, xp = xi_correlation(x, y, seed=seed)
    return [
        ("pearson", float(pr.statistic), float(pr.pvalue)),
        ("spearman", float(sr.statistic), float(sr.pvalue)),
        ("xi", xi, xp),
    ]


def correlations(
    table,
    *,
    features=FEATURES,
    recitation_threshold: float = 5,
    code_threshold: float = 0.5,
    seed: int = 0,
    min_rows: int = 10,
) -> pd.DataFrame:
    """Pearson, Spearman and xi between each feature and `exact_match`, per subset.

    Subsets: "all", each category, and "code" / "natural language" when `code_score` exists.
    Rows with a non-finite feature value are left out of that feature's statistics.
    A subset with fewer than `min_rows` rows or a constant feature/label gives NaN.

    Returns:
        DataFrame(subset, feature, method, statistic, pvalue, n).
    """
    taxonomy.require_columns(table, list(features) + [taxonomy.LABEL], "feature table")
    y = taxonomy.labels(table).astype(np.float64)
    cats = taxonomy.classify(table, recitation_threshold)
    subsets = {"all": np.ones(y.size, dtype=bool)}
    for c in taxonomy.CATEGORIES:
        subsets[c] = cats == c
    if "code_score" in taxonomy.column_names(table):
        code = np.asarray(taxonomy.column(table, "code_score"), dtype=np.float64)
        subsets["code"] = code >= code_threshold
        subsets["natural language"] = code < code_threshold
    rows = []
    for f in features:
        x_all = np.asarray(taxonomy.column(table, f), dtype=np.float64)
        finite = np.isfinite(x_all)
        for name, mask in subsets.items():
            sel = mask & finite
            n = int(sel.sum())
            if n < min_rows:
                res = [(m, float("nan"), float("nan")) for m in ("pearson", "spearman", "xi")]
            else:
                res = _pair(x_all[sel], y[sel], seed)
            for method, s, p in res:
                rows.append(
                    {
                        "subset": name,
                        "feature": f,
                        "method": method,
                        "statistic": s,
                        "pvalue": p,
                        "n": n,
                    }
                )
    return pd.DataFrame(rows)
