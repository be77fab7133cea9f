"""The paper's predictive models of memorization: baseline, taxonomic, optimally partitioned.

    res = predict.fit(table, extra_memorized=memories, profile="default")   # or "paper"
    res.metrics, res.category_metrics, res.lrt, res.rows          # res.paper_lrt, res.kfold (paper)

Signature: ``fit(table, *, extra_memorized=None, profile="default", design="auto",
features=None, recitation_threshold=5, test_size=0.2, validation_size=0.2, n_boot=1000,
alpha=0.05, seed=0, C=1.0, min_class_rows=10, nan_policy="raise", search=False,
search_features=None, search_rows=100_000, inference_rows=500_000, kfold_splits=100,
progress=True)``.

Features (the paper's final `model_parameters.py`, EleutherAI/semantic-memorization, mapped to
memtax's column names): 13 continuous features, standardized, plus the binary `is_templating`
(left unscaled, as in the paper):

    paper column          memtax column (default profile; paper profile where it differs)
    sequence_duplicates   duplicates
    max/avg/min/median/p25/p75_frequency   token_freq_max/mean/min/median/p25/p75
    generation_perplexity cont_ppl          (paper: cont_ppl_paper)
    prompt_perplexity     prompt_ppl        (paper: prompt_ppl_paper)
    sequence_perplexity   seq_ppl           (paper: seq_ppl_paper)
    0_8_templates         textual_matches
    0_8_snowclones        semantic_matches
    huffman_coding_length huffman_code_length

(templates = textual and snowclones = semantic: the paper's plotting notebook names them so,
model_perf_testing.ipynb `NameChanges`.) `profile_features(profile)` gives each profile's list:
the paper profile's models use the score table's `*_ppl_paper` columns, the paper's
divide-by-63 perplexities. `features=None` takes the profile's list.

Study design (`design=`, `analysis.study_design`): "study" is the paper's: the table is a random
sample, `extra_memorized` (a feature table of memorized samples) enters training only, the test
set is `test_size` of the random sample stratified by label x category, and every model is fitted
on an inner `1 - validation_size` of the training rows (the rest are validation rows). "split" is
memtax's single-table design (label-stratified split, models fitted on all training rows), kept
so that results without extra rows are unchanged. "auto" (default) is "study" when
`extra_memorized` is given or the profile is "paper", else "split". `res.rows` counts the rows of
each part by source, label and category.

Models (all logistic regressions with balanced class weights, L2 penalty C = 1 on the
standardized features as the paper's scikit-learn models, intercept unpenalized):

- **baseline**: one regression on all fitted rows;
- **taxonomic**: one regression per category (`analysis.taxonomy`); each row is scored by its
  category's model. A category without `min_class_rows` memorized *and* non-memorized training
  rows is reported in `skipped` and its rows are scored by the baseline;
- **partition** (optional, `search=True`): the optimally partitioned model. Candidates are ordered
  pairs of distinct features from the search features with thresholds at the 25/50/75% quantiles
  of memorized rows: ``f1 >= t1`` -> group 1, else ``f2 >= t2`` -> group 2, else group 3 (the
  paper's final code uses the same ``>=``), one regression per group. Selection: in the split
  design, the best validation F1 on a 3/4 - 1/4 split of a stratified subsample of at most
  `search_rows` training rows, the winner refit on all training rows; in the study design the
  candidates are fitted on the inner fit rows (at most `search_rows` of them) and selected by F1
  on the validation rows (default profile) or on the test set (paper profile: its notebook picks
  the partition with the best aggregate test F1, computed from KFold mean precision and recall),
  the winner refit on all fit rows. Thresholds: memorized training rows; in the paper profile the
  extra memorized rows when given (the paper's quantiles of its memories set).

Standardization: by default each model uses statistics of its own training rows; features
constant on those rows are dropped from that model (reported in the coefficient table). The paper
profile fits one scaler on every modelled row (random sample and extra rows) *before* the split
(model_training.py `preprocess_dataset`), so test rows leak into the scaling.

Metrics (`analysis.metrics`), on the test set, in aggregate (`metrics`, `differences`) and per
category (`category_metrics`, `category_differences`: each category's test rows and
"aggregate"), with bootstrap intervals over the test rows; differences between models use paired
resamples. Scoring "prob" uses probabilities; the paper profile adds scoring "hard": ROC-AUC and PR-AUC of the hard labels ``p > 0.5``, as the paper passed
`predict` output to scikit-learn. The paper profile also reports `kfold`: the paper's error bars
(`analysis.metrics.kfold_metrics`: 100-fold KFold over the test rows, metrics on each fold's 99%
training part, mean and standard deviation; F1 from the mean precision and recall), per category
and in aggregate.

Fitting is a damped Newton method in numpy (exact for 14 features, a few seconds on millions of
rows). The coefficient table (standard errors, Wald z and p-values, confidence intervals) comes
from statsmodels: a binomial GLM with the class weights as `var_weights`, started at the Newton
solution, with sandwich (HC0) standard errors because class weights are not frequency weights; it
is fitted on a random subsample of at most `inference_rows` fitted rows (default 500,000) to
bound time and memory, and unpenalized.

Likelihood-ratio tests. `lrt` (both profiles) compares the taxonomic model with the baseline as
nested models on the fitted rows of the fitted categories: both refit *without* class weights (so
the likelihood is a true likelihood), statistic ``2 (sum_k ll_k - ll_base)`` with degrees of
freedom equal to the number of extra parameters. The paper profile adds `paper_lrt`, the paper's
test: per category, on that category's test rows, from the log loss of hard predictions, df = 1
(`analysis.evaluation.paper_lrt`; it counts errors rather than measuring likelihood).

The paper profile follows the paper's code where memtax fixes its hazards (divide-by-63
perplexities, AUCs from hard labels, the per-category hard-label LRT, the scaler fitted before
the split, KFold error bars, test-set partition selection); it reproduces the paper's
definitions and procedure, not its numbers (those depend on its data and seeds; its KFold had no
seed). The table of differences is docs/notes/profiles.md.

Profiles: `profile` is validated (`engine.profiles.check_profile`); the tables' recorded profiles
must agree with it (`engine.profiles.same_profile`), so paper features are never modelled in
default mode unnoticed. `res.profile` records it.

The work is split by job: `analysis.design` (features, design matrix, split),
`analysis.study_design` (which rows are fitted, selected and tested), `analysis.logistic` (the
regressions and their coefficient table), `analysis.partition_search`, `analysis.evaluation`
(bootstrap metrics, KFold error bars, likelihood-ratio tests) and `analysis.synthetic` (planted
test data); every public name is importable from here.
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
    PAPER_FEATURES,
    PAPER_PERPLEXITIES,
    PAPER_SEARCH_FEATURES,
    QUANTILES,
    SEARCH_FEATURES,
    balanced_weights,
    design,
    profile_features,
    profile_search_features,
    stratified_split,
)
from analysis.evaluation import (
    bootstrap_metrics,
    category_metrics,
    kfold_error_bars,
    likelihood_ratio_test,
    paper_lrt,
)
from analysis.logistic import (
    GroupedFit,
    LogisticModel,
    fit_groups,
    fit_model,
    global_scaler,
    inference_table,
    log_likelihood,
    newton_logistic,
)
from analysis.metrics import kfold_f1, kfold_folds
from analysis.partition_search import GROUPS, partition, search_partition, search_partition_on
from analysis.study_design import DESIGNS, StudyRows, split_rows, study_rows
from analysis.synthetic import synthetic_table
from engine.profiles import check_profile, same_profile

__all__ = ["CONTINUOUS", "CATEGORICAL", "FEATURES", "SEARCH_FEATURES", "PAPER_FEATURES",
           "PAPER_SEARCH_FEATURES", "QUANTILES", "GROUPS", "DESIGNS", "profile_features",
           "profile_search_features", "design", "balanced_weights", "stratified_split",
           "newton_logistic", "LogisticModel", "fit_model", "log_likelihood", "inference_table",
           "GroupedFit", "fit_groups", "partition", "search_partition", "PredictResult", "fit",
           "resolve_design", "synthetic_table"]


@dataclass
class PredictResult:
    """Everything `fit` measured. DataFrames are long-format, ready for CSV/markdown."""

    metrics: pd.DataFrame  # model, scoring, metric, value, lo, hi
    differences: pd.DataFrame  # comparison, scoring, metric, value, lo, hi (paired bootstrap)
    coefficients: pd.DataFrame  # model, group, feature, coef, se, z, p, lo, hi, note
    lrt: dict  # statistic, df, pvalue, rows, ll_baseline, ll_taxonomic
    skipped: pd.DataFrame  # model, group, reason
    test_labels: np.ndarray
    test_probs: dict[str, np.ndarray]
    partition: dict | None = None
    search: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    profile: str = "default"
    design: str = "split"
    rows: pd.DataFrame | None = None  # part, source, memorized, category, rows
    category_metrics: pd.DataFrame | None = None  # model, category, scoring, metric, value, lo, hi
    category_differences: pd.DataFrame | None = None  # comparison, category, scoring, metric, ...
    test_categories: np.ndarray | None = None
    paper_lrt: pd.DataFrame | None = None  # paper profile: category, statistic, df, pvalue, ...
    kfold: pd.DataFrame | None = None  # paper profile: model, category, metric, value, error, folds


@dataclass
class _Settings:
    """The options the stages of `fit` share."""

    features: tuple[str, ...]
    profile: str
    C: float
    min_class_rows: int
    seed: int
    scaler: tuple[np.ndarray, np.ndarray] | None
    inference: dict


def resolve_design(design: str, profile: str, extra_memorized) -> str:
    """"study" or "split" for `design` "auto" | "study" | "split" (see the module docstring)."""
    if design == "auto":
        return "study" if extra_memorized is not None or profile == "paper" else "split"
    if design not in DESIGNS:
        raise ValueError(f"design {design!r} is not known; expected 'auto', 'study' or 'split'")
    if design == "split" and extra_memorized is not None:
        raise ValueError("extra_memorized rows need design='study' (or 'auto')")
    return design


def fit(
    table,
    *,
    extra_memorized=None,
    profile: str = "default",
    design: str = "auto",
    features=None,
    recitation_threshold: float = 5,
    test_size: float = 0.2,
    validation_size: float = 0.2,
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
    kfold_splits: int = 100,
    progress: bool = True,
) -> PredictResult:
    """Fit and evaluate the baseline, taxonomic and (with `search`) partition models.

    Args:
        table: feature table (pyarrow.Table or pandas.DataFrame) with `exact_match`,
            `features`, `duplicates` and `is_templating`: the random sample.
        extra_memorized: a feature table of memorized samples that enter training only (the
            study design); None for none.
        profile: "default" or "paper" (module docstring); the tables' recorded profiles must
            agree with it.
        design: "auto", "study" or "split" (module docstring).
        features: model features (default: `profile_features(profile)`).
        test_size, validation_size: the test share of the random sample; the validation share
            of the training rows (study design).
        n_boot, alpha: bootstrap resamples of the test set and the interval level.
        C: inverse L2 strength (scikit-learn's convention; the paper's 1.0).
        min_class_rows: a category/group needs this many training rows of each class.
        nan_policy: "raise" on NaN/inf features, or "drop" those rows (reported in notes).
        search, search_features, search_rows: the optimal-partition search (default features:
            the profile's search features among `features`) on at most `search_rows` rows.
        inference_rows: rows per model for the statsmodels coefficient table.
        kfold_splits: folds of the paper profile's KFold error bars (the paper's 100).

    Returns:
        PredictResult.
    """
    profile = check_profile(profile)
    inputs = {"the feature table": table}
    if extra_memorized is not None:
        inputs["extra_memorized"] = extra_memorized
    same_profile(inputs, expected=profile)
    chosen = resolve_design(design, profile, extra_memorized)
    features = tuple(profile_features(profile) if features is None else features)
    notes = _feature_notes(features, profile)
    if chosen == "study":
        rows = study_rows(table, extra_memorized, features, recitation_threshold, test_size,
                          validation_size, seed, nan_policy, notes)
    else:
        rows = split_rows(table, features, recitation_threshold, test_size, seed, nan_policy,
                          notes)
    st = _Settings(features, profile, C, min_class_rows, seed,
                   global_scaler(rows.X, features) if profile == "paper" else None,
                   dict(alpha=alpha, max_rows=inference_rows, seed=seed))
    res, base, tax = _fit_models(rows, st, notes)
    if search:
        if search_features is None:
            search_features = tuple(f for f in profile_search_features(profile) if f in features)
        _add_partition(res, rows, st, base, search_features, search_rows, kfold_splits, progress)
    _evaluate(res, rows, st, list(tax.models), n_boot=n_boot, alpha=alpha,
              kfold_splits=kfold_splits)
    return res


def _feature_notes(features: tuple[str, ...], profile: str) -> list[str]:
    """A note when the paper profile is asked to model memtax's corrected perplexities."""
    other = [f for f in features if f in PAPER_PERPLEXITIES] if profile == "paper" else []
    if not other:
        return []
    return [f"paper profile with the corrected perplexities {other}: the paper's models use "
            f"{[PAPER_PERPLEXITIES[f] for f in other]} (predict.profile_features('paper'))"]


