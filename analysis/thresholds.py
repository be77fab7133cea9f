"""Why recitation starts above 5 duplicates: KL divergence of perplexity by duplicate count.

For each duplicate count d, compare the continuation-perplexity distributions of memorized and
non-memorized samples with exactly d duplicates by the symmetric KL divergence
``KL(P || Q) + KL(Q || P)``. The distributions are histograms of log perplexity on shared bins
(quantile edges over all rows considered, so every bin is populated somewhere) with a pseudo-count
`eps` (default 0.5, Jeffreys) added to every bin so that empty bins stay finite and small samples
are not dominated by them. Each count is bootstrapped (both groups resampled
with replacement) for an interval.

The paper read the threshold off this curve; memtax suggests the count after which the
divergence changes the most: ``argmax_d |KL[d + 1] - KL[d]|`` over consecutive counts with enough
rows in both groups (both profiles).

Paper profile (``profile="paper"``): the study as the paper's notebook ran it
(EleutherAI/semantic-memorization, `working_dirs/kyle/results_analysis/ppl_dup_figure.ipynb`,
``calculate_symetric_kl_divergence``), on its ``generation_perplexity``, the divide-by-63
continuation perplexity (`cont_ppl_paper`). The two groups are the memorized samples (the random
sample's memorized rows plus `extra_memorized`, the paper's ``memories`` split) and *all* samples
(the random sample's non-memorized rows plus those memorized ones: "memorized vs memorized plus
non-memorized"). For each duplicate count d = 1..max_duplicates (its ``np.arange(1, ...)``) and
each of `n_boot` replicates: the all-samples group at d is resampled with replacement (``sample(
frac=1, replace=True)``), both groups are downsampled without replacement to the smaller size
(``sample(balance_size)``, which also shuffles them), each is divided by its sum ("softmax" in
the notebook) and the divergence is ``(entropy(p, q) + entropy(q, p)) / 2`` (scipy's `entropy`,
natural log) of those two vectors, position by position: the raw perplexity values are taken for
probabilities and the i-th memorized sample is paired with the i-th other one. The curve is the
replicates' mean with mean +- one standard deviation (seaborn's ``errorbar="sd"``) as lo/hi. Its
memorized group is not resampled. Rows without a finite positive perplexity are left out (the
paper's had none). Random draws come from ``numpy.random.default_rng(seed)``
through pandas-style index draws (``Generator.choice`` on positions) over the notebook's frames in
its order (memorized: the sample's memorized rows, then the extra ones; all samples: the
sample's non-memorized rows, then the memorized), so the notebook's pandas code given the same
generator draws the same rows.

`extra_memorized` (both profiles) adds memorized rows to the memorized group (rows whose
`sample_id` is already in the table are left out); the default profile's other group stays the
table's non-memorized rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import taxonomy
from engine.profiles import check_profile, same_profile


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
    profile: str = "default",
    extra_memorized=None,
    perplexity: str | None = None,
) -> tuple[pd.DataFrame, int | None]:
    """Symmetric KL per duplicate count 0..max_duplicates (paper profile: 1..max_duplicates,
    module docstring) and the threshold it suggests.

    Args:
        extra_memorized: a feature table of further memorized samples (optional).
        perplexity: the perplexity column; default "cont_ppl", in the paper profile
            "cont_ppl_paper" (the notebook's ``generation_perplexity`` is the paper's
            divide-by-63 perplexity of the continuation).
        bins, eps: the default profile's histogram (unused by the paper profile).

    Returns:
        (DataFrame(duplicates, n_memorized, n_other, kl, lo, hi) — NaN where either group has
        fewer than `min_rows` rows; suggested threshold or None when fewer than two counts
        qualify). In the paper profile `n_other` counts all samples at d (memorized included).
    """
    check_profile(profile)
    same_profile({"feature table": table, "extra memorized table": extra_memorized}
                 if extra_memorized is not None else {"feature table": table}, expected=profile)
    if perplexity is None:
        perplexity = "cont_ppl_paper" if profile == "paper" else "cont_ppl"
    names = ["duplicates", perplexity, taxonomy.LABEL]
    taxonomy.require_columns(table, names, "feature table")
    rows = taxonomy.with_extra_memorized(table, extra_memorized, names)
    rows = rows.rename(columns={perplexity: "ppl"})
    if profile == "paper":
        df = _paper_curve(rows, max_duplicates, n_boot, min_rows, seed)
    else:
        df = _histogram_curve(rows, max_duplicates, n_boot, bins, min_rows, alpha, eps, seed,
                              perplexity)
    df.attrs["profile"] = profile
    return df, _suggest(df)


def _histogram_curve(rows: pd.DataFrame, max_duplicates: int, n_boot: int, bins: int,
                     min_rows: int, alpha: float, eps: float, seed: int,
                     perplexity: str) -> pd.DataFrame:
    """The default profile's curve (module docstring): DataFrame(duplicates, n_memorized,
    n_other, kl, lo, hi) over counts 0..max_duplicates."""
    dup = rows["duplicates"].to_numpy(dtype=np.float64)
    ppl = rows["ppl"].to_numpy(dtype=np.float64)
    y = rows[taxonomy.LABEL].to_numpy(dtype=bool)
    ok = np.isfinite(dup) & np.isfinite(ppl) & (ppl > 0)
    logp = np.log(ppl[ok])
    dup, y = dup[ok], y[ok]
    rng = np.random.default_rng(seed)
    in_range = dup <= max_duplicates
    if not in_range.any():
        raise ValueError(f"no rows with duplicates <= {max_duplicates} and a finite positive "
                         f"{perplexity}")
    edges = np.unique(np.quantile(logp[in_range], np.linspace(0, 1, bins + 1)))
    if edges.size < 2:
        edges = np.array([logp[in_range].min() - 0.5, logp[in_range].max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    out = []
    for d in range(max_duplicates + 1):
        at = dup == d
        a, b = logp[at & y], logp[at & ~y]
        row = {"duplicates": d, "n_memorized": int(a.size), "n_other": int(b.size),
               "kl": np.nan, "lo": np.nan, "hi": np.nan}
        if a.size >= min_rows and b.size >= min_rows:
            row["kl"] = symmetric_kl(a, b, edges, eps)
            reps = [
                symmetric_kl(rng.choice(a, a.size), rng.choice(b, b.size), edges, eps)
                for _ in range(n_boot)
            ]
            if reps:
                row["lo"], row["hi"] = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
        out.append(row)
    return pd.DataFrame(out)


def _suggest(df: pd.DataFrame) -> int | None:
    """The count after which the curve changes the most, or None."""
    kl = df["kl"].to_numpy()
    drops = np.abs(kl[1:] - kl[:-1])  # NaN where either count lacks rows
    if np.isfinite(drops).any():
        return int(df["duplicates"].iloc[int(np.nanargmax(drops))])
    return None


def paper_symmetric_kl(memorized: np.ndarray, others: np.ndarray) -> float:
    """The paper's divergence of two equal-length perplexity vectors: each divided by its sum,
    then ``(KL(p || q) + KL(q || p)) / 2`` position by position (nats)."""
    p = np.asarray(memorized, dtype=np.float64)
    q = np.asarray(others, dtype=np.float64)
    if p.shape != q.shape or p.size == 0:
        raise ValueError(f"expected two non-empty vectors of one length, got {p.shape}, {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    return float((np.sum(p * np.log(p / q)) + np.sum(q * np.log(q / p))) / 2)


def _paper_replicate(memorized: np.ndarray, everyone: np.ndarray,
                     rng: np.random.Generator) -> float:
    """One bootstrap replicate of the paper's notebook at one duplicate count."""
    boot = everyone[rng.choice(everyone.size, size=everyone.size, replace=True)]
    k = min(memorized.size, boot.size)
    mem = memorized[rng.choice(memorized.size, size=k, replace=False)]
    other = boot[rng.choice(boot.size, size=k, replace=False)]
    return paper_symmetric_kl(mem, other)


