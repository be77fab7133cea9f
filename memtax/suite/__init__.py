"""The suite builder: the paper's setting in small. A tokenizer, a pre-shuffled training stream
(GPT-NeoX .bin/.idx, step c has seen sequences [0, c * batch_size)), GPT-NeoX models of several
sizes with checkpoints as Hugging Face folders selectable as `<root>/models/<name>@step<N>`, and
a manifest.

    from memtax import suite
    s = suite.build_suite(docs, "out/suite", config=suite.SuiteConfig(sizes=["tiny", "small"]))
    s = suite.open_suite("out/suite")
    s.checkpoint("small", 64), s.spec("small"), s.sequences_seen(64), s.models
"""

from memtax.suite.build import build_suite
from memtax.suite.config import (
    DEMO_CONFIG,
    SIZE_PRESETS,
    SuiteConfig,
    checkpoint_steps,
    parse_sizes,
)
from memtax.suite.handle import Suite, open_suite

__all__ = [
    "build_suite",
    "open_suite",
    "Suite",
    "SuiteConfig",
    "DEMO_CONFIG",
    "SIZE_PRESETS",
    "parse_sizes",
    "checkpoint_steps",
]
