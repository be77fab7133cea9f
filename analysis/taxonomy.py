"""The paper's taxonomy: recitation, reconstruction, recollection.

Rules, checked in this order for every row (memorized or not; a non-memorized row is a *candidate*
of its category):

1. recitation      if ``duplicates > recitation_threshold`` (strictly greater: a tie stays out),
2. reconstruction  if the text is templated (``is_templating``; when that column is absent,
                   ``is_repeating or is_incrementing``, the paper's definition of it),
3. recollection    otherwise.

The paper's published code used ``> 10`` in one version and ``>= 10`` in another; its final
`model_training.py` passes ``--sequence_duplication_threshold 6`` to ``>=`` and its plotting notebook
uses ``> 5`` (the same rule on integer counts); memtax uses ``> 5`` (see `analysis.thresholds` for
the KL argument behind 5). The rule is the same in both profiles.

Code or natural language (`code_types`): the profile decides how the `code_score` column becomes
"code", "natural language" or "uncertain". In the default profile a row is code when
``code_score >= code_threshold`` (0.5) and natural language otherwise. In the paper profile the
paper's band is used (`model_parameters.py`: ``NATURAL_LANGUAGE_SCORE_THRESHOLDS = [0.525, 0.4]``
on its classifier's natural-language score ``nl = 1 - code_score``): natural language when
``nl >= 0.525``, code when ``nl <= 0.4``, uncertain in between; its plotting notebook drops the
uncertain rows (`results_analysis.ipynb`, ``CodeType != "Uncertain"``). A missing `code_score`
(NaN) is uncertain in both profiles. `code_shares` counts memorized code and natural-language rows
per category as that notebook does.

Also the small table helpers the other analysis modules share: `column` and `as_frame` accept a
pyarrow.Table or a pandas.DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.profiles import check_profile

CATEGORIES: tuple[str, ...] = ("recitation", "reconstruction", "recollection")
LABEL = "exact_match"
CODE_TYPES: tuple[str, ...] = ("code", "natural language", "uncertain")
# The paper's band on its classifier's natural-language score (model_parameters.py,
# NATURAL_LANGUAGE_SCORE_THRESHOLDS = [0.525, 0.4]): nl >= 0.525 is natural language, nl <= 0.4 code.
PAPER_NL_MIN = 0.525
PAPER_CODE_MAX_NL = 0.4


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


def code_types(table, *, profile: str = "default", code_threshold: float = 0.5) -> np.ndarray:
    """"code", "natural language" or "uncertain" for every row, from `code_score` (module
    docstring: the default profile cuts at `code_threshold`, the paper profile uses the paper's
    band on ``1 - code_score``); str array, shape (n,)."""
    check_profile(profile)
    score = np.asarray(column(table, "code_score"), dtype=np.float64)
    out = np.full(score.shape[0], CODE_TYPES[2], dtype=f"<U{max(map(len, CODE_TYPES))}")
    if profile == "paper":
        nl = 1.0 - score  # NaN stays NaN: neither comparison holds
        out[nl >= PAPER_NL_MIN] = CODE_TYPES[1]
        out[nl <= PAPER_CODE_MAX_NL] = CODE_TYPES[0]
    else:
        out[score >= code_threshold] = CODE_TYPES[0]
        out[score < code_threshold] = CODE_TYPES[1]
    return out


def code_shares(table, recitation_threshold: float = 5, *, profile: str = "default",
                code_threshold: float = 0.5, label: str = LABEL) -> pd.DataFrame:
    """Code and natural language among the memorized rows of each category (and of all of them),
    as the paper's notebook counts them (`results_analysis.ipynb`: uncertain rows dropped, shares
    of the category's memorized code + natural-language rows, P(memorized) = the category's
    memorized rows of a type / all rows of that type).

    Returns:
        DataFrame(category ("all memorized" first, then CATEGORIES), code_type ("code",
        "natural language"), memorized, share, samples (rows of that type), memorization_rate);
        the number of uncertain rows left out is in ``df.attrs["uncertain"]``.
    """
    kinds = code_types(table, profile=profile, code_threshold=code_threshold)
    cats = classify(table, recitation_threshold)
    mem = labels(table, label)
    rows = []
    for cat in ("all memorized",) + CATEGORIES:
        in_cat = mem if cat == "all memorized" else mem & (cats == cat)
        known = int((in_cat & (kinds != CODE_TYPES[2])).sum())
        for kind in CODE_TYPES[:2]:
            k = int((in_cat & (kinds == kind)).sum())
            n = int((kinds == kind).sum())
            rows.append({"category": cat, "code_type": kind, "memorized": k,
                         "share": k / known if known else float("nan"), "samples": n,
                         "memorization_rate": k / n if n else float("nan")})
    out = pd.DataFrame(rows)
    out.attrs["uncertain"] = int((kinds == CODE_TYPES[2]).sum())
    out.attrs["profile"] = profile
    return out


def with_extra_memorized(table, extra_memorized, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` of the rows of `table` followed by those of `extra_memorized` (a feature table of
    memorized samples drawn beside the random sample, as the paper's ``memories`` split) whose
    `sample_id` is not already in `table` (the paper's ``pd.concat([pile, memories])
    .drop_duplicates("sequence_id")`` keeps the first); a bool column ``extra`` marks them.
    ValueError when `extra_memorized` holds a row that is not memorized or lacks a column."""
    names = list(dict.fromkeys(list(columns) + [LABEL]))
    base = as_frame(table, names)
    base[LABEL] = labels(table)  # validated: no missing labels
    base["extra"] = False
    if extra_memorized is None:
        return base
    require_columns(extra_memorized, names, "extra memorized table")
    if not labels(extra_memorized).all():
        n_not = int((~labels(extra_memorized)).sum())
        raise ValueError(f"the extra memorized table has {n_not} rows with exact_match False; "
                         "expected memorized samples only")
    more = as_frame(extra_memorized, names)
    more[LABEL] = True
    have = set(column_names(table)) & set(column_names(extra_memorized))
    if "sample_id" in have:
        known = np.isin(column(extra_memorized, "sample_id"), column(table, "sample_id"))
        more = more[~known]
    more["extra"] = True
    return pd.concat([base, more], ignore_index=True)


def as_frame(table, names: Sequence[str]) -> pd.DataFrame:
    """A pandas DataFrame of the named columns of a pyarrow.Table or pandas.DataFrame."""
    require_columns(table, names)
    return pd.DataFrame({n: column(table, n) for n in names})
