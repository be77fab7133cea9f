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
