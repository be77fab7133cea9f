"""The demo's text: documents read, tokenized one per file, and windows drawn over them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memtax import demo_corpus
from memtax.demo.stages import bar

DEFAULT_SEED = 0
DEFAULT_START_SHARE = 0.25
# Characters of text read per tokenizer call: big enough for the Rust tokenizer's own thread
# pool to stay busy, small enough for a smooth progress bar.
_TOKENIZE_CHARS = 512 * 1024


@dataclass(frozen=True)
class TextDocument:
    """A corpus document given as text (the demo's files are `demo_corpus.CorpusFile`s)."""

    name: str
    part: str
    text: str


def read_documents(documents: Sequence, progress: bool) -> list[TextDocument]:
    """The documents' text (`.text`, or read from `.path`), in order; refuses an empty list."""
    out = []
    with bar(len(documents), "corpus: reading files", "files", progress) as b:
        for d in documents:
            text = d.text if hasattr(d, "text") else demo_corpus.read_text(d.path)
            out.append(TextDocument(str(d.name), str(d.part), text))
            b.update(1)
    if not out:
        raise ValueError("the corpus is empty: no documents given")
    return out


def tokenize_documents(tokenizer, texts: Sequence[str], *, progress: bool = True
                       ) -> list[np.ndarray]:
    """Token ids (int64, 1-D) of each text, no special tokens added. Uses the Rust tokenizer's
    batch encoder (parallel) when the tokenizer has one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer

    def encode(batch: list[str]) -> list[list[int]]:
        if backend is not None:
            return [e.ids for e in backend.encode_batch(batch, add_special_tokens=False)]
        return tokenizer(batch, add_special_tokens=False)["input_ids"]

    out: list[np.ndarray] = []
    n_tok = 0
    with bar(sum(len(t) for t in texts), "tokenize", "char", progress, unit_scale=True) as b:
        for i, j, size in _text_batches([len(t) for t in texts]):
            for ids in encode(list(texts[i:j])):
                out.append(np.asarray(ids, dtype=np.int64))
                n_tok += len(ids)
            b.update(size)
            b.set_postfix(tokens=f"{n_tok:,}", refresh=False)
    return out


def _text_batches(sizes: list[int]):
    """(start, stop, characters) of consecutive texts holding about `_TOKENIZE_CHARS` each (a
    longer text is a batch of its own)."""
    i = 0
    while i < len(sizes):
        j, size = i, 0
        while j < len(sizes) and (j == i or size + sizes[j] <= _TOKENIZE_CHARS):
            size += sizes[j]
            j += 1
        yield i, j, size
        i = j


def choose_windows(lengths, n: int, *, seed: int = DEFAULT_SEED, seq_len: int = 64,
                   start_share: float = DEFAULT_START_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct windows of `seq_len` tokens over documents of the given lengths.

    round(n * start_share) of them (at most one per document long enough) start at a document
    start, drawn without replacement among those documents; the rest are drawn uniformly without
    replacement among all other window positions of all documents. Windows never cross a
    document boundary. The draw depends only on (lengths, n, seed, seq_len, start_share).

    Returns (doc (n,), offset (n,)) int64, in corpus order (by document, then offset).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"samples must be a positive integer, got {n!r}")
    if not 0.0 <= start_share <= 1.0:
        raise ValueError(f"start_share must be in [0, 1], got {start_share!r}")
    per_doc = np.maximum(lengths - seq_len + 1, 0)
    cum = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(per_doc, out=cum[1:])
    total = int(cum[-1])
    if n > total:
        raise ValueError(
            f"samples={n} but the corpus has only {total} distinct windows of {seq_len} tokens "
            f"({int((per_doc > 0).sum())} of {lengths.size} documents are long enough)"
        )
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(per_doc > 0)
    n_start = min(int(round(n * start_share)), eligible.size)
    start_windows = np.sort(cum[rng.choice(eligible, n_start, replace=False)])
    # The rest: the r-th window position that is not an already chosen document start.
    r = np.sort(rng.choice(total - n_start, n - n_start, replace=False)).astype(np.int64)
    shifted = start_windows - np.arange(n_start, dtype=np.int64)
    rest = r + np.searchsorted(shifted, r, side="right")
    windows = np.sort(np.concatenate([start_windows, rest]))
    doc = np.searchsorted(cum, windows, side="right") - 1
    return doc.astype(np.int64), (windows - cum[doc]).astype(np.int64)


def corpus_summary(docs: Sequence[TextDocument], lengths: np.ndarray | None) -> dict:
    """Files, characters and (given each document's token count) tokens of the corpus, in total
    and per part (in first-seen order)."""
    parts = {}
    for p in dict.fromkeys(d.part for d in docs):
        sel = np.array([d.part == p for d in docs])
        parts[p] = {"files": int(sel.sum()),
                    "chars": int(sum(len(d.text) for d, s in zip(docs, sel) if s))}
        if lengths is not None:
            parts[p]["tokens"] = int(lengths[sel].sum())
    summary = {"files": len(docs), "chars": int(sum(len(d.text) for d in docs)), "parts": parts}
    if lengths is not None:
        summary["tokens"] = int(lengths.sum())
    return summary


def documents_table(docs: Sequence[TextDocument], lengths: np.ndarray, starts: np.ndarray):
    """documents.parquet: doc_id, name, part, n_chars, n_tokens, token_start."""
    import pyarrow as pa

    return pa.table({
        "doc_id": pa.array(np.arange(len(docs)), pa.int64()),
        "name": [d.name for d in docs],
        "part": [d.part for d in docs],
        "n_chars": pa.array([len(d.text) for d in docs], pa.int64()),
        "n_tokens": pa.array(lengths, pa.int64()),
        "token_start": pa.array(starts[:-1], pa.int64()),
    })
