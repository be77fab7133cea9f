"""Benchmarks of the predictive models (docs/notes/analysis.md).

Run:  .venv/bin/pytest benchmarks/bench_analysis.py -p no:cacheprovider --benchmark-disable-gc -q -s

Sizes (defaults keep it to a few minutes on 2 cores):
  MEMTAX_BENCH_ROWS=5000000      rows for baseline + taxonomic with bootstrap (default 200000)
  MEMTAX_BENCH_SEARCH_ROWS=1000000 rows for the optimal-partition search (default 100000)
  MEMTAX_BENCH_BOOT=1000         bootstrap resamples (default 1000)

Anchors measured in the same run: scikit-learn's lbfgs LogisticRegression (balanced weights) on
the baseline model's training rows, against memtax's Newton fit; and a naive bootstrap
(resample, then scikit-learn metrics per replicate) on 20 replicates, against the vectorised one
per replicate. Ratios are printed beside the absolute times.
"""

import os
import resource
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from analysis import metrics, predict

ROWS = int(os.environ.get("MEMTAX_BENCH_ROWS", 200_000))
SEARCH_ROWS = int(os.environ.get("MEMTAX_BENCH_SEARCH_ROWS", 100_000))
BOOT = int(os.environ.get("MEMTAX_BENCH_BOOT", 1000))


def _cpu() -> float:
    """User + system CPU seconds of this process (all threads): on a shared machine the wall
    time depends on the other users, the CPU time much less."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _median(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


@pytest.mark.timeout(3600)  # the limit is asserted on the fit itself, not on the anchors
def test_baseline_and_taxonomic_with_bootstrap(benchmark):
    df, _ = predict.synthetic_table(ROWS, seed=0)
    cpu0 = _cpu()
    res = benchmark.pedantic(
        lambda: predict.fit(df, n_boot=BOOT, seed=0, progress=False), rounds=1, iterations=1
    )
    cpu = _cpu() - cpu0
    total = benchmark.stats.stats.median
    # anchor 1: one lbfgs fit vs one Newton fit on the same standardized training rows
    X, y, _ = predict.design(df)
    train, _ = predict.stratified_split(y, 0.2, 0)
    Xt, yt = X[train], y[train]
    t_newton, model = _median(lambda: predict.fit_model(Xt, yt), 3)
    Xs = model.transform(Xt)
    t_lbfgs, sk = _median(
        lambda: LogisticRegression(class_weight="balanced", max_iter=1000).fit(Xs, yt), 1
    )
    assert np.allclose(sk.coef_[0], model.beta[1:], atol=1e-3)
    # anchor 2: naive bootstrap replicate vs vectorised replicate
    yte, p = res.test_labels, res.test_probs["baseline"]
    rng = np.random.default_rng(0)

    def naive(k=20):
        for _ in range(k):
            i = rng.integers(0, yte.size, yte.size)
            roc_auc_score(yte[i], p[i])
            average_precision_score(yte[i], p[i])
            f1_score(yte[i], p[i] > 0.5)

    t_naive, _ = _median(naive, 1)
    t_vec, _ = _median(lambda: metrics.bootstrap(yte, p, n_boot=20), 1)
    m = res.metrics.set_index(["model", "metric"])["value"]
    f1b, f1t = m[("baseline", "f1")], m[("taxonomic", "f1")]
    print(
        f"\n[analysis] rows={ROWS} n_boot={BOOT}: baseline+taxonomic with bootstrap "
        f"{total:.1f} s wall, {cpu:.1f} s CPU (limit 600 s at 5M rows)\n"
        f"  one fit on {yt.size} rows: Newton {t_newton:.2f} s, sklearn lbfgs {t_lbfgs:.2f} s "
        f"(ratio lbfgs/Newton {t_lbfgs / t_newton:.1f}x)\n"
        f"  20 bootstrap replicates, {yte.size} test rows: naive sklearn {t_naive:.2f} s, "
        f"vectorised (6 metrics) {t_vec:.2f} s (ratio {t_naive / t_vec:.1f}x)\n"
        f"  F1 baseline {f1b:.3f} taxonomic {f1t:.3f}"
    )
    if ROWS >= 5_000_000:
        assert total < 600


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("search_rows", [100_000])
def test_optimal_partition_search(benchmark, search_rows):
    df, _ = predict.synthetic_table(SEARCH_ROWS, seed=1)
    cpu0 = _cpu()
    res = benchmark.pedantic(
        lambda: predict.fit(
            df, n_boot=200, seed=0, search=True, search_rows=search_rows, progress=False
        ),
        rounds=1,
        iterations=1,
    )
    total = benchmark.stats.stats.median
    cpu = _cpu() - cpu0
    t_plain, _ = _median(lambda: predict.fit(df, n_boot=200, seed=0, progress=False), 1)
    print(
        f"\n[analysis] rows={SEARCH_ROWS}: with optimal-partition search (subsample "
        f"{search_rows}, {res.partition['distinct_partitions']} distinct partitions of 810 "
        f"candidates) {total:.1f} s wall, {cpu:.1f} s CPU; without search {t_plain:.1f} s "
        f"(search costs {total - t_plain:.1f} s); winner {res.partition['feature_1']}"
        f">={res.partition['t1']:.3g} / {res.partition['feature_2']}>={res.partition['t2']:.3g}"
    )
    if SEARCH_ROWS >= 1_000_000:
        assert total < 600
