"""Dependence between each feature and memorization: Pearson, Spearman, Chatterjee's xi.

Default profile: computed on all rows, on each taxonomy category, and on code and
natural-language subsets (`code_score >= code_threshold` is code; the column is optional).

Chatterjee's xi (Chatterjee 2021, "A new coefficient of correlation"): sort the pairs by x,
let r_i = #{j : y_j <= y_(i)} and l_i = #{j : y_j >= y_(i)}; then

    xi = 1 - n * sum_i |r_{i+1} - r_i| / (2 * sum_i l_i (n - l_i)).

Its p-value is the one-sided asymptotic test of independence with the variance that allows ties
in y (the label is binary, so always tied): Chatterjee's Theorem 2.2, as in the R package XICOR.
xi is not symmetric: it measures how well memorization is a function of the feature. The
default profile breaks ties in x at random (seeded), as Chatterjee prescribes.

Paper profile (``profile="paper"``), as the paper's `model_training.py`
(``calculate_all_correlation_coefficients``) computed them:

- subsets: every category crossed with the code / natural-language split: "all",
  "natural language", "code", then for each category c: "c", "c / natural language",
  "c / code", with the paper's band (`analysis.taxonomy.code_types`: natural language when
  ``1 - code_score >= 0.525``, code when ``<= 0.4``; uncertain rows only in the unsplit subsets);
- xi as the paper's package, xicorpy, computes it (``compute_xi_correlation(x, y,
  get_modified_xi=False, get_p_values=True)``; version 0.5, the release current when the paper's
  correlations were run in 2024; its requirements.txt does not pin one): ties in x are left in
  the order of pandas' ``Series.sort_values()`` (numpy's default, unstable quicksort
  ``argsort``), not broken at random (0.6, July 2024, sorts stably: ties keep the rows' order);
  its ranks are ``rank(method="max") - 1``, so r_i and l_i above are each one less, which
  changes the denominator and the variance; a constant feature or label, or n <= 2, gives
  xi = 0 with p = 0.5; a feature equal to the label gives xi = 1 with the no-ties p-value; xi
  exactly 0 gives p = sqrt(2/5) (its ``_get_p_value`` returns (0.5, sqrt(2/5)) as (sd, p));
  p = 1 - Phi(z) as it writes it;
- Pearson and Spearman as scipy gives them (NaN for a constant feature);
- the rows: `report.build` passes the extra memorized rows in this profile, as the paper computed
  the correlations on its sample plus its memorized split (``combined_dataset``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis import taxonomy
from analysis.predict import FEATURES
from engine.profiles import check_profile, same_profile


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
    var = _tied_variance(r, ell, n)
    p = float(stats.norm.sf(np.sqrt(n) * xi / np.sqrt(var))) if var > 0 else float("nan")
    return float(xi), p


def xicorpy_xi(x, y) -> tuple[float, float]:
    """xi of y on x and its p-value as xicorpy 0.5 computes them (module docstring, paper
    profile)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if y.shape != x.shape:
        raise ValueError(f"xi needs two equal-length arrays, got {x.shape}, {y.shape}")
    if n <= 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0, 0.5
    ys = y[np.argsort(x, kind="quicksort")]  # pandas sort_values' order, ties included
    if np.array_equal(np.sort(x), ys):  # xicorpy: x.equals(y) after sorting
        return 1.0, float(1 - stats.norm.cdf(np.sqrt(n) / np.sqrt(2 / 5)))
    sorted_y = np.sort(y)
    # xicorpy's ranks: rank(method="max") - 1, ascending and descending
    r = np.searchsorted(sorted_y, ys, side="right").astype(np.float64) - 1
    ell = (n - np.searchsorted(sorted_y, ys, side="left")).astype(np.float64) - 1
    xi = 1.0 - n * np.sum(np.abs(np.diff(r))) / (2.0 * np.sum(ell * (n - ell)))
    if xi == 0:
        return 0.0, float(np.sqrt(2 / 5))
    var = _tied_variance(r, ell, n)
    return float(xi), float(1 - stats.norm.cdf(np.sqrt(n) * xi / np.sqrt(var)))


