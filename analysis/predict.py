"""The paper's predictive models of memorization: baseline, taxonomic, optimally partitioned.

Features (the paper's final `model_parameters.py`, EleutherAI/semantic-memorization, mapped to
memtax's column names): 13 continuous features, standardized, plus the binary `is_templating`
(left unscaled, as in the paper):

    paper column          memtax column
    sequence_duplicates   duplicates
    max/avg/min/median/p25/p75_frequency   token_freq_max/mean/min/median/p25/p75
    generation_perplexity cont_ppl
    prompt_perplexity     prompt_ppl
    sequence_perplexity   seq_ppl
    0_8_templates         semantic_matches
    0_8_snowclones        textual_matches
    huffman_coding_length huffman_code_length

Models (all logistic regressions with balanced class weights, L2 penalty C = 1 on the
standardized features as the paper's scikit-learn models, intercept unpenalized):

- **baseline**: one regression on all training rows;
- **taxonomic**: one regression per category (`analysis.taxonomy`); each row is scored by its
  category's model. A category without `min_class_rows` memorized *and* non-memorized training
  rows is reported in `skipped` and its rows are scored by the baseline;
- **partition** (optional, `search=True`): the optimally partitioned model. Candidates are ordered
  pairs of distinct features from SEARCH_FEATURES with thresholds at the 25/50/75% quantiles of
  the memorized training rows: ``f1 >= t1`` -> group 1, else ``f2 >= t2`` -> group 2, else
  group 3 (the issue's rule; the paper's code used ``>``), one regression per group. The search
  runs on a stratified subsample of at most `search_rows` training rows (3/4 to fit, 1/4 to
  validate; candidates giving identical groups are fitted once) and picks the best validation F1;
  the winner is then refit on all training rows and scored on the test set.

Each model standardizes with statistics of its own training rows only; features constant on those
rows are dropped from that model (reported in the coefficient table). The test set is a stratified
`test_size` split, so it keeps the natural class prior. Metrics (`analysis.metrics`) come with
bootstrap intervals over the test set; differences between models use paired resamples.

Fitting is a damped Newton method in numpy (exact for 14 features, a few seconds on millions of
rows). The coefficient table (standard errors, Wald z and p-values, confidence intervals) comes
from statsmodels: a binomial GLM with the class weights as `var_weights`, started at the Newton
solution, with sandwich (HC0) standard errors because class weights are not frequency weights; it
is fitted on a random subsample of at most `inference_rows` training rows (default 500,000) to
bound time and memory, and unpenalized.

The likelihood-ratio test compares the taxonomic model with the baseline as nested models on the
training rows of the fitted categories: both refit *without* class weights (so the likelihood is a
true likelihood), statistic ``2 (sum_k ll_k - ll_base)`` with degrees of freedom equal to the
number of extra parameters. (The paper computed a test-set version with one degree of freedom;
in paper mode that number is reported too.)
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from tqdm.auto import tqdm

from analysis import metrics as _metrics
from analysis import taxonomy
from features import token_stats

CONTINUOUS: tuple[str, ...] = (
    "duplicates",
    *token_stats.COLUMNS,  # max, mean, min, median, p25, p75
    "cont_ppl",
    "prompt_ppl",
    "seq_ppl",
    "semantic_matches",
    "textual_matches",
    "huffman_code_length",
)
CATEGORICAL: tuple[str, ...] = ("is_templating",)
FEATURES: tuple[str, ...] = CONTINUOUS + CATEGORICAL
# The paper's TAXONOMY_SEARCH_FEATURES in memtax's names.
SEARCH_FEATURES: tuple[str, ...] = (
    "token_freq_max",
    "token_freq_mean",
    "token_freq_min",
    "token_freq_median",
    "semantic_matches",
    "textual_matches",
    "duplicates",
    "huffman_code_length",
    "is_templating",
    "cont_ppl",
)
QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)


# --------------------------------------------------------------------------- design matrix


def design(
    table, features=FEATURES, label: str = taxonomy.LABEL, nan_policy: str = "raise"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix, labels and kept-row mask.

    Returns:
        X (n_kept, len(features)) float64, y (n_kept,) bool, keep (n,) bool over the input rows.
        With nan_policy="raise" a NaN/inf feature raises ValueError naming the columns;
        with "drop" such rows are left out (keep marks the rest).
    """
    if nan_policy not in ("raise", "drop"):
        raise ValueError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")
    taxonomy.require_columns(table, list(features) + [label], "feature table")
    cols = [np.asarray(taxonomy.column(table, f), dtype=np.float64) for f in features]
    X = np.column_stack(cols) if cols else np.empty((0, 0))
    y = taxonomy.labels(table, label)
    finite = np.isfinite(X)
    keep = finite.all(axis=1)
    if not keep.all():
        bad = {
            f: int((~finite[:, j]).sum()) for j, f in enumerate(features) if not finite[:, j].all()
        }
        if nan_policy == "raise":
            raise ValueError(
                f"non-finite (NaN or infinite) feature values in {bad} (column: rows); "
                "clean them or pass nan_policy='drop'"
            )
        X, y = X[keep], y[keep]
    return X, y, keep


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """scikit-learn's 'balanced' class weights n / (2 n_class), per row, shape (n,)."""
    y = np.asarray(y, dtype=bool)
    n, pos = y.size, int(y.sum())
    if pos == 0 or pos == n:
        raise ValueError("balanced class weights need both classes")
    return np.where(y, n / (2.0 * pos), n / (2.0 * (n - pos)))


