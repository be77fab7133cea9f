"""Evaluation of the predictive models on the test set: bootstrap metrics and paired differences
(in aggregate and per category), the paper's KFold error bars, and the likelihood-ratio tests of
the taxonomic model against the baseline (memtax's nested test and the paper's per-category one).

The paper's LRT (model_training.py `likelihood_ratio_test`, called in `train_taxonomic_model`):
for each category, on that category's test rows, ``-2 (ll_base - ll_tax)`` where each ll is
``-log_loss(labels, predictions, normalize=False)`` of the models' *hard* predictions
(``p > 0.5``, its `PredictionModel.predict`), p-value ``chi2.sf(statistic, df=1)``. scikit-learn
clips hard predictions to [eps, 1 - eps] (eps = float64 machine epsilon), so every wrong row costs
-log(eps) = 36.04 nats: the statistic is 72.08 x (baseline errors - taxonomic errors) (up to
terms of order eps), a count of errors rather than a likelihood ratio, and it is negative (p = 1)
when the taxonomic model errs more.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis import metrics as _metrics
from analysis.logistic import fit_model, log_likelihood

__all__ = ["bootstrap_metrics", "category_metrics", "kfold_error_bars", "hard_log_loss",
           "paper_lrt", "likelihood_ratio_test"]

AGGREGATE = "aggregate"
# scikit-learn's log_loss clip for float64 predictions (eps="auto").
_EPS = float(np.finfo(np.float64).eps)


def bootstrap_metrics(y: np.ndarray, probs: dict[str, np.ndarray], differences, *,
                      n_boot: int, alpha: float, seed: int,
                      hard: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics: model, scoring, metric, value, lo, hi; differences: comparison, scoring,
    metric, value, lo, hi) of each model's test probabilities, by paired bootstrap over the
    test rows. Scoring "prob" always; with `hard` also "hard" (AUCs from hard labels)."""
    rows, drows = [], []
    for scoring in ("prob", "hard") if hard else ("prob",):
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


def _category_rows(cats: np.ndarray, categories):
    """(name, row mask) for each category with rows, then the aggregate."""
    for c in categories:
        rows = cats == c
        if rows.any():
            yield c, rows
    yield AGGREGATE, np.ones(cats.size, dtype=bool)


def category_metrics(y: np.ndarray, cats: np.ndarray, probs: dict[str, np.ndarray], differences,
                     categories, *, n_boot: int, alpha: float, seed: int, hard: bool,
                     aggregate: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`bootstrap_metrics` on each category's test rows and on all of them ("aggregate"):
    (metrics, differences) with a `category` column first. `aggregate`: the all-rows result of
    `bootstrap_metrics` with the same arguments, if already computed (reused, not redone)."""
    mets, diffs = [], []
    for name, rows in _category_rows(cats, categories):
        if name == AGGREGATE and aggregate is not None:
            m, d = aggregate
        else:
            m, d = bootstrap_metrics(y[rows], {k: p[rows] for k, p in probs.items()},
                                     differences, n_boot=n_boot, alpha=alpha, seed=seed,
                                     hard=hard)
        mets.append(m.assign(category=name))
        diffs.append(d.assign(category=name))
    return (pd.concat(mets, ignore_index=True)[["model", "category", "scoring", "metric",
                                                "value", "lo", "hi"]],
            pd.concat(diffs, ignore_index=True)[["comparison", "category", "scoring", "metric",
                                                 "value", "lo", "hi"]])


def kfold_error_bars(y: np.ndarray, cats: np.ndarray, probs: dict[str, np.ndarray], categories,
                     *, n_splits: int = 100, seed: int = 0) -> pd.DataFrame:
    """The paper's KFold error bars (`analysis.metrics.kfold_metrics`) per category and in
    aggregate: model, category, metric, value, error, folds."""
    frames = []
    for name, rows in _category_rows(cats, categories):
        res = _metrics.kfold_metrics(y[rows], {k: p[rows] for k, p in probs.items()},
                                     n_splits=n_splits, seed=seed)
        frames += [df.assign(model=model, category=name) for model, df in res.items()]
    return pd.concat(frames, ignore_index=True)[["model", "category", "metric", "value", "error",
                                                 "folds"]]


def hard_log_loss(y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's ``log_loss(y, pred, normalize=False)`` of hard 0/1 predictions: each row's
    prediction clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(pred, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y, dtype=bool)
    return float(-np.sum(np.where(y, np.log(p), np.log1p(-p))))


def paper_lrt(y: np.ndarray, cats: np.ndarray, p_baseline: np.ndarray, p_taxonomic: np.ndarray,
              categories, threshold: float = 0.5) -> pd.DataFrame:
    """The paper's likelihood-ratio test per category (module docstring): category, statistic,
    df (1), pvalue, rows, baseline_errors, taxonomic_errors."""
    out = []
    for c in categories:
        rows = cats == c
        if not rows.any():
            continue
        yc = y[rows]
        hb, ht = p_baseline[rows] > threshold, p_taxonomic[rows] > threshold
        statistic = -2.0 * (hard_log_loss(yc, ht) - hard_log_loss(yc, hb))
        out.append({"category": c, "statistic": statistic, "df": 1,
                    "pvalue": float(stats.chi2.sf(statistic, 1)), "rows": int(rows.sum()),
                    "baseline_errors": int((hb != yc).sum()),
                    "taxonomic_errors": int((ht != yc).sum())})
    return pd.DataFrame(out, columns=["category", "statistic", "df", "pvalue", "rows",
                                      "baseline_errors", "taxonomic_errors"])


def likelihood_ratio_test(X, y, cats, fitted, features, C, scaler=None) -> dict:
    """Taxonomic vs baseline as nested models on the training rows of the `fitted` categories,
    both refit without class weights (a true likelihood); df = the extra parameters."""
    if not fitted:
        return {"statistic": np.nan, "df": 0, "pvalue": np.nan, "rows": 0}
    rows = np.isin(cats, list(fitted))
    Xr, yr, cr = X[rows], y[rows], cats[rows]
    base = fit_model(Xr, yr, features, C=C, class_weight=None, scaler=scaler)
    ll_base = log_likelihood(base, Xr, yr)
    ll_tax, k_tax = 0.0, 0
    for c in fitted:
        r = cr == c
        m = fit_model(Xr[r], yr[r], features, C=C, class_weight=None, scaler=scaler)
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
