"""Logistic regressions of the predictive models: a damped Newton fit in numpy, the fitted model
with its standardization, one model per group, and the statsmodels coefficient table.

Standardization: by default each model standardizes with its own training rows' mean and
standard deviation. With `scaler=(mean, scale)` (one entry per feature) every model uses those
fixed statistics instead: the paper profile passes statistics of all modelled rows, fitted before
the train/test split as the paper's `preprocess_dataset` did (model_training.py: a
`StandardScaler` fitted on the whole combined dataset).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.design import CATEGORICAL, FEATURES, balanced_weights

__all__ = ["newton_logistic", "LogisticModel", "fit_model", "log_likelihood", "inference_table",
           "GroupedFit", "fit_groups", "global_scaler"]


def global_scaler(X: np.ndarray, features=FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of every feature over all rows of X, as scikit-learn's StandardScaler
    (population standard deviation; scale 1 where it is 0); categorical features keep mean 0,
    scale 1 (the paper scaled its continuous columns only)."""
    cont = np.array([f not in CATEGORICAL for f in tuple(features)])
    mean = np.where(cont, X.mean(axis=0), 0.0)
    scale = np.where(cont, X.std(axis=0), 1.0)
    return mean, np.where(scale > 0, scale, 1.0)


def newton_logistic(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    l2: float = 1.0,
    beta0: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-8,
) -> tuple[np.ndarray, bool]:
    """Weighted, L2-penalised logistic regression with intercept, by damped Newton steps.

    Minimises ``sum_i w_i logloss_i + l2/2 * ||beta[1:]||^2`` (scikit-learn's objective with
    C = 1 / l2).

    Args:
        X: (n, k) features (already standardized). y: (n,) 0/1. w: (n,) row weights.
        beta0: (k + 1,) starting point, intercept first.

    Returns:
        beta (k + 1,) intercept first, and whether the step size fell below `tol`.
    """
    n, k = X.shape
    A = np.empty((n, k + 1))
    A[:, 0] = 1.0
    A[:, 1:] = X
    yf = np.asarray(y, dtype=np.float64)
    pen = np.full(k + 1, float(l2))
    pen[0] = 0.0
    beta = np.zeros(k + 1) if beta0 is None else np.array(beta0, dtype=np.float64)

    def objective(b):
        eta = A @ b
        return float(np.sum(w * (np.logaddexp(0.0, eta) - yf * eta)) + 0.5 * np.sum(pen * b * b))

    loss = objective(beta)
    for _ in range(max_iter):
        p = expit(A @ beta)
        grad = A.T @ (w * (p - yf)) + pen * beta
        h = w * p * (1.0 - p)
        H = (A * h[:, None]).T @ A
        H[np.diag_indices_from(H)] += pen + 1e-12
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, grad, rcond=None)[0]
        t = 1.0
        while True:  # backtracking: Newton steps overshoot far from the optimum
            new = beta - t * step
            new_loss = objective(new)
            if new_loss <= loss + 1e-12 * abs(loss) or t < 1e-8:
                break
            t *= 0.5
        beta, loss = new, new_loss
        if np.max(np.abs(t * step)) < tol * (1.0 + np.max(np.abs(beta))):
            return beta, True
    return beta, False


