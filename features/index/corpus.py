"""Turn any supported corpus into one token array plus document offsets.

Accepted corpora (the `corpus` of `CorpusIndex.build`):
* a 1-D integer array: one document; a 2-D array: one document per row;
* a list/tuple of 1-D integer arrays: one document each;
* a path to a `.npy` file (memory-mapped; 1-D or 2-D as above);
* a GPT-NeoX / Megatron `.bin`/`.idx` dataset (path to either file or the prefix): one document
  per sequence, read through `engine.indexed_dataset.IndexedDataset`;
* an engine sample source (`engine.data.SampleSource`): one document per sample;
* any other iterable of 1-D integer arrays: one document each.

`sequence_length=L` gives Pythia's semantics: the documents are concatenated in order and cut
into L-token training sequences (Pythia: 2049), each its own document, so that counts cover
windows inside training sequences as the paper counted them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Corpus", "load_corpus", "token_dtype"]

_DTYPES = {"uint16": np.dtype(np.uint16), "uint32": np.dtype(np.uint32)}


@dataclass
class Corpus:
    """tokens (N,) uint16|uint32 (possibly a read-only memmap) and doc_offsets (D+1,) int64."""

    tokens: np.ndarray
    doc_offsets: np.ndarray


def token_dtype(dtype, max_token: int | None) -> np.dtype:
    """The index's token dtype: the declared one (uint16/uint32) or the narrowest that fits."""
    if dtype is None:
        if max_token is None or max_token < 2**16:
            return _DTYPES["uint16"]
        return _DTYPES["uint32"]
    dt = np.dtype(dtype)
    if dt not in _DTYPES.values():
        raise ValueError(f"token dtype must be uint16 or uint32, got {dt}")
    return dt


def _check_tokens(arr: np.ndarray, what: str, dtype) -> tuple[int, int]:
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer token ids, got dtype {arr.dtype}")
    if arr.size == 0:
        return 0, -1
    lo, hi = int(arr.min()), int(arr.max())
    limit = np.iinfo(dtype).max if dtype is not None else 2**32 - 1
    if lo < 0 or hi > limit:
        name = np.dtype(dtype) if dtype is not None else "uint32"
        raise ValueError(
            f"{what} has token ids in [{lo}, {hi}], which do not fit the declared token dtype "
            f"{name} (range [0, {limit}])"
        )
    return lo, hi


def _from_docs(docs: list[np.ndarray], dtype, what: str) -> Corpus:
    hi = -1
    for k, d in enumerate(docs):
        if d.ndim != 1:
            raise ValueError(f"{what}: document {k} must be 1-D, got shape {d.shape}")
        hi = max(hi, _check_tokens(d, f"{what} document {k}", dtype)[1])
    dt = token_dtype(dtype, hi)
    sizes = np.array([d.shape[0] for d in docs], dtype=np.int64)
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    tokens = np.empty(int(offsets[-1]), dtype=dt)
    for d, a, b in zip(docs, offsets[:-1], offsets[1:]):
        tokens[a:b] = d
    return Corpus(tokens, offsets)


def _from_array(arr: np.ndarray, dtype, what: str) -> Corpus:
    if arr.ndim == 2:
        hi = _check_tokens(arr, what, dtype)[1]
        rows, cols = arr.shape
        tokens = np.ascontiguousarray(arr.reshape(-1), dtype=token_dtype(dtype, hi))
        return Corpus(tokens, np.arange(rows + 1, dtype=np.int64) * cols)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D (one document) or 2-D (one per row), got {arr.shape}")
    hi = _check_tokens(arr, what, dtype)[1]
    dt = token_dtype(dtype, hi)
    tokens = arr if arr.dtype == dt else arr.astype(dt)
    return Corpus(tokens, np.array([0, arr.shape[0]], dtype=np.int64))


def _from_path(path: Path, dtype) -> Corpus:
    from engine.indexed_dataset import IndexedDataset, is_indexed_dataset

    if path.suffix == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {str(path)!r} not found")
        return _from_array(np.load(path, mmap_mode="r"), dtype, str(path))
    if is_indexed_dataset(path):
        ds = IndexedDataset(path)
        sizes = ds.sizes.astype(np.int64)
        offsets = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        contiguous = np.array_equal(ds.pointers, offsets[:-1] * ds.dtype.itemsize)
        if contiguous and offsets[-1] == ds.n_tokens:
            tok = ds.tokens
            hi = _check_tokens(tok, str(path), dtype)[1]
            dt = token_dtype(dtype, hi)
            return Corpus(tok if tok.dtype == dt else tok.astype(dt), offsets)
        return _from_docs(list(ds), dtype, str(path))
    if not path.exists():
        raise FileNotFoundError(
            f"corpus {str(path)!r} not found (expected a .npy file or a .bin/.idx dataset)"
        )
    raise ValueError(
        f"corpus {str(path)!r}: unsupported file type, expected a .npy file or a GPT-NeoX "
        f".bin/.idx dataset"
    )


def _cut(c: Corpus, length: int) -> Corpus:
    n = c.tokens.shape[0]
    offsets = np.arange(0, n, length, dtype=np.int64)
    return Corpus(c.tokens, np.append(offsets, np.int64(n)))


def load_corpus(corpus, *, dtype=None, sequence_length: int | None = None) -> Corpus:
    """Normalize `corpus` (see module docstring) to a `Corpus`; raises ValueError for an empty
    corpus, non-integer or negative tokens, and tokens that do not fit `dtype`."""
    if sequence_length is not None and (
        not isinstance(sequence_length, int | np.integer) or sequence_length < 1
    ):
        raise ValueError(f"sequence_length must be a positive integer, got {sequence_length!r}")
    if isinstance(corpus, str | os.PathLike):
        c = _from_path(Path(corpus), dtype)
    elif isinstance(corpus, np.ndarray):
        c = _from_array(corpus, dtype, "corpus")
    elif isinstance(corpus, list | tuple):
        c = _from_docs([np.asarray(d) for d in corpus], dtype, "corpus")
    elif hasattr(corpus, "batches") and hasattr(corpus, "seq_len"):
        # an engine sample source: each sample (one row of seq_len tokens) is a document
        parts = [np.asarray(toks) for _, toks in corpus.batches(8192)]
        rows = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.int64)
        c = _from_array(rows, dtype, repr(corpus))
    elif hasattr(corpus, "__iter__"):
        c = _from_docs([np.asarray(d).reshape(-1) for d in corpus], dtype, "corpus")
    else:
        raise ValueError(
            f"unsupported corpus of type {type(corpus).__name__}: expected a token array, a list "
            f"of arrays, a .npy path, a .bin/.idx dataset or an iterable of token arrays"
        )
    if c.tokens.shape[0] == 0:
        raise ValueError("the corpus is empty (0 tokens): nothing to index")
    if sequence_length is not None:
        c = _cut(c, int(sequence_length))
    # empty documents carry no n-grams: drop them so that offsets strictly increase
    keep = np.flatnonzero(np.diff(c.doc_offsets) > 0)
    if keep.shape[0] != c.doc_offsets.shape[0] - 1:
        c = Corpus(c.tokens, np.append(c.doc_offsets[keep], c.doc_offsets[-1]))
    return c
