"""JSON for reports the front door writes: numpy scalars and paths as plain JSON values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["json_default"]


def json_default(value):
    """`json.dumps(..., default=json_default)`: numpy integers, floats and bools as Python's,
    paths as strings; anything else raises TypeError naming its type."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
