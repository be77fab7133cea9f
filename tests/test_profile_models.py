"""The predictive models' profiles and the paper's study design.

Oracles: scikit-learn (log_loss, roc_auc_score, average_precision_score, precision/recall,
KFold, StandardScaler, LogisticRegression), scipy.stats.chi2, a loop over the paper's
`expected_calibration_error`, brute-force counts of the input tables, hand-computed values.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from analysis import design, evaluation, metrics, predict, study_design, taxonomy
from analysis.synthetic import synthetic_study
from engine.profiles import profile_metadata


def _paper_ece(probs2: np.ndarray, labels: np.ndarray, M: int = 5) -> float:
    """The paper's model_utils.expected_calibration_error, as written there."""
    bounds = np.linspace(0, 1, M + 1)
    conf, pred = probs2.max(axis=1), probs2.argmax(axis=1)
    acc = pred == labels
    ece = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.mean() > 0:
            ece += abs(conf[in_bin].mean() - acc[in_bin].mean()) * in_bin.mean()
    return ece


@pytest.fixture(scope="module")
def study():
    random, extra, _ = synthetic_study(6000, 1500, seed=11)
    return random, extra


@pytest.fixture(scope="module")
def paper_result(study):
    random, extra = study
    return predict.fit(random, extra_memorized=extra, profile="paper", n_boot=50, seed=3,
                       progress=False)


# --- hand-made values -------------------------------------------------------------------------


def test_hard_log_loss_and_paper_lrt_on_hand_rows():
    y = np.array([1, 0, 1, 0, 1, 1], dtype=bool)
    p_base = np.array([0.9, 0.7, 0.2, 0.1, 0.4, 0.8])  # hard 1,1,0,0,0,1: 3 errors
    p_tax = np.array([0.6, 0.3, 0.51, 0.5, 0.4, 0.7])  # hard 1,0,1,0,0,1: 1 error (0.5 -> 0)
    assert evaluation.hard_log_loss(y, p_base > 0.5) == pytest.approx(
        log_loss(y, p_base > 0.5, normalize=False), rel=1e-12)
    eps = np.finfo(np.float64).eps
    # by hand: each wrong row costs -log(eps), each right one -log(1 - eps)
    assert evaluation.hard_log_loss(y, p_base > 0.5) == pytest.approx(
        -3 * np.log(eps) - 3 * np.log1p(-eps), rel=1e-12)
    cats = np.array(["recitation"] * 6)
    lrt = evaluation.paper_lrt(y, cats, p_base, p_tax, ["recitation"]).iloc[0]
    statistic = 2 * (3 - 1) * -np.log(eps)  # 72.08 per error saved (up to O(eps))
    assert lrt["statistic"] == pytest.approx(statistic, rel=1e-12)
    assert lrt["pvalue"] == pytest.approx(stats.chi2.sf(statistic, df=1))
    assert (lrt["df"], lrt["baseline_errors"], lrt["taxonomic_errors"]) == (1, 3, 1)


def test_paper_f1_is_the_notebooks_formula():
    f1, err = metrics.paper_f1(0.6, 0.02, 0.8, 0.01)
    assert f1 == pytest.approx(2 * 0.6 * 0.8 / 1.4)
    assert err == pytest.approx(2 / 1.4**2 * np.sqrt(0.8**4 * 0.02**2 + 0.6**4 * 0.01**2))
    assert np.isnan(metrics.paper_f1(0.0, 0.0, 0.0, 0.0)[0])