@dataclass
class LogisticModel:
    """A fitted logistic regression on a subset of FEATURES with its own standardization.

    `used` are the feature indices kept (non-constant on the training rows); `mean`/`scale` are
    per used feature (scale 1 and mean 0 for categorical ones); `beta` is intercept first.
    """

    features: tuple[str, ...]
    used: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    beta: np.ndarray
    converged: bool
    n_train: int
    n_pos: int

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (X[:, self.used] - self.mean) / self.scale

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(memorized) for raw feature rows X (n, len(features)) -> (n,)."""
        return expit(self.beta[0] + self.transform(X) @ self.beta[1:])

    @property
    def dropped(self) -> list[str]:
        return [f for j, f in enumerate(self.features) if j not in set(self.used.tolist())]


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    features=FEATURES,
    *,
    C: float = 1.0,
    class_weight: str | None = "balanced",
    beta0: np.ndarray | None = None,
    tol: float = 1e-8,
    scaler: tuple[np.ndarray, np.ndarray] | None = None,
) -> LogisticModel:
    """Standardize on these rows (or with the fixed `scaler` (mean, scale), one entry per
    feature), drop features constant on these rows, fit by Newton. (A constant column would get
    coefficient 0 under the penalty anyway: the unpenalized intercept absorbs it.)"""
    features = tuple(features)
    cont = np.array([f not in CATEGORICAL for f in features])
    lo, hi = X.min(axis=0), X.max(axis=0)
    used = np.flatnonzero(hi > lo)
    if scaler is None:
        mean = np.where(cont[used], X[:, used].mean(axis=0), 0.0)
        scale = np.where(cont[used], X[:, used].std(axis=0), 1.0)
    else:
        mean, scale = (np.asarray(a, dtype=np.float64)[used] for a in scaler)
    scale = np.where(scale > 0, scale, 1.0)
    Xs = (X[:, used] - mean) / scale
    w = balanced_weights(y) if class_weight == "balanced" else np.ones(y.size)
    if beta0 is not None and beta0.size != used.size + 1:
        beta0 = None
    l2 = 0.0 if C is None or np.isinf(C) else 1.0 / C
    beta, ok = newton_logistic(Xs, y, w, l2=l2, beta0=beta0, tol=tol)
    return LogisticModel(features, used, mean, scale, beta, ok, int(y.size), int(y.sum()))


def log_likelihood(model: LogisticModel, X: np.ndarray, y: np.ndarray) -> float:
    """Unweighted Bernoulli log-likelihood of rows (X, y) under `model`."""
    eta = model.beta[0] + model.transform(X) @ model.beta[1:]
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def inference_table(
    model: LogisticModel,
    X: np.ndarray,
    y: np.ndarray,
    *,
    alpha: float = 0.05,
    max_rows: int = 500_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Coefficients with sandwich standard errors, Wald z, p-values and CIs (statsmodels).

    A binomial GLM on `model`'s standardized features with balanced class weights as
    `var_weights`, HC0 covariance, on at most `max_rows` random rows of (X, y).

    Returns:
        DataFrame(feature, coef, se, z, p, lo, hi, note), intercept first; dropped (constant)
        features appear with NaN values and note "constant on training rows".
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    if y.size > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(y.size, max_rows, replace=False))
        X, y = X[rows], y[rows]
    Xs = model.transform(X)
    A = np.column_stack([np.ones(y.size), Xs])
    note = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            res = sm.GLM(
                y.astype(np.float64),
                A,
                family=sm.families.Binomial(),
                var_weights=balanced_weights(y),
            ).fit(start_params=model.beta, cov_type="HC0", maxiter=100, tol=1e-10)
        params, se = np.asarray(res.params), np.asarray(res.bse)
        z, p = np.asarray(res.tvalues), np.asarray(res.pvalues)
        ci = np.asarray(res.conf_int(alpha=alpha))
    except (PerfectSeparationWarning, np.linalg.LinAlgError, ValueError) as exc:
        note = f"inference failed: {type(exc).__name__}: {exc}"
        params = model.beta
        se = z = p = np.full(params.size, np.nan)
        ci = np.full((params.size, 2), np.nan)
    names = ["intercept"] + [model.features[j] for j in model.used]
    out = pd.DataFrame(
        {
            "feature": names,
            "coef": params,
            "se": se,
            "z": z,
            "p": p,
            "lo": ci[:, 0],
            "hi": ci[:, 1],
            "note": note,
        }
    )
    extra = pd.DataFrame(
        {
            "feature": model.dropped,
            "coef": np.nan,
            "se": np.nan,
            "z": np.nan,
            "p": np.nan,
            "lo": np.nan,
            "hi": np.nan,
            "note": "constant on training rows",
        }
    )
    return pd.concat([out, extra], ignore_index=True) if len(extra) else out




@dataclass
class GroupedFit:
    """One model per group, plus the groups that were too small (scored by a fallback)."""

    models: dict[str, LogisticModel]
    skipped: dict[str, str]

    def predict_proba(
        self, X: np.ndarray, groups: np.ndarray, fallback: LogisticModel
    ) -> np.ndarray:
        p = fallback.predict_proba(X) if len(self.skipped) else np.empty(X.shape[0])
        for g, m in self.models.items():
            rows = groups == g
            if rows.any():
                p[rows] = m.predict_proba(X[rows])
        return p


def fit_groups(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names,
    *,
    features=FEATURES,
    min_class_rows: int = 10,
    C: float = 1.0,
    class_weight: str | None = "balanced",
    beta0: np.ndarray | None = None,
    tol: float = 1e-8,
    scaler: tuple[np.ndarray, np.ndarray] | None = None,
) -> GroupedFit:
    """Fit one model per group name; groups lacking `min_class_rows` of a class are skipped."""
    models, skipped = {}, {}
    for g in names:
        rows = groups == g
        pos = int(y[rows].sum())
        neg = int(rows.sum()) - pos
        if pos < min_class_rows or neg < min_class_rows:
            skipped[g] = (
                f"too few rows to fit: {pos} memorized, {neg} non-memorized training rows "
                f"(need {min_class_rows} of each)"
            )
            continue
        models[g] = fit_model(
            X[rows], y[rows], features, C=C, class_weight=class_weight, beta0=beta0, tol=tol,
            scaler=scaler,
        )
    return GroupedFit(models, skipped)

