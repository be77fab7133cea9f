"""Lazy names for the packages' `__init__`s, so that `import engine` / `import features` /
`import analysis` stay cheap (torch, Numba, sentence-transformers and faiss load on first use).

    __getattr__ = lazy_getattr("features", {"CorpusIndex": "features.index"})

A name in `attrs` is looked up in its module on first access (`features.CorpusIndex`); any
other name is tried as a submodule (`analysis.taxonomy`). Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, attrs: Mapping[str, str] | None = None) -> Callable[[str], object]:
    """A module-level `__getattr__` (PEP 562) for `package`."""
    attrs = dict(attrs or {})

    def __getattr__(name: str):
        if name in attrs:
            # the function `engine.score` lives in the module `engine.scoring`: the names and
            # their modules differ, so importing a submodule never rebinds a lazy name
            return getattr(importlib.import_module(attrs[name]), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
