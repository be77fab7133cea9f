"""Engine: models, sample sources, exact scoring, decoding, output shards, distributed runs.

Names are resolved lazily so that `import engine` does not import torch/transformers until used.
"""

from engine.lazy import lazy_getattr

_ATTRS = {"score": "engine.scoring", "load_model": "engine.models", "open_samples": "engine.data",
          "DecodeOptions": "engine.options", "sweep": "engine.sweeping",
          "open_sweep": "engine.sweeping", "check_profile": "engine.profiles",
          "PROFILES": "engine.profiles"}

__all__ = list(_ATTRS)

__getattr__ = lazy_getattr("engine", _ATTRS)
