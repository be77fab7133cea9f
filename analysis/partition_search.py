"""The optimally partitioned model's search: ordered feature pairs with quantile thresholds,
each candidate partition fitted with one regression per group and scored by validation F1."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import metrics as _metrics
from analysis.design import FEATURES, QUANTILES, SEARCH_FEATURES, stratified_split
from analysis.logistic import fit_groups, fit_model

__all__ = ["GROUPS", "partition", "search_partition"]



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
) -> tuple[dict, pd.DataFrame]:
    """Best ordered feature pair and quantile thresholds by validation F1.

    Thresholds are quantiles of the memorized rows of (X, y) (the training rows). The search
    fits on a stratified subsample of at most `search_rows` rows (3/4 fit, 1/4 validation).

    Returns:
        (winner dict with feature_1, q1, t1, feature_2, q2, t2, f1; DataFrame of all candidates
        with their validation F1).
    """
    features = tuple(features)
    missing = [f for f in search_features if f not in features]
    if missing:
        raise ValueError(f"search features {missing} are not among the model features")
    rows = np.arange(y.size)
    if y.size > search_rows:
        _, rows = stratified_split(y, search_rows / y.size, seed)
    fit_idx, val_idx = stratified_split(y[rows], 0.25, seed + 1)
    fit_idx, val_idx = rows[fit_idx], rows[val_idx]
    Xf, yf, Xv, yv = X[fit_idx], y[fit_idx], X[val_idx], y[val_idx]
    pooled = fit_model(Xf, yf, features, C=C)
    mem = X[y]
    cands = []
    for f in search_features:
        j = features.index(f)
        for q in quantiles:
            cands.append((f, j, q, float(np.quantile(mem[:, j], q))))
    pairs = [(a, b) for a, b in itertools.permutations(cands, 2) if a[0] != b[0]]
    seen: dict[bytes, float] = {}
    results = []
    for a, b in tqdm(pairs, desc="partition search", disable=not progress, leave=False):
        gf = partition(Xf, a[1], a[3], b[1], b[3])
        gv = partition(Xv, a[1], a[3], b[1], b[3])
        key = np.packbits(np.concatenate([gf == "group 1", gf == "group 2"])).tobytes()
        if key not in seen:
            fit = fit_groups(
                Xf,
                yf,
                gf,
                GROUPS,
                features=features,
                min_class_rows=min_class_rows,
                C=C,
                beta0=pooled.beta,
                tol=1e-6,
            )
            p = fit.predict_proba(Xv, gv, pooled)
            seen[key] = _metrics.evaluate(yv, p)["f1"]
        results.append(
            {
                "feature_1": a[0],
                "q1": a[2],
                "t1": a[3],
                "feature_2": b[0],
                "q2": b[2],
                "t2": b[3],
                "f1": seen[key],
            }
        )
    table = pd.DataFrame(results)
    best = table.iloc[int(np.argmax(table["f1"].to_numpy()))].to_dict()
    best["distinct_partitions"] = len(seen)
    best["search_rows"] = int(fit_idx.size + val_idx.size)
    return best, table

