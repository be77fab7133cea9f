"""Analysis: taxonomy, predictive models, dependencies, thresholds, scaling, the report.

Submodules load lazily (`analysis.taxonomy.classify(...)` works after `import analysis`).
"""

from __future__ import annotations

import importlib


def __getattr__(name: str):
    try:
        return importlib.import_module(f"analysis.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"analysis.{name}":
            raise
        raise AttributeError(f"module 'analysis' has no attribute {name!r}") from None
