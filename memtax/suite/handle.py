"""`Suite`: a built suite on disk, read through its manifest (see manifest.py for the file)."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from memtax.suite.config import SuiteConfig
from memtax.suite.manifest import read_manifest

__all__ = ["Suite", "open_suite"]


class Suite:
    """A suite folder: `tokenizer/` (Hugging Face tokenizer), `stream/document.bin/.idx` (the
    training sequences in training order), `models/<name>/step<N>/` (Hugging Face checkpoints)
    and `suite.json` (the manifest). Step c of every model has seen sequences [0, c*batch)."""

    def __init__(self, root: str | os.PathLike, manifest: dict | None = None):
        self.root = Path(root)
        self.manifest = manifest if manifest is not None else read_manifest(self.root)
        self.config = SuiteConfig.from_dict(self.manifest["identity"]["config"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    @property
    def stream_prefix(self) -> Path:
        return self.root / "stream" / "document"

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def eot_id(self) -> int:
        return int(self.manifest["tokenizer"]["eot_id"])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def total_steps(self) -> int:
        return int(self.manifest["stream"]["steps"])

    @property
    def models(self) -> dict[str, list[int]]:
        """Model name -> saved checkpoint steps, ascending."""
        return {n: sorted(m["steps"]) for n, m in self.manifest.get("models", {}).items()}

    def _steps(self, name: str) -> list[int]:
        models = self.models
        if name not in models:
            raise ValueError(f"model {name!r} is not in suite {str(self.root)!r}; it has "
                             f"{sorted(models)}")
        if not models[name]:
            raise ValueError(f"model {name!r} has no checkpoint yet")
        return models[name]

    def checkpoint(self, name: str, step: int | None = None) -> Path:
        """Hugging Face folder of model `name` at `step` (None: the last saved checkpoint)."""
        steps = self._steps(name)
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ValueError(f"model {name!r} has no checkpoint at step {step!r}; saved steps: "
                             f"{steps}")
        return self.root / "models" / name / f"step{int(step)}"

    def spec(self, name: str, step: int | None = None) -> str:
        """`<root>/models/<name>@step<N>`, the revision syntax of engine.load_model."""
        folder = self.checkpoint(name, step)
        return f"{folder.parent}@{folder.name}"

    def sequences_seen(self, step: int) -> int:
        """Sequences trained on before checkpoint `step`: [0, step * batch_size)."""
        if not isinstance(step, int | np.integer) or not 0 <= step <= self.total_steps:
            raise ValueError(f"step must be an integer in [0, {self.total_steps}], got {step!r}")
        return int(step) * self.batch_size

    @cached_property
    def stream(self):
        """The training stream as an engine IndexedDataset."""
        from engine.indexed_dataset import IndexedDataset

        return IndexedDataset(self.stream_prefix)

    def sequences(self) -> np.ndarray:
        """(sequences, seq_len) view of the stream in training order."""
        return self.stream.tokens.reshape(-1, self.seq_len)

    def training_samples(self, length: int = 64, limit: int | None = None,
                         seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(sequence indices, (n, length) int64 tokens): the first `length` tokens of training
        sequences (Pythia's samples), all of them or `limit` drawn with `seed` (sorted)."""
        seqs = self.sequences()
        if not 1 <= length <= self.seq_len:
            raise ValueError(f"length must be in [1, {self.seq_len}], got {length}")
        ids = np.arange(len(seqs))
        if limit is not None and limit < len(ids):
            ids = np.sort(np.random.default_rng(seed).choice(len(ids), limit, replace=False))
        return ids, seqs[ids, :length].astype(np.int64)

    def tokenizer(self):
        from memtax.suite.tokenizer import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)

    def __repr__(self) -> str:
        return (f"Suite({str(self.root)!r}, models={self.models}, seq_len={self.seq_len}, "
                f"batch_size={self.batch_size}, complete={self.complete})")


def open_suite(root: str | os.PathLike, *, require_complete: bool = True) -> Suite:
    """Open a built suite. FileNotFoundError if `root` is missing; ValueError if it is not a
    suite, or (require_complete) its build has not finished."""
    s = Suite(root)
    if require_complete and not s.complete:
        raise ValueError(f"the suite build in {str(root)!r} has not finished; run the build "
                         f"again with the same corpus and config to resume it")
    return s