def test_hard_label_aucs_and_kfold_on_hand_rows():
    y = np.array([1, 0, 1, 0], dtype=bool)
    m = metrics.evaluate(y, np.array([0.9, 0.6, 0.4, 0.1]), hard_auc=True)
    # hard labels 1, 1, 0, 0: TPR = FPR = 1/2, ROC-AUC = (1 + TPR - FPR) / 2; AP = R1 P1 +
    # (1 - R1) pos / n with R1 = P1 = 1/2
    assert m["roc_auc"] == pytest.approx(0.5) and m["pr_auc"] == pytest.approx(0.5)
    # 5 rows, 100 splits asked: leave-one-out folds; each fold's training part, by hand
    y = np.array([1, 1, 0, 0, 1], dtype=bool)
    kf = metrics.kfold_metrics(y, {"m": np.array([0.9, 0.2, 0.7, 0.1, 0.8])})["m"]
    kf = kf.set_index("metric")
    precision = [1 / 2, 2 / 3, 1, 2 / 3, 1 / 2]  # dropping row 0, 1, 2, 3, 4
    recall = [1 / 2, 1, 2 / 3, 2 / 3, 1 / 2]
    assert (kf["folds"] == 5).all()
    assert kf.loc["precision", "value"] == pytest.approx(2 / 3)
    assert kf.loc["precision", "error"] == pytest.approx(np.sqrt(1 / 30))
    assert kf.loc["recall", "value"] == pytest.approx(np.mean(recall))
    assert kf.loc["f1", "value"] == pytest.approx(2 / 3)
    assert np.mean(precision) == pytest.approx(2 / 3)


def test_stratified_split_by_label_and_category_counts_every_cell():
    rng = np.random.default_rng(5)
    y = rng.random(2003) < 0.2
    strata = rng.choice(["recitation", "reconstruction", "recollection"], 2003, p=[.1, .2, .7])
    train, test = design.stratified_split(y, 0.2, 7, strata=strata)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(y.size))
    for c in np.unique(strata):
        for label in (False, True):
            cell = (strata == c) & (y == label)
            assert np.isin(np.flatnonzero(cell), test).sum() == round(0.2 * cell.sum())


# --- the study design's row accounting --------------------------------------------------------


def test_study_design_rows(study):
    random, extra = study
    # an extra row that is also in the random sample is dropped (the random sample's is kept)
    dup = random[random.exact_match].iloc[:3]
    extra2 = pd.concat([extra, dup], ignore_index=True)
    res = predict.fit(random, extra_memorized=extra2, n_boot=10, progress=False)
    assert res.design == "study" and res.profile == "default"
    assert any("dropped 3 extra memorized rows" in n for n in res.notes)
    acc = res.rows
    by = acc.groupby(["part", "source"])["rows"].sum()
    assert ("test", "extra") not in by.index  # extra rows enter training only
    assert by[("fit", "extra")] + by[("validation", "extra")] == len(extra)
    assert by[("fit", "random")] + by[("validation", "random")] + by[("test", "random")] == len(
        random)
    # the test set: 20% of each label x category cell of the random sample (brute force)
    cats = taxonomy.classify(random)
    test = acc[acc.part == "test"].set_index(["memorized", "category"])["rows"]
    for c in taxonomy.CATEGORIES:
        for label in (False, True):
            n_cell = int(((cats == c) & (random.exact_match.to_numpy() == label)).sum())
            assert test.get((label, c), 0) == round(0.2 * n_cell), (c, label)
    assert res.test_labels.size == test.sum()
    # validation: 20% of each cell of the training rows (random rest + extra)
    train = acc[acc.part != "test"].groupby(["memorized", "category"])["rows"].sum()
    val = acc[acc.part == "validation"].groupby(["memorized", "category"])["rows"].sum()
    for key, n_cell in train.items():
        assert val.get(key, 0) == round(0.2 * n_cell), key
    # the test rows' categories and labels are the random sample's own
    tab = pd.crosstab(res.test_categories, res.test_labels)
    for (label, c), n in test.items():
        assert tab.loc[c, label] == n


def test_study_rows_keep_the_random_rows_apart_from_the_extra_rows(study):
    random, extra = study
    rows = study_design.study_rows(random, extra, predict.FEATURES, 5, 0.2, 0.2, 0, "raise", [])
    n = len(random)
    assert not rows.extra[rows.test].any() and rows.test.max() < n
    parts = np.concatenate([rows.fit, rows.validation, rows.test])
    assert np.array_equal(np.sort(parts), np.arange(n + len(extra)))
    X = random[list(predict.FEATURES)].to_numpy(dtype=float)
    assert np.array_equal(rows.X[rows.test], X[rows.test])  # random rows keep their order
    assert rows.y[rows.extra].all()


