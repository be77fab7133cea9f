"""One index folder (a whole small corpus, or one shard of a big one): build it, open it, query it.

Building runs in two steps so that shard builds can happen in other processes or on other
machines: `write_inputs` stores the shard's tokens and document offsets, `build_folder` (a plain
function of a folder path, picklable for process pools and Ray) computes unigram counts and the
suffix array from those files and writes the header last.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numba import njit

from features.index import format as fmt
from features.index.lcp import window_counts
from features.index.query import DocTable, count_batch, sa_range, sample_keys
from features.index.suffix_array import KEY_BATCHES, build_suffix_array

__all__ = ["write_inputs", "build_folder", "Shard", "DENSE_LIMIT"]

# Token values below this get a dense (alphabet,) bucket table; above, values are remapped
# to dense ranks for the build and looked up by binary search at query time.
DENSE_LIMIT = 1 << 24


def write_inputs(folder: Path, tokens: np.ndarray, offsets: np.ndarray) -> dict:
    """Write tokens.bin and doc_offsets.bin (offsets rebased to start at 0); return their
    header entries (with checksums), which `build_folder` may reuse."""
    return {
        "tokens": fmt.write_array(folder, "tokens", tokens),
        "doc_offsets": fmt.write_array(
            folder, "doc_offsets", np.asarray(offsets, dtype=np.int64) - offsets[0]
        ),
    }


@njit(cache=True)
def _bincount(tokens, size):
    out = np.zeros(size, dtype=np.int64)
    for i in range(tokens.shape[0]):
        out[tokens[i]] += 1
    return out


def _unigrams(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(distinct values, counts, dense ranks of tokens or None when values are small)."""
    hi = int(tokens.max())
    if hi < DENSE_LIMIT:
        full = _bincount(tokens, hi + 1)
        values = np.flatnonzero(full).astype(tokens.dtype)
        return values, full[values.astype(np.int64)], None
    # big token ids (uint32 vocabularies): sort + diff (np.unique is slow on big arrays)
    s = np.sort(tokens)
    head = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    values = s[head]
    counts = np.diff(np.r_[head, s.shape[0]]).astype(np.int64)
    del s
    dense = np.searchsorted(values, tokens).astype(np.uint32)
    return values, counts, dense


def build_folder(folder: str, meta: dict, progress=None, inputs=None, *,
                 key_batches: int = KEY_BATCHES) -> dict:
    """Build the suffix array of folder/tokens.bin and write the folder's header. Returns the
    header. Safe to call in another process (only the folder path and plain dicts travel).
    `inputs`: (tokens, rebased offsets, write_inputs' entries) when the caller still holds
    them in memory, which saves re-reading and re-checksumming the files. `key_batches`: see
    `build_suffix_array`."""
    folder = Path(folder)
    dtype = np.dtype(meta["token_dtype"])
    if inputs is None:
        tokens = np.fromfile(folder / "tokens.bin", dtype=dtype)
        offsets = np.fromfile(folder / "doc_offsets.bin", dtype=np.int64)
        entries = {
            "tokens": fmt.array_entry(folder, "tokens", dtype, tokens.shape),
            "doc_offsets": fmt.array_entry(folder, "doc_offsets", np.int64, offsets.shape),
        }
    else:
        tokens, offsets, entries = inputs
        tokens = np.ascontiguousarray(tokens, dtype=dtype)
    t0 = time.perf_counter()
    values, counts, dense = _unigrams(tokens)
    src = tokens if dense is None else dense
    alphabet = int(values[-1]) + 1 if dense is None else int(values.shape[0])
    sa = build_suffix_array(src, offsets, alphabet=alphabet, progress=progress,
                            key_batches=key_batches)
    del dense, src
    build_s = time.perf_counter() - t0
    arrays = {
        "tokens": entries["tokens"],
        "doc_offsets": entries["doc_offsets"],
        "sa": fmt.write_array(folder, "sa", sa),
        "unigram_values": fmt.write_array(folder, "unigram_values", values),
        "unigram_counts": fmt.write_array(folder, "unigram_counts", counts),
    }
    shard_meta = dict(meta)
    shard_meta.update(
        n_tokens=int(tokens.shape[0]),
        n_docs=int(offsets.shape[0] - 1),
        max_token=int(values[-1]),
        sa_build_seconds=round(build_s, 3),
    )
    header = {
        "magic": fmt.MAGIC,
        "format_version": fmt.FORMAT_VERSION,
        "kind": "single",
        "arrays": arrays,
        "meta": shard_meta,
    }
    fmt.write_header(folder, header)
    return header


