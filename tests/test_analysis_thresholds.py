"""The KL threshold curve: the divergence itself, and recovery of a planted threshold."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from analysis import thresholds


def test_symmetric_kl_equals_scipy_entropy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(0.5, 1.2, size=700)
    edges = np.linspace(-5, 5, 21)
    pa = np.histogram(a, edges)[0] + 0.5
    pb = np.histogram(b, edges)[0] + 0.5
    want = entropy(pa, pb) + entropy(pb, pa)  # scipy normalises the counts itself
    assert thresholds.symmetric_kl(a, b, edges) == pytest.approx(want, rel=1e-12)


def test_planted_threshold_is_found():
    # memorized samples have much lower perplexity than the rest up to 5 duplicates; above 5
    # both groups are drawn from the same distribution
    rng = np.random.default_rng(1)
    rows = []
    for d in range(0, 13):
        for mem in (True, False):
            n = 400
            shift = -2.0 if (mem and d <= 5) else 0.0
            rows.append(
                pd.DataFrame(
                    {
                        "duplicates": d,
                        "exact_match": mem,
                        "cont_ppl": np.exp(rng.normal(2 + shift, 0.5, n)),
                    }
                )
            )
    df = pd.concat(rows, ignore_index=True)
    kl, suggested = thresholds.kl_by_duplicates(df, max_duplicates=12, n_boot=30)
    assert suggested == 5
    # (a plug-in KL is biased upwards, so the percentile interval need not contain it)
    assert (kl["lo"] < kl["hi"]).all()
    big = kl.duplicates <= 5
    assert (kl.loc[big, "lo"] > kl.loc[~big, "hi"].max()).all()
    assert kl.loc[kl.duplicates <= 5, "kl"].min() > 5 * kl.loc[kl.duplicates > 5, "kl"].max()


def test_sparse_counts_give_nan_and_no_suggestion():
    df = pd.DataFrame(
        {"duplicates": [0, 0, 1], "exact_match": [True, False, True], "cont_ppl": [2.0, 3.0, 4.0]}
    )
    kl, suggested = thresholds.kl_by_duplicates(df, max_duplicates=3, n_boot=5)
    assert kl["kl"].isna().all() and suggested is None