def test_extra_rows_must_be_memorized(study):
    random, extra = study
    bad = extra.copy()
    bad.loc[[0, 5], "exact_match"] = False
    with pytest.raises(ValueError, match="2 of its 1500 rows have exact_match False"):
        predict.fit(random, extra_memorized=bad, n_boot=0, progress=False)
    with pytest.raises(ValueError, match="design='study'"):
        predict.fit(random, extra_memorized=extra, design="split", n_boot=0, progress=False)
    with pytest.raises(ValueError, match="design 'both' is not known"):
        predict.fit(random, design="both", n_boot=0, progress=False)


def test_default_profile_without_extra_rows_keeps_the_single_table_split(study):
    random, _ = study
    res = predict.fit(random, n_boot=20, seed=2, progress=False)
    assert res.design == "split" and res.paper_lrt is None and res.kfold is None
    y = random.exact_match.to_numpy()
    _, test = predict.stratified_split(y, 0.2, 2)  # the label-stratified split, as before
    assert np.array_equal(res.test_labels, y[test])
    assert set(res.metrics.scoring) == {"prob"}
    # per-category metrics: each category's test rows, bootstrapped on their own
    cm = res.category_metrics.set_index(["model", "category", "metric"])
    cats = taxonomy.classify(random)[test]
    for c in taxonomy.CATEGORIES:
        rows = cats == c
        p = res.test_probs["taxonomic"][rows]
        assert cm.loc[("taxonomic", c, "roc_auc"), "value"] == pytest.approx(
            roc_auc_score(y[test][rows], p))
    agg = cm.xs("aggregate", level="category").loc["baseline"]
    m = res.metrics[res.metrics.model == "baseline"].set_index("metric")
    assert np.allclose(agg["value"], m.loc[agg.index, "value"])


# --- the paper profile's hazards --------------------------------------------------------------


def test_paper_profile_models_use_paper_perplexities_and_a_scaler_fitted_before_the_split(
        study, paper_result):
    random, extra = study
    res = paper_result
    feats = set(res.coefficients.feature)
    assert {"cont_ppl_paper", "prompt_ppl_paper", "seq_ppl_paper"} <= feats
    assert not feats & {"cont_ppl", "prompt_ppl", "seq_ppl"}
    # oracle: StandardScaler on every modelled row (random sample and extra rows), then
    # scikit-learn's LogisticRegression on the fit rows
    rows = study_design.study_rows(random, extra, predict.PAPER_FEATURES, 5, 0.2, 0.2, 3,
                                   "raise", [])
    cont = [f not in predict.CATEGORICAL for f in predict.PAPER_FEATURES]
    scaler = StandardScaler().fit(rows.X[:, cont])
    Z = rows.X.copy()
    Z[:, cont] = scaler.transform(rows.X[:, cont])
    sk = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-12, max_iter=100_000)
    sk.fit(Z[rows.fit], rows.y[rows.fit])
    assert np.allclose(res.test_probs["baseline"], sk.predict_proba(Z[rows.test])[:, 1],
                       atol=1e-5)
    # ...which is not what per-model standardization on the fit rows gives
    own = StandardScaler().fit(rows.X[rows.fit][:, cont])
    Z2 = rows.X.copy()
    Z2[:, cont] = own.transform(rows.X[:, cont])
    sk2 = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-12, max_iter=100_000)
    sk2.fit(Z2[rows.fit], rows.y[rows.fit])
    assert not np.allclose(sk2.predict_proba(Z2[rows.test])[:, 1],
                           res.test_probs["baseline"], atol=1e-7)