def _tied_variance(r: np.ndarray, ell: np.ndarray, n: int) -> float:
    """The asymptotic variance of xi under independence with ties in y (XICOR's formula)."""
    fr = np.sort(r / n)
    gr = ell / n
    ind = np.arange(1, n + 1, dtype=np.float64)
    ind2 = 2 * n - 2 * ind + 1
    a = np.mean(ind2 * fr * fr) / n
    c = np.mean(ind2 * fr) / n
    m = (np.cumsum(fr) + (n - ind) * fr) / n
    cu = np.mean(gr * (1 - gr))
    return float((a - 2 * np.mean(m * m) + c * c) / (cu * cu))


def _paper_pair(x: np.ndarray, y: np.ndarray) -> list[tuple[str, float, float]]:
    """Pearson, Spearman (scipy, NaN on a constant input) and xicorpy's xi."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    xi, xp = xicorpy_xi(x, y)
    return [("pearson", float(pr.statistic), float(pr.pvalue)),
            ("spearman", float(sr.statistic), float(sr.pvalue)), ("xi", xi, xp)]


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
    profile: str = "default",
    extra_memorized=None,
) -> pd.DataFrame:
    """Pearson, Spearman and xi between each feature and `exact_match`, per subset.

    Subsets (default): "all", each category, and "code" / "natural language" when `code_score`
    exists; (paper) each of "all" and the categories, alone and crossed with natural language and
    code (module docstring). Rows with a non-finite feature value are left out of that feature's
    statistics. A subset with fewer than `min_rows` rows gives NaN, and (default) so does a
    constant feature/label.

    Args:
        extra_memorized: a feature table of further memorized samples, added to the rows (the
            paper's combined dataset; rows whose `sample_id` is in `table` are left out).

    Returns:
        DataFrame(subset, feature, method, statistic, pvalue, n).
    """
    check_profile(profile)
    inputs = {"feature table": table}
    if extra_memorized is not None:
        inputs["extra memorized table"] = extra_memorized
    same_profile(inputs, expected=profile)
    features = list(features)
    taxonomy.require_columns(table, features + [taxonomy.LABEL], "feature table")
    extra_cols = ["duplicates"] + [c for c in ("is_templating", "is_repeating", "is_incrementing",
                                               "code_score")
                                   if c in taxonomy.column_names(table)]
    rows = taxonomy.with_extra_memorized(table, extra_memorized,
                                         list(dict.fromkeys(features + extra_cols)))
    y = rows[taxonomy.LABEL].to_numpy(dtype=np.float64)
    subsets = _subsets(rows, recitation_threshold, code_threshold, profile)
    pair = _paper_pair if profile == "paper" else (lambda x, yy: _pair(x, yy, seed))
    out = []
    for f in features:
        x_all = rows[f].to_numpy(dtype=np.float64)
        finite = np.isfinite(x_all)
        for name, mask in subsets.items():
            sel = mask & finite
            n = int(sel.sum())
            if n < min_rows:
                res = [(m, float("nan"), float("nan")) for m in ("pearson", "spearman", "xi")]
            else:
                res = pair(x_all[sel], y[sel])
            out += [{"subset": name, "feature": f, "method": method, "statistic": st,
                     "pvalue": p, "n": n} for method, st, p in res]
    df = pd.DataFrame(out)
    df.attrs["profile"] = profile
    return df


def _subsets(rows: pd.DataFrame, recitation_threshold: float, code_threshold: float,
             profile: str) -> dict[str, np.ndarray]:
    """name -> row mask of every subset the profile reports (module docstring)."""
    cats = taxonomy.classify(rows, recitation_threshold)
    groups = {"all": np.ones(len(rows), dtype=bool)}
    groups.update({c: cats == c for c in taxonomy.CATEGORIES})
    has_code = "code_score" in rows.columns
    kinds = (taxonomy.code_types(rows, profile=profile, code_threshold=code_threshold)
             if has_code else None)
    if profile != "paper":
        if has_code:
            groups["code"] = kinds == "code"
            groups["natural language"] = kinds == "natural language"
        return groups
    subsets = {}
    for name, mask in groups.items():
        subsets[name] = mask
        if has_code:
            for kind in ("natural language", "code"):  # the paper's order
                subsets[kind if name == "all" else f"{name} / {kind}"] = mask & (kinds == kind)
    return subsets