def _fit_models(rows: StudyRows, st: _Settings,
                notes: list[str]) -> tuple[PredictResult, LogisticModel, GroupedFit]:
    """Baseline and taxonomic models on the fit rows, their test probabilities and coefficient
    tables (the result's other fields are filled in by `_add_partition` and `_evaluate`)."""
    X, y, cats = rows.X[rows.fit], rows.y[rows.fit], rows.cats[rows.fit]
    Xte = rows.X[rows.test]
    base = fit_model(X, y, st.features, C=st.C, scaler=st.scaler)
    tax = fit_groups(X, y, cats, taxonomy.CATEGORIES, features=st.features,
                     min_class_rows=st.min_class_rows, C=st.C, beta0=base.beta, scaler=st.scaler)
    probs = {"baseline": base.predict_proba(Xte),
             "taxonomic": tax.predict_proba(Xte, rows.cats[rows.test], base)}
    if tax.skipped:
        notes.append("taxonomic: rows of skipped categories "
                     f"({', '.join(tax.skipped)}) are scored by the baseline model")
    coef = [inference_table(base, X, y, **st.inference).assign(model="baseline", group="all")]
    coef += _group_coefficients("taxonomic", tax, cats, X, y, st.inference)
    if y.size > st.inference["max_rows"]:
        notes.append(f"coefficient inference on a random subsample of {st.inference['max_rows']} "
                     "training rows per model")
    res = PredictResult(
        metrics=None, differences=None, coefficients=coef, lrt={},
        skipped=_skipped_rows("taxonomic", tax), test_labels=rows.y[rows.test], test_probs=probs,
        notes=notes, profile=st.profile, design=rows.design, rows=rows.accounting(),
        test_categories=rows.cats[rows.test])
    return res, base, tax