class Shard:
    """A built single index folder, memory-mapped; positions are local to the shard."""

    def __init__(self, folder: str | Path, *, verify: bool = True, header: dict | None = None):
        self.folder = Path(folder)
        self.header = fmt.read_header(self.folder) if header is None else header
        if self.header["kind"] != "single":
            raise ValueError(f"{str(self.folder)!r} is a sharded index, not a single shard")
        arrays = self.header.get("arrays", {})
        need = ["tokens", "sa", "doc_offsets", "unigram_values", "unigram_counts"]
        missing = [a for a in need if a not in arrays]
        if missing:
            raise ValueError(f"corpus index {str(self.folder)!r}: header lacks arrays {missing}")
        a = {k: fmt.open_array(self.folder, arrays[k], verify=verify) for k in need}
        self.meta = self.header["meta"]
        self.tokens, self.sa, self.offsets = a["tokens"], a["sa"], a["doc_offsets"]
        self.values, self.counts = a["unigram_values"], a["unigram_counts"]
        n = self.tokens.shape[0]
        if (
            self.sa.shape[0] != n
            or self.offsets.shape[0] < 2
            or self.offsets[0] != 0
            or self.offsets[-1] != n
            or int(self.counts.sum()) != n
            or self.tokens.dtype.kind != "u"
            or self.sa.dtype.kind != "u"
        ):
            raise ValueError(
                f"corpus index {str(self.folder)!r} is inconsistent: array sizes or "
                f"dtypes disagree with each other"
            )
        self._check_meta(n)
        self.docs = DocTable(np.asarray(self.offsets), n)
        hi = int(self.values[-1])
        self.dense = hi < DENSE_LIMIT
        if self.dense:
            full = np.zeros(hi + 2, dtype=np.int64)
            full[self.values.astype(np.int64) + 1] = self.counts
            self.bucket_starts = np.cumsum(full)
        else:
            self.bucket_starts = np.r_[0, np.cumsum(self.counts)].astype(np.int64)
        self.bucket_values = np.ascontiguousarray(self.values)
        self._sampled = None

    def _check_meta(self, n: int) -> None:
        """The header's numbers must describe these arrays (an edited header is refused)."""
        top = int(self.values[-1]) if self.values.shape[0] else -1
        checks = [("n_tokens", self.meta.get("n_tokens"), n),
                  ("n_docs", self.meta.get("n_docs"), int(self.offsets.shape[0]) - 1),
                  ("max_token", self.meta.get("max_token"), top)]
        for key, recorded, actual in checks:
            if recorded is not None and recorded != actual:
                raise ValueError(f"corpus index {str(self.folder)!r}: header says {key} = "
                                 f"{recorded}, its arrays hold {actual}")
        if top >= int(self.meta["vocab_size"]):
            raise ValueError(f"corpus index {str(self.folder)!r}: header says vocab_size = "
                             f"{self.meta['vocab_size']}, but the corpus holds token id {top}")

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def count(self, queries: np.ndarray) -> np.ndarray:
        if self._sampled is None and queries.shape[0] >= 1000:
            # every 32nd suffix's packed leading tokens: built on the first big batch
            self._sampled = sample_keys(self.tokens, self.sa, int(self.values[-1]) + 1, self.docs)
        return count_batch(
            self.tokens,
            self.sa,
            queries,
            self.bucket_values,
            self.bucket_starts,
            self.dense,
            self.docs,
            self._sampled,
        )

    def sa_range(self, query: np.ndarray) -> tuple[int, int]:
        return sa_range(
            self.tokens,
            self.sa,
            query,
            self.bucket_values,
            self.bucket_starts,
            self.dense,
            self.docs,
        )

    def window_counts(self, n: int) -> np.ndarray:
        return window_counts(self.tokens, self.sa, np.asarray(self.offsets), n)
