"""Metrics against scikit-learn, ECE against its definition, bootstrap against naive resampling."""

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from analysis import metrics


def _data(n=3000, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))
    if ties:
        p = np.round(p, 2)  # many tied scores
    return y, p


def _sk(y, p, hard=False):
    pred = p > 0.5
    s = pred.astype(float) if hard else p
    return {
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred, zero_division=0),
        "f1": f1_score(y, pred, zero_division=0),
        "roc_auc": roc_auc_score(y, s),
        "pr_auc": average_precision_score(y, s),
    }


def _ece_direct(y, p, m=5):
    """The paper's definition, written as a loop over bins of max-probability confidence."""
    probs = np.column_stack([1 - p, p])
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    acc = pred == y
    total = 0.0
    edges = np.linspace(0, 1, m + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.mean() > 0:
            total += abs(conf[in_bin].mean() - acc[in_bin].mean()) * in_bin.mean()
    return total


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_point_metrics_equal_sklearn(hard, ties):
    y, p = _data(ties=ties)
    got = metrics.evaluate(y, p, hard_auc=hard)
    for k, v in _sk(y, p, hard).items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    assert got["ece"] == pytest.approx(_ece_direct(y, p), abs=1e-12)


def test_ece_half_probability_counts_as_class_zero():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.5, 0.5, 0.9, 0.1])
    assert metrics.evaluate(y, p)["ece"] == pytest.approx(_ece_direct(y, p))


def test_bootstrap_equals_naive_resampling():
    y, p = _data(n=400, seed=3)
    n_boot, seed = 60, 11
    got = metrics.bootstrap(y, p, n_boot=n_boot, seed=seed).set_index("metric")
    rng = np.random.default_rng(seed)
    reps = {k: [] for k in metrics.METRICS}
    for _ in range(n_boot):  # same index draws, metrics recomputed from scratch
        idx = rng.integers(0, y.size, y.size)
        vals = _sk(y[idx], p[idx])
        vals["ece"] = _ece_direct(y[idx], p[idx])
        for k in metrics.METRICS:
            reps[k].append(vals[k])
    for k in metrics.METRICS:
        lo, hi = np.quantile(reps[k], [0.025, 0.975])
        assert got.loc[k, "lo"] == pytest.approx(lo, abs=1e-10), k
        assert got.loc[k, "hi"] == pytest.approx(hi, abs=1e-10), k


def test_paired_difference_is_exact_per_resample():
    y, p = _data(n=500, seed=4)
    q = np.clip(p + 0.05, 0, 1)
    out = metrics.paired_bootstrap(y, {"a": p, "b": q}, n_boot=30, differences=(("a", "b"),))
    d = out["a-b"].set_index("metric")
    pa_, pb_ = out["a"].set_index("metric"), out["b"].set_index("metric")
    assert np.allclose(d["value"], pa_["value"] - pb_["value"])
    assert (d["lo"] <= d["value"] + 1e-12).all() and (d["value"] <= d["hi"] + 1e-12).all()


def test_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        metrics.evaluate([0, 1], [0.5])
    with pytest.raises(ValueError, match="NaN"):
        metrics.evaluate([0, 1], [0.5, np.nan])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.evaluate([0, 1], [0.5, 1.5])
    # a single class: AUCs are undefined (NaN), not an exception
    got = metrics.evaluate([1, 1, 1], [0.2, 0.6, 0.9])
    assert np.isnan(got["roc_auc"]) and got["recall"] == pytest.approx(2 / 3)