def test_paper_profile_aucs_from_hard_labels(paper_result):
    res = paper_result
    y = res.test_labels
    hard = res.metrics[res.metrics.scoring == "hard"].set_index(["model", "metric"])["value"]
    soft = res.metrics[res.metrics.scoring == "prob"].set_index(["model", "metric"])["value"]
    for model, p in res.test_probs.items():
        assert hard[(model, "roc_auc")] == pytest.approx(roc_auc_score(y, p > 0.5), abs=1e-12)
        assert hard[(model, "pr_auc")] == pytest.approx(average_precision_score(y, p > 0.5),
                                                        abs=1e-12)
        assert soft[(model, "roc_auc")] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    cm = res.category_metrics[res.category_metrics.scoring == "hard"].set_index(
        ["model", "category", "metric"])["value"]
    for c in taxonomy.CATEGORIES:
        rows = res.test_categories == c
        p = res.test_probs["taxonomic"][rows]
        assert cm[("taxonomic", c, "roc_auc")] == pytest.approx(
            roc_auc_score(y[rows], p > 0.5), abs=1e-12)


def test_paper_profile_lrt_per_category_from_hard_predictions(paper_result):
    res = paper_result
    lrt = res.paper_lrt.set_index("category")
    assert list(lrt.index) == list(taxonomy.CATEGORIES)
    for c in taxonomy.CATEGORIES:
        rows = res.test_categories == c
        y = res.test_labels[rows]
        base = res.test_probs["baseline"][rows] > 0.5
        tax = res.test_probs["taxonomic"][rows] > 0.5
        # model_training.py likelihood_ratio_test, with scikit-learn and scipy
        ll_base = -log_loss(y, base, normalize=False, labels=[0, 1])
        ll_tax = -log_loss(y, tax, normalize=False, labels=[0, 1])
        ratio = -2 * (ll_base - ll_tax)
        assert lrt.loc[c, "statistic"] == pytest.approx(ratio, rel=1e-9)
        assert lrt.loc[c, "pvalue"] == pytest.approx(stats.chi2.sf(ratio, df=1), abs=1e-12)
        assert lrt.loc[c, "df"] == 1 and lrt.loc[c, "rows"] == rows.sum()
    assert res.lrt["df"] > 1  # memtax's nested test is reported beside it


def test_paper_profile_kfold_error_bars(paper_result):
    res = paper_result
    kf = res.kfold.set_index(["model", "category", "metric"])
    for c in (*taxonomy.CATEGORIES, "aggregate"):
        rows = np.ones(res.test_labels.size, bool) if c == "aggregate" else (
            res.test_categories == c)
        y = res.test_labels[rows]
        for model in ("baseline", "taxonomic"):
            p = res.test_probs[model][rows]
            # model_training.py train_and_save_taxonomic_models: metrics on each fold's
            # training part, single-class folds skipped, (mean, std)
            vals = {k: [] for k in ("roc_auc", "pr_auc", "precision", "recall", "ece")}
            folds = KFold(n_splits=100, shuffle=True, random_state=3).split(np.zeros(y.size))
            for idx, _ in folds:
                yy, pp = y[idx], p[idx]
                if len(set(yy)) == 1:
                    continue
                vals["roc_auc"].append(roc_auc_score(yy, pp > 0.5))
                vals["pr_auc"].append(average_precision_score(yy, pp > 0.5))
                vals["precision"].append(precision_score(yy, pp > 0.5, zero_division=0))
                vals["recall"].append(recall_score(yy, pp > 0.5))
                vals["ece"].append(_paper_ece(np.column_stack([1 - pp, pp]), yy))
            for m, v in vals.items():
                assert kf.loc[(model, c, m), "value"] == pytest.approx(np.mean(v), abs=1e-12)
                assert kf.loc[(model, c, m), "error"] == pytest.approx(np.std(v), abs=1e-12)
            P, R = np.mean(vals["precision"]), np.mean(vals["recall"])
            sP, sR = np.std(vals["precision"]), np.std(vals["recall"])
            assert kf.loc[(model, c, "f1"), "value"] == pytest.approx(2 * P * R / (P + R))
            assert kf.loc[(model, c, "f1"), "error"] == pytest.approx(
                2 / (P + R) ** 2 * np.sqrt(R**4 * sP**2 + P**4 * sR**2))


