"""Features: the corpus index (suffix array) and per-sample predictors of memorization.

Names are resolved lazily so that `import features` stays cheap (Numba, sentence-transformers
and faiss load only when used).
"""

from __future__ import annotations

import importlib

_ATTRS = {"CorpusIndex": "features.index", "compute": "features.pipeline"}

__all__ = ["CorpusIndex", "compute"]


def __getattr__(name: str):
    if name in _ATTRS:
        return getattr(importlib.import_module(_ATTRS[name]), name)
    try:
        return importlib.import_module(f"features.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"features.{name}":
            raise
        raise AttributeError(f"module 'features' has no attribute {name!r}") from None
