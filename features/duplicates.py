"""Duplicate counts of each sample's continuation, prompt and whole sequence in the corpus.

    d = duplicate_counts(index, tokens, prefix_len=32)   # tokens (N, T) -> dict of (N,) int64
    d["duplicates"]          # occurrences of tokens[:, 32:] (the paper's sequence_duplicates)
    d["prompt_duplicates"]   # occurrences of tokens[:, :32]
    d["sample_duplicates"]   # occurrences of the whole row

`index` is anything with `count(queries (Q, n) ints) -> (Q,) int64` (a `features.CorpusIndex`).
Which occurrences count is the index's semantics: an index built with `sequence_length=2049`
counts windows inside each 2049-token training sequence (Pythia's, the paper's); one built over
documents counts inside documents. Identical queries in a chunk are counted once (memorized
data repeats a lot), so a chunk costs one `count` call per distinct row.

Paper profile: the paper's counts skip the last window of every 2049-token training sequence
(semantic-memorization `working_dirs/orz/sequence_duplication/save_sequence_hashes.py` hashes
windows starting at `range(2049 - ngrams)`, so the window ending at the sequence's last token is
never counted). Here every count leaves out the occurrences that end at their document's last
token, `index.count(q) - index.count_ending(q)`: for an index built with
`sequence_length=2049` that is exactly the paper's rule; for an index over documents, each
document's last window is left out the same way. The paper counted only the continuation; the
prompt and whole-sample counts follow the same rule so the three stay comparable.
"""

from __future__ import annotations

import numpy as np

from engine.profiles import check_profile

__all__ = ["duplicate_counts", "COLUMNS", "DEFINITIONS", "PAPER_DEFINITIONS"]

COLUMNS = ("duplicates", "prompt_duplicates", "sample_duplicates")
DEFINITIONS = {
    "duplicates": "exact corpus occurrences of the continuation tokens[prefix_len:] "
    "(the paper's sequence_duplicates; window semantics = the index's documents)",
    "prompt_duplicates": "exact corpus occurrences of the prompt tokens[:prefix_len]",
    "sample_duplicates": "exact corpus occurrences of the whole sample",
}
_SKIP_LAST = ("; occurrences ending at their document's last token (the last window of each "
              "training sequence) not counted, as the paper's save_sequence_hashes.py")
PAPER_DEFINITIONS = {c: d + _SKIP_LAST for c, d in DEFINITIONS.items()}


_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): a multiplicative hash


def _distinct_rows(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, inverse) of a 2-D integer array: rows[inverse] == q.

    Rows are hashed to one uint64 each (vectorised polynomial hash, wrapping arithmetic), the
    hashes sorted, and equal-hash neighbours compared in full, so the result is exact; a hash
    collision between different rows (never seen in practice) falls back to a lexsort. About
    10x faster than np.lexsort over 32-64 key columns or np.unique(axis=0).
    """
    n = q.shape[0]
    if n <= 1:
        return q, np.zeros(n, dtype=np.int64)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(q.shape[1]):
            h = (h * _MULT) ^ q[:, j].astype(np.uint64)
            h ^= h >> np.uint64(29)
    order = np.argsort(h, kind="stable")
    hs, s = h[order], q[order]
    same_hash = hs[1:] == hs[:-1]
    same_row = np.all(s[1:] == s[:-1], axis=1)
    if np.any(same_hash & ~same_row):
        # a collision: equal hashes for different rows may not be adjacent after sorting
        order = np.lexsort(q.T[::-1])
        s = q[order]
        same_row = np.all(s[1:] == s[:-1], axis=1)
    new = np.ones(n, dtype=bool)
    new[1:] = ~same_row
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return s[new], inverse


def _checked(counts, rows: np.ndarray, method: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (rows.shape[0],):
        raise ValueError(
            f"index.{method} returned shape {counts.shape} for {rows.shape[0]} queries"
        )
    return counts


def _count(index, q: np.ndarray, tokenizer, skip_last: bool) -> np.ndarray:
    rows, inverse = _distinct_rows(np.ascontiguousarray(q))
    kw = {"tokenizer": tokenizer} if tokenizer is not None else {}
    counts = _checked(index.count(rows, **kw), rows, "count")
    if skip_last:
        counts = counts - _checked(index.count_ending(rows, **kw), rows, "count_ending")
    return counts[inverse]


def duplicate_counts(index, tokens: np.ndarray, *, prefix_len: int = 32, tokenizer=None,
                     profile: str = "default") -> dict[str, np.ndarray]:
    """tokens (N, T) ints with prefix_len < T -> {"duplicates", "prompt_duplicates",
    "sample_duplicates"}: (N,) int64 corpus counts. `tokenizer` (name or object) is passed to
    `index.count` so an index built for another vocabulary is refused. `profile="paper"`: the
    occurrences that end at their document's last token are left out (module docstring); the
    index must then offer `count_ending` (a `CorpusIndex` does)."""
    skip_last = check_profile(profile) == "paper"
    if skip_last and not hasattr(index, "count_ending"):
        raise ValueError(f"the paper profile's duplicate counts need an index with count_ending "
                         f"(a features.CorpusIndex), got {type(index).__name__}")
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be a (N, T) integer array, got {tokens.dtype} {tokens.shape}")
    if not 0 < prefix_len < tokens.shape[1]:
        raise ValueError(
            f"prefix_len must be in [1, {tokens.shape[1] - 1}] for {tokens.shape[1]}-token "
            f"samples, got {prefix_len}"
        )
    if tokens.shape[0] == 0:
        return {c: np.zeros(0, dtype=np.int64) for c in COLUMNS}
    return {
        "duplicates": _count(index, tokens[:, prefix_len:], tokenizer, skip_last),
        "prompt_duplicates": _count(index, tokens[:, :prefix_len], tokenizer, skip_last),
        "sample_duplicates": _count(index, tokens, tokenizer, skip_last),
    }
