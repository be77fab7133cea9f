"""The training stream as Pythia distributes it: the documents, each followed by the end-of-text
token, joined and cut into fixed-length sequences (the tail that does not fill one is dropped);
each epoch visits every sequence once in its own seeded order; the whole run's sequences are
written in training order as a GPT-NeoX `.bin/.idx` dataset, so step c has seen sequences
[0, c * batch_size)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.indexed_dataset import write_indexed_dataset

__all__ = ["tokenize_documents", "cut_sequences", "training_order", "write_stream"]


def tokenize_documents(tokenizer, docs: Sequence[str], *, batch: int = 256) -> list[np.ndarray]:
    """Token ids of each document (no special tokens added), uint16 arrays."""
    out = []
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    for i in range(0, len(docs), batch):
        for enc in backend.encode_batch(list(docs[i : i + batch]), add_special_tokens=False):
            out.append(np.asarray(enc.ids, dtype=np.uint16))
    return out


def cut_sequences(doc_tokens: Sequence[np.ndarray], eot_id: int, seq_len: int) -> np.ndarray:
    """(n, seq_len) array: documents joined, each followed by `eot_id`, cut into sequences.
    Raises ValueError when the corpus holds fewer than seq_len tokens."""
    parts = []
    eot = np.asarray([eot_id], dtype=np.uint16)
    for t in doc_tokens:
        parts.extend((t, eot))
    flat = np.concatenate(parts) if parts else np.zeros(0, np.uint16)
    n = flat.size // seq_len
    if n == 0:
        raise ValueError(
            f"the corpus is smaller than one sequence: {flat.size} tokens (end-of-text tokens "
            f"included), seq_len is {seq_len}"
        )
    return flat[: n * seq_len].reshape(n, seq_len)


def training_order(n_sequences: int, epochs: float, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the unique sequences in training order: one seeded permutation per epoch
    (numpy's default_rng(seed), drawn in epoch order), concatenated, cut to whole batches of
    the `epochs * n_sequences` sequences trained on. Raises ValueError if not one batch fits."""
    total = int(n_sequences * epochs) // batch_size * batch_size
    if total < batch_size:
        raise ValueError(
            f"the corpus gives {n_sequences} sequences, {epochs} epochs of which do not fill one "
            f"batch of {batch_size}; use a larger corpus, more epochs or a smaller batch_size"
        )
    rng = np.random.default_rng(seed)
    n_perm = -(-total // n_sequences)
    return np.concatenate([rng.permutation(n_sequences) for _ in range(n_perm)])[:total]


def write_stream(prefix: str | os.PathLike, sequences: np.ndarray, order: np.ndarray) -> Path:
    """Write `sequences[order]` as `PREFIX.bin/.idx` (atomically); returns the .bin path."""
    bin_path, _ = write_indexed_dataset(prefix, sequences[order], dtype=np.uint16)
    return bin_path


