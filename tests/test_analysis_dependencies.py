"""Correlations: xi against its definition, Pearson/Spearman against scipy, subsets."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import dependencies, predict, taxonomy


def _xi_direct(x, y):
    """Chatterjee's definition, written out with loops (x without ties)."""
    n = len(x)
    order = sorted(range(n), key=lambda i: x[i])
    ys = [y[i] for i in order]
    r = [sum(1 for v in y if v <= yi) for yi in ys]
    l_ = [sum(1 for v in y if v >= yi) for yi in ys]
    num = n * sum(abs(r[i + 1] - r[i]) for i in range(n - 1))
    den = 2 * sum(li * (n - li) for li in l_)
    return 1 - num / den


@pytest.mark.parametrize("binary", [True, False])
def test_xi_equals_definition(binary):
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = (x + rng.normal(size=300) > 0.5).astype(float) if binary else np.sin(3 * x)
    xi, p = dependencies.xi_correlation(x, y)
    assert xi == pytest.approx(_xi_direct(x.tolist(), y.tolist()), abs=1e-12)
    assert p < 1e-6  # strong dependence


def test_xi_pvalue_without_ties_matches_chatterjee_asymptotics():
    # continuous y, no ties: the variance reduces to 2/5 (Chatterjee 2021, Theorem 2.1)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=2000), rng.normal(size=2000)
    xi, p = dependencies.xi_correlation(x, y)
    assert p == pytest.approx(stats.norm.sf(np.sqrt(2000) * xi / np.sqrt(2 / 5)), rel=1e-2)


def test_xi_pvalues_roughly_uniform_under_independence():
    rng = np.random.default_rng(2)
    ps = [
        dependencies.xi_correlation(rng.normal(size=400), rng.random(400) < 0.3, seed=s)[1]
        for s in range(200)
    ]
    assert 0.02 < np.mean(np.array(ps) < 0.1) < 0.2


def test_correlations_per_subset_equal_scipy():
    df, _ = predict.synthetic_table(3000, seed=3)
    out = dependencies.correlations(df, features=("cont_ppl", "is_templating"))
    cats = taxonomy.classify(df)
    y = df["exact_match"].to_numpy().astype(float)
    assert set(out.subset) == {"all", *taxonomy.CATEGORIES, "code", "natural language"}
    for subset, mask in (
        ("all", np.ones(len(df), bool)),
        ("recitation", cats == "recitation"),
        ("code", df["code_score"].to_numpy() >= 0.5),
    ):
        got = out[(out.subset == subset) & (out.feature == "cont_ppl")].set_index("method")
        x = df["cont_ppl"].to_numpy()[mask]
        pr, sr = stats.pearsonr(x, y[mask]), stats.spearmanr(x, y[mask])
        assert got.loc["pearson", "statistic"] == pytest.approx(pr.statistic)
        assert got.loc["pearson", "pvalue"] == pytest.approx(pr.pvalue)
        assert got.loc["spearman", "statistic"] == pytest.approx(sr.statistic)
        assert got.loc["spearman", "n"] == mask.sum()
    # is_templating is constant inside recollection: NaN, not an error
    rec = out[(out.subset == "recollection") & (out.feature == "is_templating")]
    assert rec["statistic"].isna().all()


def test_missing_feature_column():
    df = pd.DataFrame(
        {"exact_match": [True, False], "duplicates": [0, 1], "is_templating": [False, False]}
    )
    with pytest.raises(ValueError, match="cont_ppl"):
        dependencies.correlations(df, features=("cont_ppl",))
