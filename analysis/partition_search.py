"""The optimally partitioned model's search: ordered feature pairs with quantile thresholds,
each candidate partition fitted with one regression per group and scored on held-out rows.

The rule (memtax's and the paper's final code alike, model_training.py
`generate_optimal_taxonomy_candidate`): ``f1 >= t1`` -> group 1, else ``f2 >= t2`` -> group 2,
else group 3. `search_partition` is the split design's search (a 3/4 - 1/4 split of a training
subsample, validation F1); `search_partition_on` takes the fit and selection rows from the study
design (validation rows in the default profile, the test rows in the paper profile, which picked
its partition by test-set F1).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import metrics as _metrics
from analysis.design import FEATURES, QUANTILES, SEARCH_FEATURES, stratified_split
from analysis.logistic import fit_groups, fit_model

__all__ = ["GROUPS", "partition", "search_partition", "search_partition_on",
           "threshold_candidates"]



def partition(X: np.ndarray, j1: int, t1: float, j2: int, t2: float) -> np.ndarray:
    """Group labels (n,) in {"group 1", "group 2", "group 3"} by the ordered-pair rule."""
    g = np.full(X.shape[0], "group 3", dtype="<U7")
    g[X[:, j2] >= t2] = "group 2"
    g[X[:, j1] >= t1] = "group 1"
    return g


GROUPS = ("group 1", "group 2", "group 3")


def search_partition(
    X: np.ndarray,
    y: np.ndarray,
    features=FEATURES,
    *,
    search_features=SEARCH_FEATURES,
    quantiles=QUANTILES,
    search_rows: int = 100_000,
    min_class_rows: int = 10,
    C: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    scaler=None,
) -> tuple[dict, pd.DataFrame]:
    """Best ordered feature pair and quantile thresholds by validation F1 (the split design).

    Thresholds are quantiles of the memorized rows of (X, y) (the training rows). The search
    fits on a stratified subsample of at most `search_rows` rows (3/4 fit, 1/4 validation).

    Returns:
        (winner dict with feature_1, q1, t1, feature_2, q2, t2, f1; DataFrame of all candidates
        with their validation F1).
    """
    features = tuple(features)
    _check_search_features(search_features, features)
    rows = np.arange(y.size)
    if y.size > search_rows:
        _, rows = stratified_split(y, search_rows / y.size, seed)
    fit_idx, val_idx = stratified_split(y[rows], 0.25, seed + 1)
    fit_idx, val_idx = rows[fit_idx], rows[val_idx]
    cands = threshold_candidates(X[y], features, search_features, quantiles)
    best, table = _search(X[fit_idx], y[fit_idx], X[val_idx], y[val_idx], cands, features,
                          min_class_rows=min_class_rows, C=C, score=_f1, key_on_selection=False,
                          scaler=scaler, progress=progress)
    best["search_rows"] = int(fit_idx.size + val_idx.size)
    return best, table


def search_partition_on(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_select: np.ndarray,
    y_select: np.ndarray,
    X_thresholds: np.ndarray,
    features=FEATURES,
    *,
    score: Callable[[np.ndarray, np.ndarray], float] | None = None,
    search_features=SEARCH_FEATURES,
    quantiles=QUANTILES,
    search_rows: int = 100_000,
    min_class_rows: int = 10,
    C: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    scaler=None,
) -> tuple[dict, pd.DataFrame]:
    """Best ordered feature pair and quantile thresholds (the study design).

    Candidates' thresholds are the `quantiles` of `X_thresholds` (memorized rows); each
    candidate's group models are fitted on (X_fit, y_fit) (a stratified subsample of at most
    `search_rows` of them) and scored on the selection rows by `score(y, p)` (default: F1 of
    ``p > 0.5``). The default profile selects on the validation rows, the paper profile on the
    test rows (`analysis.predict`).

    Returns:
        (winner dict with feature_1, q1, t1, feature_2, q2, t2, f1 (the selection score),
        distinct_partitions, search_rows; DataFrame of all candidates with their score "f1").
    """
    features = tuple(features)
    _check_search_features(search_features, features)
    if y_fit.size > search_rows:
        _, rows = stratified_split(y_fit, search_rows / y_fit.size, seed)
        X_fit, y_fit = X_fit[rows], y_fit[rows]
    cands = threshold_candidates(X_thresholds, features, search_features, quantiles)
    best, table = _search(X_fit, y_fit, X_select, y_select, cands, features,
                          min_class_rows=min_class_rows, C=C, score=score or _f1,
                          key_on_selection=True, scaler=scaler, progress=progress)
    best["search_rows"] = int(y_fit.size)
    return best, table


def threshold_candidates(X_mem: np.ndarray, features, search_features,
                         quantiles=QUANTILES) -> list[tuple[str, int, float, float]]:
    """(feature, column, quantile, threshold) for each search feature and quantile of the
    memorized rows X_mem (numpy's linear quantiles, as pandas' `quantile` in the paper)."""
    if X_mem.shape[0] == 0:
        raise ValueError("the partition search needs memorized rows for its thresholds")
    features = tuple(features)
    return [(f, features.index(f), q, float(np.quantile(X_mem[:, features.index(f)], q)))
            for f in search_features for q in quantiles]


def _check_search_features(search_features, features) -> None:
    missing = [f for f in search_features if f not in features]
    if missing:
        raise ValueError(f"search features {missing} are not among the model features")


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    return _metrics.evaluate(y, p)["f1"]


def _search(Xf, yf, Xs, ys, cands, features, *, min_class_rows, C, score, key_on_selection,
            scaler, progress) -> tuple[dict, pd.DataFrame]:
    """Score every ordered pair of candidates of distinct features; candidates giving the same
    groups (on the fit rows, and with `key_on_selection` on the selection rows too) are fitted
    and scored once. Ties go to the first candidate in order."""
    pooled = fit_model(Xf, yf, features, C=C, scaler=scaler)
    pairs = [(a, b) for a, b in itertools.permutations(cands, 2) if a[0] != b[0]]
    seen: dict[bytes, float] = {}
    results = []
    for a, b in tqdm(pairs, desc="partition search", disable=not progress, leave=False):
        gf = partition(Xf, a[1], a[3], b[1], b[3])
        gv = partition(Xs, a[1], a[3], b[1], b[3])
        parts = [gf == "group 1", gf == "group 2"]
        if key_on_selection:
            parts += [gv == "group 1", gv == "group 2"]
        key = np.packbits(np.concatenate(parts)).tobytes()
        if key not in seen:
            fit = fit_groups(Xf, yf, gf, GROUPS, features=features, min_class_rows=min_class_rows,
                             C=C, beta0=pooled.beta, tol=1e-6, scaler=scaler)
            seen[key] = score(ys, fit.predict_proba(Xs, gv, pooled))
        results.append({"feature_1": a[0], "q1": a[2], "t1": a[3], "feature_2": b[0],
                        "q2": b[2], "t2": b[3], "f1": seen[key]})
    table = pd.DataFrame(results)
    scores = table["f1"].to_numpy(dtype=np.float64)
    # a score is NaN when undefined (the paper's F1 with precision + recall = 0): never chosen
    # unless every candidate's is
    best = table.iloc[int(np.nanargmax(scores)) if np.isfinite(scores).any() else 0].to_dict()
    best["distinct_partitions"] = len(seen)
    return best, table
