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
  group 3 (memtax's rule, docs/notes/analysis.md; the paper's code used ``>``), one regression
  per group. The search runs on a stratified subsample of at most `search_rows` training rows
  (3/4 to fit, 1/4 to validate; candidates giving identical groups are fitted once) and picks
  the best validation F1; the winner is then refit on all training rows and scored on the test
  set.

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

The work is split by job: `analysis.design` (features, design matrix, split), `analysis.logistic`
(the regressions and their coefficient table), `analysis.partition_search`, `analysis.evaluation`
(bootstrap metrics, likelihood-ratio tests) and `analysis.synthetic` (planted test data); every
public name is importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import taxonomy
from analysis.design import (
    CATEGORICAL,
    CONTINUOUS,
    FEATURES,
    QUANTILES,
    SEARCH_FEATURES,
    balanced_weights,
    design,
    stratified_split,
)
from analysis.evaluation import bootstrap_metrics, likelihood_ratio_test, paper_likelihood_ratio
from analysis.logistic import (
    GroupedFit,
    LogisticModel,
    fit_groups,
    fit_model,
    inference_table,
    log_likelihood,
    newton_logistic,
)
from analysis.partition_search import GROUPS, partition, search_partition
from analysis.synthetic import synthetic_table

__all__ = ["CONTINUOUS", "CATEGORICAL", "FEATURES", "SEARCH_FEATURES", "QUANTILES", "GROUPS",
           "design", "balanced_weights", "stratified_split", "newton_logistic", "LogisticModel",
           "fit_model", "log_likelihood", "inference_table", "GroupedFit", "fit_groups",
           "partition", "search_partition", "PredictResult", "fit", "synthetic_table"]


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


@dataclass
class _Split:
    """The modelled rows split into training and test sets, with each row's category."""

    Xtr: np.ndarray
    ytr: np.ndarray
    Xte: np.ndarray
    yte: np.ndarray
    cats_tr: np.ndarray
    cats_te: np.ndarray


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
    notes: list[str] = []
    s = _split_rows(table, features, recitation_threshold, test_size, seed, nan_policy, notes)
    inference = dict(alpha=alpha, max_rows=inference_rows, seed=seed)

    base = fit_model(s.Xtr, s.ytr, features, C=C)
    tax = fit_groups(s.Xtr, s.ytr, s.cats_tr, taxonomy.CATEGORIES, features=features,
                     min_class_rows=min_class_rows, C=C, beta0=base.beta)
    probs = {"baseline": base.predict_proba(s.Xte),
             "taxonomic": tax.predict_proba(s.Xte, s.cats_te, base)}
    skipped = _skipped_rows("taxonomic", tax)
    if tax.skipped:
        notes.append("taxonomic: rows of skipped categories "
                     f"({', '.join(tax.skipped)}) are scored by the baseline model")
    coef = [inference_table(base, s.Xtr, s.ytr, **inference).assign(model="baseline",
                                                                   group="all")]
    coef += _group_coefficients("taxonomic", tax, s.cats_tr, s.Xtr, s.ytr, inference)
    if s.ytr.size > inference_rows:
        notes.append(f"coefficient inference on a random subsample of {inference_rows} "
                     "training rows per model")

    best = search_table = None
    if search:
        if search_features is None:
            search_features = tuple(f for f in SEARCH_FEATURES if f in features)
        best, search_table = search_partition(
            s.Xtr, s.ytr, features, search_features=search_features, search_rows=search_rows,
            min_class_rows=min_class_rows, C=C, seed=seed, progress=progress)
        part, gtr, gte = _fit_partition(s, best, features, base, min_class_rows, C)
        probs["partition"] = part.predict_proba(s.Xte, gte, base)
        skipped += _skipped_rows("partition", part)
        coef += _group_coefficients("partition", part, gtr, s.Xtr, s.ytr, inference)

    diffs = [("taxonomic", "baseline")] + ([("partition", "baseline")] if search else [])
    metrics_df, diff_df = bootstrap_metrics(s.yte, probs, diffs, n_boot=n_boot, alpha=alpha,
                                            seed=seed, paper=paper)
    lrt = likelihood_ratio_test(s.Xtr, s.ytr, s.cats_tr, list(tax.models), features, C)
    if paper:
        lrt.update(paper_likelihood_ratio(s.yte, probs["baseline"], probs["taxonomic"]))
    coef_df = pd.concat(coef, ignore_index=True)[
        ["model", "group", "feature", "coef", "se", "z", "p", "lo", "hi", "note"]]
    return PredictResult(
        metrics=metrics_df, differences=diff_df, coefficients=coef_df, lrt=lrt,
        skipped=pd.DataFrame(skipped, columns=["model", "group", "reason"]),
        test_labels=s.yte, test_probs=probs, partition=best, search=search_table, notes=notes)


def _split_rows(table, features, recitation_threshold, test_size, seed, nan_policy,
                notes: list[str]) -> _Split:
    """The design matrix's rows split stratified into training and test sets; ValueError when
    a class is too small to model. Dropped non-finite rows are noted in `notes`."""
    X, y, keep = design(table, features, nan_policy=nan_policy)
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
    if y[train].sum() < 2 or y[test].sum() < 1:
        raise ValueError("too few memorized rows to split into training and test sets")
    return _Split(X[train], y[train], X[test], y[test], cats[train], cats[test])


def _fit_partition(s: _Split, best: dict, features, base: LogisticModel, min_class_rows: int,
                   C: float) -> tuple[GroupedFit, np.ndarray, np.ndarray]:
    """The search's winning partition refit on all training rows: (the group models, the
    training rows' groups, the test rows' groups)."""
    j1, j2 = features.index(best["feature_1"]), features.index(best["feature_2"])
    gtr = partition(s.Xtr, j1, best["t1"], j2, best["t2"])
    gte = partition(s.Xte, j1, best["t1"], j2, best["t2"])
    part = fit_groups(s.Xtr, s.ytr, gtr, GROUPS, features=features,
                      min_class_rows=min_class_rows, C=C, beta0=base.beta)
    return part, gtr, gte


def _skipped_rows(model: str, grouped: GroupedFit) -> list[dict]:
    return [{"model": model, "group": g, "reason": r} for g, r in grouped.skipped.items()]


def _group_coefficients(model: str, grouped: GroupedFit, groups: np.ndarray, X: np.ndarray,
                        y: np.ndarray, inference: dict) -> list[pd.DataFrame]:
    """The coefficient table of each fitted group's model, on that group's training rows."""
    return [inference_table(m, X[groups == g], y[groups == g], **inference).assign(
                model=model, group=g)
            for g, m in grouped.models.items()]
