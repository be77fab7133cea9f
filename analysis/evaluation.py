"""Evaluation of the predictive models on the test set (bootstrap metrics and paired
differences) and the likelihood-ratio tests of the taxonomic model against the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis import metrics as _metrics
from analysis.logistic import fit_model, log_likelihood

__all__ = ["bootstrap_metrics", "likelihood_ratio_test", "paper_likelihood_ratio"]


def bootstrap_metrics(y: np.ndarray, probs: dict[str, np.ndarray], differences, *,
                      n_boot: int, alpha: float, seed: int,
                      paper: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics: model, scoring, metric, value, lo, hi; differences: comparison, scoring,
    metric, value, lo, hi) of each model's test probabilities, by paired bootstrap over the
    test rows. Scoring "prob" always; with `paper` also "hard" (AUCs from hard labels)."""
    rows, drows = [], []
    for scoring in ("prob", "hard") if paper else ("prob",):
        boot = _metrics.paired_bootstrap(y, probs, n_boot=n_boot, alpha=alpha, seed=seed,
                                         hard_auc=scoring == "hard",
                                         differences=tuple(differences))
        for name, df in boot.items():
            df = df.assign(scoring=scoring)
            if "-" in name:
                drows.append(df.assign(comparison=name))
            else:
                rows.append(df.assign(model=name))
    metrics_df = pd.concat(rows, ignore_index=True)[
        ["model", "scoring", "metric", "value", "lo", "hi"]]
    diff_df = pd.concat(drows, ignore_index=True)[
        ["comparison", "scoring", "metric", "value", "lo", "hi"]]
    return metrics_df, diff_df


def likelihood_ratio_test(X, y, cats, fitted, features, C) -> dict:
    """Taxonomic vs baseline as nested models on the training rows of the `fitted` categories,
    both refit without class weights (a true likelihood); df = the extra parameters."""
    if not fitted:
        return {"statistic": np.nan, "df": 0, "pvalue": np.nan, "rows": 0}
    rows = np.isin(cats, list(fitted))
    Xr, yr, cr = X[rows], y[rows], cats[rows]
    base = fit_model(Xr, yr, features, C=C, class_weight=None)
    ll_base = log_likelihood(base, Xr, yr)
    ll_tax, k_tax = 0.0, 0
    for c in fitted:
        r = cr == c
        m = fit_model(Xr[r], yr[r], features, C=C, class_weight=None)
        ll_tax += log_likelihood(m, Xr[r], yr[r])
        k_tax += m.beta.size
    df = k_tax - base.beta.size
    stat = max(0.0, 2.0 * (ll_tax - ll_base))
    return {
        "statistic": stat,
        "df": int(df),
        "pvalue": float(stats.chi2.sf(stat, df)) if df > 0 else float("nan"),
        "rows": int(rows.sum()),
        "ll_baseline": ll_base,
        "ll_taxonomic": ll_tax,
    }


def paper_likelihood_ratio(y: np.ndarray, p_baseline: np.ndarray,
                           p_taxonomic: np.ndarray) -> dict:
    """The paper's version: test-set log-likelihoods of the two models' probabilities, one
    degree of freedom. {"paper_statistic", "paper_pvalue"}."""
    eps = 1e-15
    pb = np.clip(p_baseline, eps, 1 - eps)
    pt = np.clip(p_taxonomic, eps, 1 - eps)
    llb = np.sum(y * np.log(pb) + (~y) * np.log1p(-pb))
    llt = np.sum(y * np.log(pt) + (~y) * np.log1p(-pt))
    statistic = float(-2 * (llb - llt))
    return {"paper_statistic": statistic, "paper_pvalue": float(stats.chi2.sf(statistic, 1))}