def stratified_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test row indices (sorted) with the class prior kept in both parts."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    test = []
    for cls in (False, True):
        idx = np.flatnonzero(y == cls)
        k = int(round(idx.size * test_size))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    mask = np.ones(y.size, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx


# --------------------------------------------------------------------------- Newton fit


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
) -> LogisticModel:
    """Standardize on these rows, drop constant features, fit by Newton."""
    features = tuple(features)
    cont = np.array([f not in CATEGORICAL for f in features])
    lo, hi = X.min(axis=0), X.max(axis=0)
    used = np.flatnonzero(hi > lo)
    mean = np.where(cont[used], X[:, used].mean(axis=0), 0.0)
    scale = np.where(cont[used], X[:, used].std(axis=0), 1.0)
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


# --------------------------------------------------------------------------- grouped models


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
            X[rows], y[rows], features, C=C, class_weight=class_weight, beta0=beta0, tol=tol
        )
    return GroupedFit(models, skipped)


# --------------------------------------------------------------------------- partition search


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


# --------------------------------------------------------------------------- the study


@dataclass
class PredictResult:
    """Everything `fit` measured. DataFrames are long-format, ready for CSV/markdown."""

    metrics: pd.DataFrame  # model, scoring, metric, value, lo, hi
    differences: pd.DataFrame  # comparison, scoring, metric, value, lo, hi (paired bootstrap)
    coefficients: pd.DataFrame  # model, group, feature, coef, se, z, p, lo, hi, note
    lrt: dict  # statistic, df, pvalue, rows (+ paper_* in paper mode)
    skipped: pd.DataFrame  # model, group, reason
    test_labels: np.ndarray
    test_probs: dict[str, np.ndarray]
    partition: dict | None = None
    search: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def _lrt(X, y, cats, fitted, features, C) -> dict:
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


