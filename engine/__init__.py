"""Engine: models, sample sources, exact scoring, decoding, output shards, distributed runs.

Names are resolved lazily so that `import engine` does not import torch/transformers until used.
"""

from __future__ import annotations

import importlib

_ATTRS = {"score": "engine.scoring", "load_model": "engine.models", "open_samples": "engine.data"}

__all__ = list(_ATTRS)


def __getattr__(name: str):
    if name in _ATTRS:
        # the function `engine.score` lives in the module `engine.scoring`, so no submodule
        # import ever rebinds the name
        value = getattr(importlib.import_module(_ATTRS[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"engine.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"engine.{name}":
            raise
        raise AttributeError(f"module 'engine' has no attribute {name!r}") from None