def _add_partition(res: PredictResult, rows: StudyRows, st: _Settings, base: LogisticModel,
                   search_features, search_rows: int, kfold_splits: int, progress: bool) -> None:
    """Search the optimal partition, refit the winner on the fit rows and score the test rows."""
    Xf, yf = rows.X[rows.fit], rows.y[rows.fit]
    opts = dict(search_features=search_features, search_rows=search_rows,
                min_class_rows=st.min_class_rows, C=st.C, seed=st.seed, progress=progress,
                scaler=st.scaler)
    if rows.design == "split":
        best, table = search_partition(Xf, yf, st.features, **opts)
        best["selected_by"] = "validation F1 (3/4 - 1/4 split of training rows)"
    else:
        best, table = _study_search(rows, st, kfold_splits, opts)
    j1, j2 = st.features.index(best["feature_1"]), st.features.index(best["feature_2"])
    gfit = partition(Xf, j1, best["t1"], j2, best["t2"])
    gte = partition(rows.X[rows.test], j1, best["t1"], j2, best["t2"])
    part = fit_groups(Xf, yf, gfit, GROUPS, features=st.features, min_class_rows=st.min_class_rows,
                      C=st.C, beta0=base.beta, scaler=st.scaler)
    res.test_probs["partition"] = part.predict_proba(rows.X[rows.test], gte, base)
    res.skipped += _skipped_rows("partition", part)
    res.coefficients += _group_coefficients("partition", part, gfit, Xf, yf, st.inference)
    res.partition, res.search = best, table


