"""Category shares across model sizes and training checkpoints.

Each table (one model or checkpoint) is classified and counted on its own, never pooled: the
label of a row depends on the model that scored it. Run labels like
``EleutherAI/pythia-160m-deduped@step143000`` are parsed into a parameter count and a step, so
that the report can order sizes and steps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis import taxonomy

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([mMbB])(?![a-zA-Z])")
_STEP = re.compile(r"step[_-]?(\d+)")


def parse_label(label: str) -> tuple[float, float]:
    """(parameters, step) parsed from a run label; NaN where absent.

    >>> parse_label("EleutherAI/pythia-1.4b-deduped@step3000")
    (1400000000.0, 3000.0)
    """
    size = step = float("nan")
    m = _SIZE.search(label)
    if m:
        size = float(m.group(1)) * (1e6 if m.group(2).lower() == "m" else 1e9)
    s = _STEP.search(label)
    if s:
        step = float(s.group(1))
    return size, step


def shares_across(tables: Mapping[str, object], recitation_threshold: float = 5) -> pd.DataFrame:
    """Category shares and counts of each table, computed per table.

    Args:
        tables: label -> feature table (pyarrow.Table or pandas.DataFrame).

    Returns:
        DataFrame(run, parameters, step, category, memorized, share, candidates,
        memorization_rate), runs in the given order.
    """
    if not tables:
        raise ValueError("no tables given")
    parts = []
    for label, table in tables.items():
        size, step = parse_label(str(label))
        df = taxonomy.shares(table, recitation_threshold)
        df.insert(0, "run", str(label))
        df.insert(1, "parameters", size)
        df.insert(2, "step", step)
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out["parameters"] = out["parameters"].astype(np.float64)
    return out


# --------------------------------------------------------------------------------------------
# Memorization against duplicates, and along training


def wilson_interval(memorized, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the rate memorized / n (arrays; NaN where n is 0)."""
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(memorized, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    lo = np.full(k.shape, np.nan)
    hi = np.full(k.shape, np.nan)
    ok = n > 0
    if ok.any():
        lo[ok], hi[ok] = proportion_confint(k[ok], n[ok], alpha=alpha, method="wilson")
    return lo, hi


def duplicate_bins(max_duplicates: int) -> np.ndarray:
    """Bin edges on a log scale: [0, 1), [1, 2), [2, 4), [4, 8), ... up to past `max_duplicates`
    (a bin [lo, hi) holds the integer counts lo .. hi - 1)."""
    edges = [0, 1]
    while edges[-1] <= max_duplicates:
        edges.append(edges[-1] * 2)
    return np.asarray(edges, dtype=np.int64)


def memorization_by_duplicates(tables: Mapping[str, object], *, alpha: float = 0.05
                               ) -> pd.DataFrame:
    """Memorization rate per log-spaced bin of continuation duplicates, per run (Carlini et al.
    2022's figure): each table counted on its own.

    Returns:
        DataFrame(run, parameters, step, bin_lo, bin_hi (inclusive), n, memorized, rate, lo, hi)
        with the Wilson interval [lo, hi] at level 1 - alpha; empty bins are left out.
    """
    if not tables:
        raise ValueError("no tables given")
    dups = {label: np.asarray(taxonomy.column(t, "duplicates"), dtype=np.float64)
            for label, t in tables.items()}
    finite = [d[np.isfinite(d)] for d in dups.values()]
    top = int(max((d.max() for d in finite if d.size), default=0))
    edges = duplicate_bins(top)
    rows = []
    for label, table in tables.items():
        size, step = parse_label(str(label))
        mem = taxonomy.labels(table)
        which = np.searchsorted(edges, dups[label], side="right") - 1
        for b in range(edges.size - 1):
            sel = which == b
            if sel.any():
                rows.append({"run": str(label), "parameters": size, "step": step,
                             "bin_lo": int(edges[b]), "bin_hi": int(edges[b + 1] - 1),
                             "n": int(sel.sum()), "memorized": int(mem[sel].sum())})
    df = pd.DataFrame(rows, columns=["run", "parameters", "step", "bin_lo", "bin_hi", "n",
                                     "memorized"])
    df["rate"] = df["memorized"] / df["n"]
    df["lo"], df["hi"] = wilson_interval(df["memorized"], df["n"], alpha)
    return df


def _checkpoint_items(checkpoints: Mapping[str, Mapping[int, object]]):
    if not checkpoints:
        raise ValueError("no checkpoints given")
    for model, steps in checkpoints.items():
        if not steps:
            raise ValueError(f"model {model!r} has no checkpoints")
        for step in sorted(steps):
            yield str(model), int(step), steps[step]


def memorized_by_checkpoint(checkpoints: Mapping[str, Mapping[int, object]], *,
                            alpha: float = 0.05) -> pd.DataFrame:
    """Memorized count and rate of every checkpoint of every model, each counted on its own.

    Args:
        checkpoints: model -> step -> feature or score table (with `exact_match`).

    Returns:
        DataFrame(model, step, samples, memorized, rate, lo, hi), steps ascending per model,
        with the Wilson interval of the rate.
    """
    rows = []
    for model, step, table in _checkpoint_items(checkpoints):
        mem = taxonomy.labels(table)
        rows.append({"model": model, "step": step, "samples": int(mem.size),
                     "memorized": int(mem.sum())})
    df = pd.DataFrame(rows)
    df["rate"] = df["memorized"] / df["samples"].where(df["samples"] > 0)
    df["lo"], df["hi"] = wilson_interval(df["memorized"], df["samples"], alpha)
    return df


def shares_by_checkpoint(checkpoints: Mapping[str, Mapping[int, object]],
                         recitation_threshold: float = 5) -> pd.DataFrame:
    """Category shares and counts of every checkpoint, per model (never pooled across models).

    Returns:
        DataFrame(model, step, category, memorized, share, candidates, memorization_rate).
    """
    parts = []
    for model, step, table in _checkpoint_items(checkpoints):
        df = taxonomy.shares(table, recitation_threshold)
        df.insert(0, "model", model)
        df.insert(1, "step", step)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)
