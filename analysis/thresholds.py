"""Why recitation starts above 5 duplicates: KL divergence of perplexity by duplicate count.

For each duplicate count d, compare the continuation-perplexity distributions of memorized and
non-memorized samples with exactly d duplicates by the symmetric KL divergence
``KL(P || Q) + KL(Q || P)``. The distributions are histograms of log perplexity on shared bins
(quantile edges over all rows considered, so every bin is populated somewhere) with a pseudo-count
`eps` (default 0.5, Jeffreys) added to every bin so that empty bins stay finite and small samples
are not dominated by them. Each count is bootstrapped (both groups resampled
with replacement) for an interval.

The paper (and its code, `calculate_kl.py`) read the threshold off this curve; memtax suggests
the count after which the divergence changes the most: ``argmax_d |KL[d + 1] - KL[d]|`` over
consecutive counts with enough rows in both groups. (The paper's code passed raw perplexity values to
`scipy.stats.entropy` as if they were probabilities; memtax compares distributions.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import taxonomy


def symmetric_kl(a: np.ndarray, b: np.ndarray, edges: np.ndarray, eps: float = 0.5) -> float:
    """Symmetric KL divergence (nats) of samples a and b binned on `edges`."""
    pa = np.histogram(a, edges)[0].astype(np.float64) + eps
    pb = np.histogram(b, edges)[0].astype(np.float64) + eps
    pa /= pa.sum()
    pb /= pb.sum()
    return float(np.sum((pa - pb) * (np.log(pa) - np.log(pb))))


def kl_by_duplicates(
    table,
    *,
    max_duplicates: int = 20,
    n_boot: int = 200,
    bins: int = 20,
    min_rows: int = 20,
    alpha: float = 0.05,
    eps: float = 0.5,
    seed: int = 0,
) -> tuple[pd.DataFrame, int | None]:
    """Symmetric KL per duplicate count 0..max_duplicates and the threshold it suggests.

    Returns:
        (DataFrame(duplicates, n_memorized, n_other, kl, lo, hi) — NaN where either group has
        fewer than `min_rows` rows; suggested threshold or None when fewer than two counts
        qualify).
    """
    taxonomy.require_columns(table, ["duplicates", "cont_ppl", taxonomy.LABEL], "feature table")
    dup = np.asarray(taxonomy.column(table, "duplicates"), dtype=np.float64)
    ppl = np.asarray(taxonomy.column(table, "cont_ppl"), dtype=np.float64)
    y = taxonomy.labels(table)
    ok = np.isfinite(dup) & np.isfinite(ppl) & (ppl > 0)
    logp = np.log(ppl[ok])
    dup, y = dup[ok], y[ok]
    rng = np.random.default_rng(seed)
    in_range = dup <= max_duplicates
    if not in_range.any():
        raise ValueError(f"no rows with duplicates <= {max_duplicates} and a finite cont_ppl")
    edges = np.unique(np.quantile(logp[in_range], np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        edges = np.array([logp[in_range].min() - 0.5, logp[in_range].max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    rows = []
    for d in range(max_duplicates + 1):
        at = dup == d
        a, b = logp[at & y], logp[at & ~y]
        row = {
            "duplicates": d,
            "n_memorized": int(a.size),
            "n_other": int(b.size),
            "kl": np.nan,
            "lo": np.nan,
            "hi": np.nan,
        }
        if a.size >= min_rows and b.size >= min_rows:
            row["kl"] = symmetric_kl(a, b, edges, eps)
            reps = [
                symmetric_kl(rng.choice(a, a.size), rng.choice(b, b.size), edges, eps)
                for _ in range(n_boot)
            ]
            if reps:
                row["lo"], row["hi"] = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        rows.append(row)
    df = pd.DataFrame(rows)
    kl = df["kl"].to_numpy()
    drops = np.abs(kl[1:] - kl[:-1])  # NaN where either count lacks rows
    if np.isfinite(drops).any():
        return df, int(df["duplicates"].iloc[int(np.nanargmax(drops))])
    return df, None
