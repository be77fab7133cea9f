"""The paper's taxonomy: recitation, reconstruction, recollection.

Rules, checked in this order for every row (memorized or not; a non-memorized row is a *candidate*
of its category):

1. recitation      if ``duplicates > recitation_threshold`` (strictly greater: a tie stays out),
2. reconstruction  if the text is templated (``is_templating``; when that column is absent,
                   ``is_repeating or is_incrementing``, the paper's definition of it),
3. recollection    otherwise.

The paper's published code used ``> 10`` in one version and ``>= 10`` in another; the paper text
and memtax use ``> 5`` (see `analysis.thresholds` for the KL argument behind 5).

Also the small table helpers the other analysis modules share: `column` and `as_frame` accept a
pyarrow.Table or a pandas.DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CATEGORIES: tuple[str, ...] = ("recitation", "reconstruction", "recollection")
LABEL = "exact_match"


def column_names(table) -> list[str]:
    """Column names of a pyarrow.Table or pandas.DataFrame."""
    if isinstance(table, pd.DataFrame):
        return [str(c) for c in table.columns]
    names = getattr(table, "column_names", None)
    if names is None:
        raise ValueError(
            f"expected a pyarrow.Table or pandas.DataFrame, got {type(table).__name__}"
        )
    return list(names)


def require_columns(table, names: Sequence[str], what: str = "table") -> None:
    """Raise ValueError naming every column of `names` that `table` lacks."""
    have = set(column_names(table))
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {missing}; expected the memtax feature table columns "
            f"(have: {sorted(have)})"
        )


def column(table, name: str, dtype=None) -> np.ndarray:
    """One column as a numpy array (nulls become NaN for floats)."""
    require_columns(table, [name])
    if isinstance(table, pd.DataFrame):
        values = table[name].to_numpy()
    else:
        col = table.column(name)
        if col.null_count:
            values = col.to_numpy(zero_copy_only=False)
        else:
            values = col.to_numpy()
    if dtype is not None:
        values = np.asarray(values, dtype=dtype)
    return values


def labels(table, label: str = LABEL) -> np.ndarray:
    """The memorization label as a bool array, shape (n,); rejects missing values."""
    raw = column(table, label)
    if raw.dtype == object or np.issubdtype(raw.dtype, np.floating):
        as_float = np.asarray(raw, dtype=np.float64)
        bad = ~np.isfinite(as_float)
        if bad.any():
            raise ValueError(f"column {label!r} has {int(bad.sum())} missing/non-finite values")
        if not np.isin(as_float, (0.0, 1.0)).all():
            raise ValueError(f"column {label!r} must be 0/1 or bool")
        return as_float.astype(bool)
    return raw.astype(bool)


def templated(table) -> np.ndarray:
    """`is_templating`, or `is_repeating | is_incrementing` when it is absent; bool (n,)."""
    names = set(column_names(table))
    if "is_templating" in names:
        return column(table, "is_templating").astype(bool)
    if {"is_repeating", "is_incrementing"} <= names:
        return column(table, "is_repeating").astype(bool) | column(table, "is_incrementing").astype(
            bool
        )
    raise ValueError(
        "table needs 'is_templating' (or both 'is_repeating' and 'is_incrementing') to classify"
    )


def classify(table, recitation_threshold: float = 5) -> np.ndarray:
    """Category of every row.

    Args:
        table: feature table (pyarrow.Table or pandas.DataFrame) with `duplicates` and
            `is_templating` (or `is_repeating` and `is_incrementing`).
        recitation_threshold: rows with duplicates strictly above it are recitation.

    Returns:
        array of str, shape (n,), each one of CATEGORIES.
    """
    if not np.isfinite(recitation_threshold):
        raise ValueError(f"recitation_threshold must be finite, got {recitation_threshold!r}")
    dup = np.asarray(column(table, "duplicates"), dtype=np.float64)
    bad = np.isnan(dup)
    if bad.any():
        raise ValueError(f"column 'duplicates' has {int(bad.sum())} missing values")
    tmpl = templated(table)
    out = np.full(dup.shape[0], CATEGORIES[2], dtype=f"<U{max(map(len, CATEGORIES))}")
    out[tmpl] = CATEGORIES[1]
    out[dup > recitation_threshold] = CATEGORIES[0]  # recitation wins over templating
    return out


def shares(table, recitation_threshold: float = 5, label: str = LABEL) -> pd.DataFrame:
    """Category shares of memorized rows, with counts, candidates and memorization rates.

    Returns:
        DataFrame with one row per category (in CATEGORIES order) and columns
        `category`, `memorized` (count), `share` (of all memorized rows; NaN if none),
        `candidates` (all rows of the category), `memorization_rate` (memorized / candidates).
    """
    cats = classify(table, recitation_threshold)
    mem = labels(table, label)
    n_mem = int(mem.sum())
    rows = []
    for c in CATEGORIES:
        in_c = cats == c
        k = int((in_c & mem).sum())
        cand = int(in_c.sum())
        rows.append(
            {
                "category": c,
                "memorized": k,
                "share": k / n_mem if n_mem else float("nan"),
                "candidates": cand,
                "memorization_rate": k / cand if cand else float("nan"),
            }
        )
    return pd.DataFrame(rows)