def _study_search(rows: StudyRows, st: _Settings, kfold_splits: int,
                  opts: dict) -> tuple[dict, pd.DataFrame]:
    """The study design's search: selection on the validation rows (default) or, as the paper,
    on the test set by its KFold F1; thresholds from the extra memorized rows in the paper
    profile when there are any, else from the memorized training rows."""
    train = rows.train
    mem = rows.X[train][rows.y[train]]
    if st.profile == "paper":
        sel = rows.test
        folds = kfold_folds(sel.size, kfold_splits, st.seed)
        opts["score"] = lambda y, p: kfold_f1(y, p > 0.5, folds)
        if rows.extra.any():
            mem = rows.X[rows.extra]
        how = "test-set F1 (the paper's: from KFold mean precision and recall)"
    else:
        sel = rows.validation
        how = "validation F1"
    best, table = search_partition_on(rows.X[rows.fit], rows.y[rows.fit], rows.X[sel],
                                      rows.y[sel], mem, st.features, **opts)
    best["selected_by"] = how
    return best, table


def _evaluate(res: PredictResult, rows: StudyRows, st: _Settings, fitted: list[str], *,
              n_boot: int, alpha: float, kfold_splits: int) -> None:
    """Test-set metrics (aggregate and per category), likelihood-ratio tests and, in the paper
    profile, the paper's LRT and KFold error bars."""
    y, cats, probs = res.test_labels, res.test_categories, res.test_probs
    diffs = [("taxonomic", "baseline")] + ([("partition", "baseline")] if "partition" in probs
                                           else [])
    boot = dict(n_boot=n_boot, alpha=alpha, seed=st.seed, hard=st.profile == "paper")
    res.metrics, res.differences = bootstrap_metrics(y, probs, diffs, **boot)
    res.category_metrics, res.category_differences = category_metrics(
        y, cats, probs, diffs, taxonomy.CATEGORIES, aggregate=(res.metrics, res.differences),
        **boot)
    fit = rows.fit
    res.lrt = likelihood_ratio_test(rows.X[fit], rows.y[fit], rows.cats[fit], fitted,
                                    st.features, st.C, st.scaler)
    if st.profile == "paper":
        res.paper_lrt = paper_lrt(y, cats, probs["baseline"], probs["taxonomic"], fitted)
        res.kfold = kfold_error_bars(y, cats, probs, taxonomy.CATEGORIES, n_splits=kfold_splits,
                                     seed=st.seed)
    res.coefficients = pd.concat(res.coefficients, ignore_index=True)[
        ["model", "group", "feature", "coef", "se", "z", "p", "lo", "hi", "note"]]
    res.skipped = pd.DataFrame(res.skipped, columns=["model", "group", "reason"])


def _skipped_rows(model: str, grouped: GroupedFit) -> list[dict]:
    return [{"model": model, "group": g, "reason": r} for g, r in grouped.skipped.items()]


def _group_coefficients(model: str, grouped: GroupedFit, groups: np.ndarray, X: np.ndarray,
                        y: np.ndarray, inference: dict) -> list[pd.DataFrame]:
    """The coefficient table of each fitted group's model, on that group's training rows."""
    return [inference_table(m, X[groups == g], y[groups == g], **inference).assign(
                model=model, group=g)
            for g, m in grouped.models.items()]
