"""Category shares across model sizes and training checkpoints.

Default profile: each table (one model or checkpoint) is classified and counted on its own, never
pooled: the label of a row depends on the model that scored it. Run labels like
``EleutherAI/pythia-160m-deduped@step143000`` are parsed into a parameter count and a step, so
that the report can order sizes and steps.

Paper profile: the shares are pooled as the paper's plotting notebook pooled them
(EleutherAI/semantic-memorization, `working_dirs/kyle/results_analysis/results_analysis.ipynb`,
``percents_frame_scale`` and ``percents_frame_time``), which concatenates the memorized rows of
every table and then selects

- across scale, every row of a parameter count (``combined_memories_dataframe["Param Count"] ==
  param_count``, with no checkpoint filter: a size's intermediate checkpoints are pooled with its
  final one): `shares_across` pools the tables whose labels parse to the same size (a table
  whose size cannot be parsed stays on its own);
- across time, every row of a training fraction (``TrainingPercentage == checkpoint``, with no
  model filter: at the final step every size is pooled): `shares_by_checkpoint` pools the
  models' tables at the same step (Pythia's models all end at step 143000, so equal steps are
  equal fractions).

A pooled share is the category's memorized rows summed over the pooled tables over all their
memorized rows (the notebook's ``value_counts(normalize=True)`` on the concatenation); candidates
and rates are summed the same way. The counts (`memorized_by_checkpoint`) are never pooled: the
notebook's count figures take the final checkpoint per size and one model's checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis import taxonomy
from engine.profiles import check_profile, same_profile

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


def shares_across(tables: Mapping[str, object], recitation_threshold: float = 5, *,
                  profile: str = "default") -> pd.DataFrame:
    """Category shares and counts of each table, computed per table (default) or pooled per
    model size as the paper's notebook did (``profile="paper"``, module docstring).

    Args:
        tables: label -> feature table (pyarrow.Table or pandas.DataFrame).

    Returns:
        DataFrame(run, parameters, step, category, memorized, share, candidates,
        memorization_rate), runs in the given order; pooled rows name their runs joined by
        " + " and have step NaN when the pooled steps differ.
    """
    if not tables:
        raise ValueError("no tables given")
    _check_inputs(tables, profile)
    parts = []
    for labels, group in _groups(tables, profile):
        sizes, steps = zip(*(parse_label(str(label)) for label in labels))
        df = _pooled_shares(group, recitation_threshold)
        df.insert(0, "run", " + ".join(map(str, labels)))
        df.insert(1, "parameters", sizes[0])
        df.insert(2, "step", steps[0] if len(set(steps)) == 1 else float("nan"))
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out["parameters"] = out["parameters"].astype(np.float64)
    out.attrs["profile"] = profile
    return out


def _check_inputs(tables: Mapping[str, object], profile: str) -> None:
    check_profile(profile)
    same_profile({f"feature table {label!r}": t for label, t in tables.items()}, expected=profile)


def _groups(tables: Mapping[str, object], profile: str) -> list[tuple[list, list]]:
    """([labels], [tables]) per output row group: one per table, or (paper) one per parsed
    parameter count in order of first appearance (unparsed sizes stay alone)."""
    groups: dict[object, tuple[list, list]] = {}
    for k, (label, table) in enumerate(tables.items()):
        size = parse_label(str(label))[0]
        key = size if profile == "paper" and np.isfinite(size) else ("run", k)
        groups.setdefault(key, ([], []))
        groups[key][0].append(label)
        groups[key][1].append(table)
    return list(groups.values())


def _pooled_shares(tables: list, recitation_threshold: float) -> pd.DataFrame:
    """`taxonomy.shares` of the concatenation of `tables` (counts summed, shares and rates
    recomputed); one table gives exactly its own `taxonomy.shares`."""
    if len(tables) == 1:
        return taxonomy.shares(tables[0], recitation_threshold)
    parts = [taxonomy.shares(t, recitation_threshold) for t in tables]
    out = parts[0][["category"]].copy()
    for col in ("memorized", "candidates"):
        out[col] = sum(p[col].to_numpy() for p in parts)
    n_mem = int(out["memorized"].sum())
    out["share"] = out["memorized"] / n_mem if n_mem else float("nan")
    out["memorization_rate"] = out["memorized"] / out["candidates"].where(out["candidates"] > 0)
    return out[["category", "memorized", "share", "candidates", "memorization_rate"]]


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


def memorization_by_duplicates(tables: Mapping[str, object], *, alpha: float = 0.05,
                               profile: str = "default") -> pd.DataFrame:
    """Memorization rate per log-spaced bin of continuation duplicates, per run (Carlini et al.
    2022's figure): each table counted on its own, in both profiles (the paper has no such
    figure); `profile` checks the tables' recorded profiles.

    Returns:
        DataFrame(run, parameters, step, bin_lo, bin_hi (inclusive), n, memorized, rate, lo, hi)
        with the Wilson interval [lo, hi] at level 1 - alpha; empty bins are left out.
    """
    if not tables:
        raise ValueError("no tables given")
    _check_inputs(tables, profile)
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
                            alpha: float = 0.05, profile: str = "default") -> pd.DataFrame:
    """Memorized count and rate of every checkpoint of every model, each counted on its own (in
    both profiles: the paper's count figures are per model too); `profile` checks the tables'
    recorded profiles.

    Args:
        checkpoints: model -> step -> feature or score table (with `exact_match`).

    Returns:
        DataFrame(model, step, samples, memorized, rate, lo, hi), steps ascending per model,
        with the Wilson interval of the rate.
    """
    check_profile(profile)
    items = list(_checkpoint_items(checkpoints))
    same_profile({f"feature table {m!r} step {s}": t for m, s, t in items}, expected=profile)
    rows = []
    for model, step, table in items:
        mem = taxonomy.labels(table)
        rows.append({"model": model, "step": step, "samples": int(mem.size),
                     "memorized": int(mem.sum())})
    df = pd.DataFrame(rows)
    df["rate"] = df["memorized"] / df["samples"].where(df["samples"] > 0)
    df["lo"], df["hi"] = wilson_interval(df["memorized"], df["samples"], alpha)
    return df


def shares_by_checkpoint(checkpoints: Mapping[str, Mapping[int, object]],
                         recitation_threshold: float = 5, *,
                         profile: str = "default") -> pd.DataFrame:
    """Category shares and counts of every checkpoint, per model (default: never pooled across
    models) or pooled across the models at each step (``profile="paper"``, module docstring).

    Returns:
        DataFrame(model, step, category, memorized, share, candidates, memorization_rate); in
        the paper profile `model` is "pooled" and a last column `pooled_models` names the
        models pooled at that step, joined by " + ".
    """
    check_profile(profile)
    items = list(_checkpoint_items(checkpoints))
    same_profile({f"feature table {m!r} step {s}": t for m, s, t in items}, expected=profile)
    if profile == "paper":
        steps: dict[int, list] = {}
        for model, step, table in items:
            steps.setdefault(step, []).append((model, table))
        groups = [(" + ".join(m for m, _ in pairs), step, [t for _, t in pairs])
                  for step, pairs in sorted(steps.items())]
    else:
        groups = [(model, step, [table]) for model, step, table in items]
    parts = []
    for model, step, tables in groups:
        df = _pooled_shares(tables, recitation_threshold)
        df.insert(0, "model", "pooled" if profile == "paper" else model)
        df.insert(1, "step", step)
        if profile == "paper":
            df["pooled_models"] = model
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["profile"] = profile
    return out