def _paper_curve(rows: pd.DataFrame, max_duplicates: int, n_boot: int, min_rows: int,
                 seed: int) -> pd.DataFrame:
    """The paper's bootstrapped curve (module docstring) from the rows of the sample and the
    extra memorized rows: DataFrame(duplicates, n_memorized, n_other, kl, lo, hi)."""
    dup = rows["duplicates"].to_numpy(dtype=np.float64)
    ppl = rows["ppl"].to_numpy(dtype=np.float64)
    mem = rows[taxonomy.LABEL].to_numpy(dtype=bool)
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2 for the paper's mean +- sd curve, got {n_boot}")
    keep = np.isfinite(dup) & np.isfinite(ppl) & (ppl > 0)  # a perplexity is positive
    # the notebook's frames, in its order: memories (the sample's memorized rows, then the
    # extra ones) and pd.concat([pile non-memorized, memories])
    mem_dup, mem_ppl = dup[keep & mem], ppl[keep & mem]
    all_dup = np.concatenate([dup[keep & ~mem], mem_dup])
    all_ppl = np.concatenate([ppl[keep & ~mem], mem_ppl])
    rng = np.random.default_rng(seed)
    out = []
    for d in range(1, max_duplicates + 1):
        a, everyone = mem_ppl[mem_dup == d], all_ppl[all_dup == d]
        row = {"duplicates": d, "n_memorized": int(a.size), "n_other": int(everyone.size),
               "kl": np.nan, "lo": np.nan, "hi": np.nan}
        if a.size >= max(min_rows, 1) and everyone.size >= max(min_rows, 1):
            reps = np.array([_paper_replicate(a, everyone, rng) for _ in range(n_boot)])
            sd = reps.std(ddof=1)
            row["kl"] = reps.mean()
            row["lo"], row["hi"] = row["kl"] - sd, row["kl"] + sd
        out.append(row)
    return pd.DataFrame(out)
