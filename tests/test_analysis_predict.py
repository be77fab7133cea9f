"""Predictive models: Newton fit vs scikit-learn, planted coefficients, model comparison,
statsmodels inference, and bad input."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.linear_model import LogisticRegression

from analysis import predict, taxonomy


@pytest.fixture(scope="module")
def planted():
    df, truth = predict.synthetic_table(60_000, differ=True, seed=7)
    res = predict.fit(df, n_boot=200, seed=1, progress=False)
    return df, truth, res


def test_newton_equals_sklearn():
    df, _ = predict.synthetic_table(4000, seed=2)
    X, y, _ = predict.design(df)
    m = predict.fit_model(X, y, C=1.0)
    cont = X[:, :13]
    Xs = np.column_stack([(cont - cont.mean(0)) / cont.std(0), X[:, 13]])
    sk = LogisticRegression(C=1.0, class_weight="balanced", tol=1e-12, max_iter=100_000)
    sk.fit(Xs, y)
    assert m.converged
    assert np.allclose(m.beta[0], sk.intercept_[0], atol=1e-5)
    assert np.allclose(m.beta[1:], sk.coef_[0], atol=1e-5)
    assert np.allclose(m.predict_proba(X), sk.predict_proba(Xs)[:, 1], atol=1e-6)


def test_planted_coefficients_within_confidence_intervals(planted):
    df, truth, res = planted
    X, y, _ = predict.design(df)
    cats = taxonomy.classify(df)
    train, _ = predict.stratified_split(y, 0.2, 1)
    inside, total, worst = 0, 0, 0.0
    for c in taxonomy.CATEGORIES:
        tab = res.coefficients[
            (res.coefficients.model == "taxonomic") & (res.coefficients.group == c)
        ].set_index("feature")
        rows = train[cats[train] == c]
        Xc, yc = X[rows], y[rows]
        b0, beta = truth[c]
        # expected values on the model's scale: slopes times the training std; the intercept
        # absorbs means and constant features, and balanced weights add log(n_neg / n_pos)
        intercept = b0 + np.log((yc.size - yc.sum()) / yc.sum())
        for j, f in enumerate(predict.FEATURES):
            col = Xc[:, j]
            if col.min() == col.max():
                assert np.isnan(tab.loc[f, "coef"])  # dropped: constant in this category
                intercept += beta[j] * col[0]
                continue
            cont = f not in predict.CATEGORICAL
            expected = beta[j] * (col.std() if cont else 1.0)
            intercept += beta[j] * (col.mean() if cont else 0.0)
            row = tab.loc[f]
            inside += row["lo"] <= expected <= row["hi"]
            total += 1
            worst = max(worst, abs(row["coef"] - expected) / row["se"])
        row = tab.loc["intercept"]
        inside += row["lo"] <= intercept <= row["hi"]
        total += 1
        worst = max(worst, abs(row["coef"] - intercept) / row["se"])
    assert inside / total >= 0.88, (inside, total)  # 95% intervals
    assert worst < 4.5


def test_taxonomic_beats_baseline_when_categories_differ(planted):
    _, _, res = planted
    d = res.differences.set_index("metric")
    assert d.loc["pr_auc", "lo"] > 0 and d.loc["roc_auc", "lo"] > 0 and d.loc["f1", "lo"] > 0
    assert res.lrt["pvalue"] < 1e-10 and res.lrt["df"] > 0


def test_taxonomic_does_not_beat_baseline_when_categories_agree():
    df, _ = predict.synthetic_table(30_000, differ=False, seed=8)
    res = predict.fit(df, n_boot=200, seed=1, progress=False)
    d = res.differences.set_index("metric")
    # no significant gain: every interval of (taxonomic - baseline) reaches below zero (the
    # taxonomic model, with three times the parameters, may even overfit a little)
    for metric in ("pr_auc", "roc_auc", "f1"):
        assert d.loc[metric, "lo"] < 0, metric
    assert res.lrt["pvalue"] > 0.01


def test_metrics_and_split_keep_prior(planted):
    df, _, res = planted
    y = df["exact_match"].to_numpy()
    assert res.test_labels.size == round(0.2 * (~y).sum()) + round(0.2 * y.sum())
    assert abs(res.test_labels.mean() - y.mean()) < 1e-3
    m = res.metrics.set_index(["model", "metric"])
    for model in ("baseline", "taxonomic"):
        for metric in ("f1", "roc_auc", "pr_auc"):
            r = m.loc[(model, metric)]
            assert r["lo"] <= r["value"] <= r["hi"]


def test_pvalues_equal_statsmodels_and_sandwich_formula():
    df, _ = predict.synthetic_table(3000, seed=5)
    X, y, _ = predict.design(df)
    model = predict.fit_model(X, y)
    tab = predict.inference_table(model, X, y)
    cont = X[:, :13]
    A = np.column_stack([np.ones(y.size), (cont - cont.mean(0)) / cont.std(0), X[:, 13]])
    w = np.where(y, y.size / (2 * y.sum()), y.size / (2 * (~y).sum()))
    ref = sm.GLM(y.astype(float), A, family=sm.families.Binomial(), var_weights=w).fit(
        cov_type="HC0", tol=1e-12
    )
    assert np.allclose(tab["coef"], ref.params, atol=1e-6)
    assert np.allclose(tab["p"], ref.pvalues, rtol=1e-5, atol=1e-12)
    # sandwich by hand: H^-1 (sum w^2 (y-p)^2 a a^T) H^-1
    p = 1 / (1 + np.exp(-A @ ref.params))
    H = (A * (w * p * (1 - p))[:, None]).T @ A
    S = (A * ((w * (y - p)) ** 2)[:, None]).T @ A
    se = np.sqrt(np.diag(np.linalg.inv(H) @ S @ np.linalg.inv(H)))
    assert np.allclose(tab["se"], se, rtol=1e-6)
    assert np.allclose(tab["p"], 2 * stats.norm.sf(np.abs(ref.params / se)), rtol=1e-5)
    assert np.allclose(tab["hi"] - tab["lo"], 2 * stats.norm.ppf(0.975) * se, rtol=1e-6)


def test_bad_input_missing_columns_and_single_class():
    df, _ = predict.synthetic_table(500, seed=1)
    with pytest.raises(ValueError, match="token_freq_p25"):
        predict.fit(df.drop(columns=["token_freq_p25"]), n_boot=0)
    one = df.assign(exact_match=False)
    with pytest.raises(ValueError, match="single class"):
        predict.fit(one, n_boot=0)


def test_bad_input_nonfinite_features():
    df, _ = predict.synthetic_table(3000, seed=1)
    df.loc[3, "cont_ppl"] = np.nan
    df.loc[7, "huffman_code_length"] = np.inf
    with pytest.raises(ValueError, match="cont_ppl.*huffman_code_length"):
        predict.fit(df, n_boot=0)
    res = predict.fit(df, n_boot=20, nan_policy="drop", progress=False)
    assert any("dropped 2 rows" in n for n in res.notes)
    assert res.test_labels.size == round(
        0.2 * (2998 - df.exact_match.sum() + (df.exact_match[[3, 7]].sum()))
    ) + round(0.2 * (df.exact_match.sum() - df.exact_match[[3, 7]].sum()))


def test_too_small_category_is_reported_not_fatal():
    df, _ = predict.synthetic_table(4000, seed=3, recitation_share=0.002)
    res = predict.fit(df, n_boot=20, progress=False)
    assert list(res.skipped["group"]) == ["recitation"]
    assert "too few rows" in res.skipped["reason"].iloc[0]
    assert set(res.coefficients.group) == {"all", "reconstruction", "recollection"}
    # recitation test rows are scored by the baseline
    X, y, _ = predict.design(df)
    cats = taxonomy.classify(df)
    _, test = predict.stratified_split(y, 0.2, 0)
    rec = cats[test] == "recitation"
    assert rec.any()
    assert np.allclose(res.test_probs["taxonomic"][rec], res.test_probs["baseline"][rec])


def test_partition_search_on_a_subsample():
    df, _ = predict.synthetic_table(6000, seed=4, recitation_share=0.4)
    # memorization follows cont_ppl above 5 duplicates and token_freq_min below: no linear model
    # on all rows captures that, a split on duplicates does
    zc = (df["cont_ppl"] - df["cont_ppl"].mean()) / df["cont_ppl"].std()
    zt = (df["token_freq_min"] - df["token_freq_min"].mean()) / df["token_freq_min"].std()
    logit = np.where(df["duplicates"] > 5, 3.0 * zc, 3.0 * zt)
    df["exact_match"] = np.random.default_rng(0).random(len(df)) < 1 / (1 + np.exp(-logit))
    feats = ("duplicates", "token_freq_min", "is_templating", "cont_ppl")
    res = predict.fit(
        df, n_boot=20, search=True, search_features=feats, search_rows=2400, progress=False
    )
    s, best = res.search, res.partition
    assert len(s) == 4 * 3 * 3 * 3  # ordered pairs of distinct features x quantiles
    assert len(predict.SEARCH_FEATURES) * 3 * (len(predict.SEARCH_FEATURES) - 1) * 3 == 810
    # the planted groups differ by duplicates > 5: the winner splits on duplicates
    assert "duplicates" in (best["feature_1"], best["feature_2"])
    assert best["f1"] == pytest.approx(s["f1"].max())
    assert best["search_rows"] <= 2400
    X, y, _ = predict.design(df)
    train, _ = predict.stratified_split(y, 0.2, 0)
    j = predict.FEATURES.index(best["feature_1"])
    mem = X[train][y[train], j]
    assert best["t1"] == pytest.approx(np.quantile(mem, best["q1"]))
    f1 = res.metrics[res.metrics.metric == "f1"].set_index("model")
    assert f1.loc["partition", "value"] > f1.loc["baseline", "hi"]
    assert isinstance(res.search, pd.DataFrame)
