"""What a suite is made of: `SuiteConfig` (sizes, tokenizer, stream, recipe, checkpoints), the
size presets, and the checkpoint schedule.

A size is `(layers, hidden, heads)`; `sizes` maps a model name to one. Presets are named after
their parameter count the way Pythia's are; a size may also be written "L4-H128-A4".
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

__all__ = [
    "SuiteConfig",
    "SIZE_PRESETS",
    "parse_sizes",
    "checkpoint_steps",
    "DEMO_CONFIG",
]

# name -> (layers, hidden, heads); hidden / heads is the head width, 4 * hidden the MLP width.
SIZE_PRESETS: dict[str, tuple[int, int, int]] = {
    "micro": (2, 32, 2),
    "tiny": (2, 64, 2),
    "mini": (2, 96, 4),
    "small": (4, 128, 4),
    "medium": (4, 192, 6),
    "large": (6, 256, 8),
}

_SIZE_SPEC = re.compile(r"^L(\d+)-H(\d+)-A(\d+)$", re.IGNORECASE)
_AUTOCAST = ("auto", "bf16", "off")
_DECAY = ("cosine", "linear")


def _parse_one(name: str, value) -> tuple[int, int, int]:
    if isinstance(value, str):
        if value in SIZE_PRESETS:
            return SIZE_PRESETS[value]
        m = _SIZE_SPEC.match(value.strip())
        if not m:
            raise ValueError(
                f"size {name!r}: {value!r} is neither a preset {sorted(SIZE_PRESETS)} nor "
                f"'L<layers>-H<hidden>-A<heads>'"
            )
        value = tuple(int(g) for g in m.groups())
    try:
        layers, hidden, heads = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"size {name!r}: expected (layers, hidden, heads), a preset or 'L4-H128-A4', "
            f"got {value!r}"
        ) from None
    if min(layers, hidden, heads) < 1 or hidden % heads or (hidden // heads) % 2:
        raise ValueError(
            f"size {name!r}: layers, hidden and heads must be positive, hidden a multiple of "
            f"heads and the head width even (rotary), got {(layers, hidden, heads)}"
        )
    return layers, hidden, heads


def parse_sizes(sizes) -> dict[str, tuple[int, int, int]]:
    """Sizes as `{name: (layers, hidden, heads)}` from a dict, a list of preset names or
    'NAME=L4-H128-A4' items, or a comma-separated string of the same. Raises ValueError."""
    if isinstance(sizes, str):
        sizes = [s for s in (p.strip() for p in sizes.split(",")) if s]
    if isinstance(sizes, dict):
        items = list(sizes.items())
    elif isinstance(sizes, list | tuple):
        items = []
        for s in sizes:
            if not isinstance(s, str):
                raise ValueError(f"sizes: expected names or 'name=L4-H128-A4', got {s!r}")
            name, _, spec = s.partition("=")
            items.append((name.strip(), spec.strip() or name.strip()))
    else:
        raise ValueError(f"sizes: expected a dict, a list or a string, got {sizes!r}")
    if not items:
        raise ValueError("sizes: at least one model size is needed, got none")
    out = {}
    for name, value in items:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"size name {name!r} must be letters, digits, '_', '.' or '-'")
        if name in out:
            raise ValueError(f"size name {name!r} given twice")
        out[name] = _parse_one(name, value)
    return out


@dataclass(frozen=True)
class SuiteConfig:
    """Everything that decides a suite's contents (two equal configs on one corpus give the
    same suite, token for token and weight for weight).

    sizes: model name -> (layers, hidden, heads) (see `parse_sizes`); vocab_size: BPE tokenizer
    size including the end-of-text token; seq_len: tokens per training sequence (Pythia: 2049);
    batch_size: sequences per step; epochs: passes over the unique sequences (Pythia deduped
    ~1.5; each pass in its own seeded order); lr, min_lr_ratio, warmup (share of steps),
    decay ("cosine" or "linear"), weight_decay, betas, grad_clip: the AdamW recipe;
    corpus_share: the seeded share of documents used; max_doc_chars: keep only each document's
    first characters (None: whole documents); max_sequences: cap on unique sequences;
    checkpoints: evenly spaced checkpoints (the last is the final step); log_checkpoints: also
    steps 1, 2, 4, ... below the first evenly spaced one (step 0 is always saved);
    autocast: "auto" (bf16 where the CPU multiplies bf16 natively), "bf16" or "off".
    """

    sizes: dict = field(default_factory=lambda: {"tiny": SIZE_PRESETS["tiny"]})
    vocab_size: int = 2048
    seq_len: int = 129
    batch_size: int = 16
    epochs: float = 1.5
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: float = 0.05
    decay: str = "cosine"
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 1234
    corpus_share: float = 1.0
    max_doc_chars: int | None = None
    max_sequences: int | None = None
    checkpoints: int = 4
    log_checkpoints: bool = True
    autocast: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "sizes", parse_sizes(self.sizes))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        self._check_ints()
        self._check_floats()
        if self.decay not in _DECAY:
            raise ValueError(f"decay must be one of {_DECAY}, got {self.decay!r}")
        if self.autocast not in _AUTOCAST:
            raise ValueError(f"autocast must be one of {_AUTOCAST}, got {self.autocast!r}")

    def _check_ints(self):
        lows = {"vocab_size": 257, "seq_len": 2, "batch_size": 1, "checkpoints": 1}
        for name, low in lows.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.vocab_size > 65535:
            raise ValueError(f"vocab_size must fit uint16 tokens (<= 65535), got {self.vocab_size}")
        for name in ("max_sequences", "max_doc_chars"):
            m = getattr(self, name)
            if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {m!r}")

    def _check_floats(self):
        checks = {
            "epochs": (self.epochs, 0.0, math.inf, False),
            "lr": (self.lr, 0.0, math.inf, False),
            "min_lr_ratio": (self.min_lr_ratio, 0.0, 1.0, True),
            "warmup": (self.warmup, 0.0, 1.0, True),
            "weight_decay": (self.weight_decay, 0.0, math.inf, True),
            "grad_clip": (self.grad_clip, 0.0, math.inf, True),
            "corpus_share": (self.corpus_share, 0.0, 1.0, False),
        }
        for name, (v, lo, hi, lo_ok) in checks.items():
            ok = isinstance(v, int | float) and not isinstance(v, bool) and v <= hi
            ok = ok and (v >= lo if lo_ok else v > lo)
            if not ok:
                bound = "[" if lo_ok else "("
                raise ValueError(f"{name} must be a number in {bound}{lo}, {hi}], got {v!r}")

    def to_dict(self) -> dict:
        """JSON-ready dict (sizes as lists); `from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["sizes"] = {k: list(v) for k, v in self.sizes.items()}
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SuiteConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SuiteConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> SuiteConfig:
        return dataclasses.replace(self, **changes)


def checkpoint_steps(total_steps: int, evenly: int, log_spaced: bool) -> list[int]:
    """Pythia's schedule in small: step 0, then (log_spaced) 1, 2, 4, ... below the first evenly
    spaced step, then `evenly` steps spaced evenly up to and including `total_steps`."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    evenly = min(evenly, total_steps)
    even = [round(total_steps * (i + 1) / evenly) for i in range(evenly)]
    steps = {0, *even}
    if log_spaced:
        p = 1
        while p < even[0]:
            steps.add(p)
            p *= 2
    return sorted(steps)


# The suite `make demo` builds on this machine's own text (the standard library's source and the
# installed packages' license and metadata files, each document cut to its first 2,000
# characters: every license copy stays, so recitation has its duplicates, and the stream stays
# small enough to train two sizes in a few minutes on 2 cores). Chosen by measurement: the
# medium model's final checkpoint memorizes ~9% of the training sequences' 32 + 32 samples.
DEMO_CONFIG = SuiteConfig(
    sizes={"mini": SIZE_PRESETS["mini"], "medium": SIZE_PRESETS["medium"]},
    vocab_size=2048,
    seq_len=129,
    batch_size=16,
    epochs=1.5,
    lr=4e-3,
    max_doc_chars=2000,
    checkpoints=4,
    log_checkpoints=False,  # steps 1, 2, 4, ... memorize nothing here; the demo scores each
)
