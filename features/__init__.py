"""Features: the corpus index (suffix array) and per-sample predictors of memorization.

Names are resolved lazily so that `import features` stays cheap (Numba, sentence-transformers
and faiss load only when used).
"""

from engine.lazy import lazy_getattr

_ATTRS = {"CorpusIndex": "features.index", "compute": "features.pipeline"}

__all__ = list(_ATTRS)

__getattr__ = lazy_getattr("features", _ATTRS)
