"""Engine: models, sample sources, exact scoring, decoding, output shards, distributed runs.

Names are resolved lazily so that `import engine` does not import torch/transformers until used.
"""

from __future__ import annotations

import importlib

_ATTRS = {"score": "engine.score", "load_model": "engine.models", "open_samples": "engine.data"}

__all__ = list(_ATTRS)


def __getattr__(name: str):
    if name in _ATTRS:
        # Cache the function: importing the submodule `engine.score` rebinds the package
        # attribute to the module (which stays callable, see engine/score.py).
        value = getattr(importlib.import_module(_ATTRS[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"engine.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"engine.{name}":
            raise
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