def fit(
    table,
    *,
    features=FEATURES,
    recitation_threshold: float = 5,
    test_size: float = 0.2,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    C: float = 1.0,
    min_class_rows: int = 10,
    nan_policy: str = "raise",
    search: bool = False,
    search_features=None,
    search_rows: int = 100_000,
    inference_rows: int = 500_000,
    paper: bool = False,
    progress: bool = True,
) -> PredictResult:
    """Fit and evaluate the baseline, taxonomic and (with `search`) partition models.

    Args:
        table: feature table (pyarrow.Table or pandas.DataFrame) with `exact_match`,
            `features`, `duplicates` and `is_templating`.
        features: model features (default FEATURES: the paper's 13 continuous + is_templating).
        n_boot, alpha: bootstrap resamples of the test set and the interval level.
        C: inverse L2 strength (scikit-learn's convention; the paper's 1.0).
        min_class_rows: a category/group needs this many training rows of each class.
        nan_policy: "raise" on NaN/inf features, or "drop" those rows (reported in notes).
        search, search_features, search_rows: the optimal-partition search (default features:
            SEARCH_FEATURES among `features`) on at most `search_rows` training rows.
        inference_rows: rows per model for the statsmodels coefficient table.
        paper: also report ROC-AUC/PR-AUC from hard labels and the paper's test-set LRT (df 1).

    Returns:
        PredictResult.
    """
    features = tuple(features)
    X, y, keep = design(table, features, nan_policy=nan_policy)
    notes = []
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows with non-finite features")
    n_pos = int(y.sum())
    if n_pos < 2 or y.size - n_pos < 2:
        raise ValueError(
            f"need at least 2 memorized and 2 non-memorized rows, got {n_pos} and "
            f"{y.size - n_pos} (a single class cannot be modelled)"
        )
    cats = taxonomy.classify(table, recitation_threshold)[keep]
    train, test = stratified_split(y, test_size, seed)
    Xtr, ytr, Xte, yte = X[train], y[train], X[test], y[test]
    if ytr.sum() < 2 or yte.sum() < 1:
        raise ValueError("too few memorized rows to split into training and test sets")

    base = fit_model(Xtr, ytr, features, C=C)
    tax = fit_groups(
        Xtr,
        ytr,
        cats[train],
        taxonomy.CATEGORIES,
        features=features,
        min_class_rows=min_class_rows,
        C=C,
        beta0=base.beta,
    )
    probs = {
        "baseline": base.predict_proba(Xte),
        "taxonomic": tax.predict_proba(Xte, cats[test], base),
    }
    skipped = [{"model": "taxonomic", "group": g, "reason": r} for g, r in tax.skipped.items()]
    if tax.skipped:
        notes.append(
            "taxonomic: rows of skipped categories "
            f"({', '.join(tax.skipped)}) are scored by the baseline model"
        )
    coef = [
        inference_table(base, Xtr, ytr, alpha=alpha, max_rows=inference_rows, seed=seed).assign(
            model="baseline", group="all"
        )
    ]
    for c, m in tax.models.items():
        r = cats[train] == c
        coef.append(
            inference_table(
                m, Xtr[r], ytr[r], alpha=alpha, max_rows=inference_rows, seed=seed
            ).assign(model="taxonomic", group=c)
        )
    if ytr.size > inference_rows:
        notes.append(
            f"coefficient inference on a random subsample of {inference_rows} "
            "training rows per model"
        )

    best = search_table = None
    if search:
        best, search_table = search_partition(
            Xtr,
            ytr,
            features,
            search_features=(
                tuple(f for f in SEARCH_FEATURES if f in features)
                if search_features is None
                else search_features
            ),
            search_rows=search_rows,
            min_class_rows=min_class_rows,
            C=C,
            seed=seed,
            progress=progress,
        )
        j1, j2 = features.index(best["feature_1"]), features.index(best["feature_2"])
        gtr = partition(Xtr, j1, best["t1"], j2, best["t2"])
        gte = partition(Xte, j1, best["t1"], j2, best["t2"])
        part = fit_groups(
            Xtr,
            ytr,
            gtr,
            GROUPS,
            features=features,
            min_class_rows=min_class_rows,
            C=C,
            beta0=base.beta,
        )
        probs["partition"] = part.predict_proba(Xte, gte, base)
        skipped += [
            {"model": "partition", "group": g, "reason": r} for g, r in part.skipped.items()
        ]
        for g, m in part.models.items():
            r = gtr == g
            coef.append(
                inference_table(
                    m, Xtr[r], ytr[r], alpha=alpha, max_rows=inference_rows, seed=seed
                ).assign(model="partition", group=g)
            )

    diffs = [("taxonomic", "baseline")] + ([("partition", "baseline")] if search else [])
    rows, drows = [], []
    for scoring in ("prob", "hard") if paper else ("prob",):
        boot = _metrics.paired_bootstrap(
            yte,
            probs,
            n_boot=n_boot,
            alpha=alpha,
            seed=seed,
            hard_auc=scoring == "hard",
            differences=tuple(diffs),
        )
        for name, df in boot.items():
            df = df.assign(scoring=scoring)
            if "-" in name:
                drows.append(df.assign(comparison=name))
            else:
                rows.append(df.assign(model=name))
    metrics_df = pd.concat(rows, ignore_index=True)[
        ["model", "scoring", "metric", "value", "lo", "hi"]
    ]
    diff_df = pd.concat(drows, ignore_index=True)[
        ["comparison", "scoring", "metric", "value", "lo", "hi"]
    ]
    lrt = (
        _lrt(Xtr, ytr, cats[train], list(tax.models), features, C)
        if tax.models
        else {"statistic": np.nan, "df": 0, "pvalue": np.nan, "rows": 0}
    )
    if paper:
        eps = 1e-15
        pb = np.clip(probs["baseline"], eps, 1 - eps)
        pt = np.clip(probs["taxonomic"], eps, 1 - eps)
        llb = np.sum(yte * np.log(pb) + (~yte) * np.log1p(-pb))
        llt = np.sum(yte * np.log(pt) + (~yte) * np.log1p(-pt))
        lrt["paper_statistic"] = float(-2 * (llb - llt))
        lrt["paper_pvalue"] = float(stats.chi2.sf(lrt["paper_statistic"], 1))
    coef_df = pd.concat(coef, ignore_index=True)[
        ["model", "group", "feature", "coef", "se", "z", "p", "lo", "hi", "note"]
    ]
    return PredictResult(
        metrics=metrics_df,
        differences=diff_df,
        coefficients=coef_df,
        lrt=lrt,
        skipped=pd.DataFrame(skipped, columns=["model", "group", "reason"]),
        test_labels=yte,
        test_probs=probs,
        partition=best,
        search=search_table,
        notes=notes,
    )


# --------------------------------------------------------------------------- synthetic data


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
    return df, planted