def test_partition_selection_by_profile():
    random, extra, _ = synthetic_study(5000, 1500, seed=4, recitation_share=0.4)
    # memorization follows cont_ppl above 5 duplicates and token_freq_min below
    for df in (random, extra):
        zc = (df["cont_ppl"] - 1.0) / 1.0
        zt = (df["token_freq_min"] - 0.0) / 1.0
        logit = np.where(df["duplicates"] > 5, 3.0 * zc, 3.0 * zt)
        df["exact_match"] = np.random.default_rng(len(df)).random(len(df)) < 1 / (
            1 + np.exp(-logit))
    extra = extra[extra.exact_match].reset_index(drop=True)
    feats = ("duplicates", "token_freq_min", "is_templating", "cont_ppl")
    res = predict.fit(random, extra_memorized=extra, n_boot=10, search=True,
                      search_features=feats, progress=False)
    assert res.partition["selected_by"] == "validation F1"
    assert "duplicates" in (res.partition["feature_1"], res.partition["feature_2"])
    assert res.partition["f1"] == pytest.approx(res.search["f1"].max())
    pfeats = ("duplicates", "token_freq_min", "is_templating", "cont_ppl_paper")
    pres = predict.fit(random, extra_memorized=extra, profile="paper", n_boot=10, search=True,
                       search_features=pfeats, progress=False)
    best = pres.partition
    assert best["selected_by"].startswith("test-set F1")
    assert best["f1"] == pytest.approx(pres.search["f1"].max())
    # thresholds: quantiles of the extra memorized rows (the paper's memories set)
    col = extra[best["feature_1"]].to_numpy(dtype=float)
    assert best["t1"] == pytest.approx(np.quantile(col, best["q1"]))
    # the winner's selection score is the notebook F1 of its test predictions (KFold means)
    kf = pres.kfold.set_index(["model", "category", "metric"])
    assert best["f1"] == pytest.approx(kf.loc[("partition", "aggregate", "f1"), "value"],
                                       abs=2e-3)


# --- profiles: names and mismatches -----------------------------------------------------------


def test_unknown_profile_is_refused(study):
    random, _ = study
    with pytest.raises(ValueError, match="'papr' is not a known profile"):
        predict.fit(random, profile="papr", n_boot=0, progress=False)
    with pytest.raises(ValueError, match="'papr'"):
        predict.profile_features("papr")


def test_tables_of_another_profile_are_refused(study):
    random, extra = study
    paper_table = pa.Table.from_pandas(random, preserve_index=False)
    paper_table = paper_table.replace_schema_metadata(
        {**(paper_table.schema.metadata or {}), **profile_metadata("paper")})
    with pytest.raises(ValueError, match="'paper'.*'default'"):
        predict.fit(paper_table, n_boot=0, progress=False)
    tagged = extra.copy()
    tagged.attrs["profile"] = "default"
    with pytest.raises(ValueError, match="extra_memorized.*'default'.*'paper'"):
        predict.fit(paper_table, extra_memorized=tagged, profile="paper", n_boot=0,
                    progress=False)


def test_paper_profile_needs_the_paper_perplexities(study):
    random, _ = study
    with pytest.raises(ValueError, match="cont_ppl_paper"):
        predict.fit(random.drop(columns=["cont_ppl_paper"]), profile="paper", n_boot=0,
                    progress=False)


def test_paper_profile_notes_corrected_perplexities_passed_as_features():
    random, _, _ = synthetic_study(2000, 100, seed=6)
    res = predict.fit(random, profile="paper", features=predict.FEATURES, n_boot=0,
                      progress=False)
    assert any("corrected perplexities ['cont_ppl', 'prompt_ppl', 'seq_ppl']" in n
               for n in res.notes)
    assert "cont_ppl" in set(res.coefficients.feature)
    res = predict.fit(random, profile="paper", n_boot=0, progress=False)
    assert not any("corrected perplexities" in n for n in res.notes)
