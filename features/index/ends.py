"""Occurrences of n-gram queries that end exactly at their document's last token.

The paper's duplicate counts skip one window per training sequence: its hashing loop
(semantic-memorization `working_dirs/orz/sequence_duplication/save_sequence_hashes.py`,
`for i in range(2049 - args.ngrams)`) starts windows at 0 .. 2048 - n - 1 of each 2049-token
sequence, so the window that ends at the sequence's last token is never counted.
`CorpusIndex.count_ending` gives the number of such windows per query, so that
`count - count_ending` is the paper's count (`features.duplicates`, paper profile).

How: the suffix array reads every suffix as its document's tokens then a sentinel smaller than
every token (suffix_array.py). Among the suffixes in q's SA range (all start with q), those
whose document ends right after q read "q, sentinel" and so sort before the others: they are a
leading run of the range, found by one binary search on "tokens left in the document == n".
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from features.index.query import _doc_end, _one_range

__all__ = ["count_ending"]


@njit(cache=True, parallel=True)
def _count_ending(tokens, sa, queries, bucket_values, bucket_starts, dense, multi, offsets,
                  block_first, shift):
    nq, n = queries.shape
    out = np.zeros(nq, dtype=np.int64)
    for r in prange(nq):
        lo, hi = _one_range(tokens, sa, queries[r], bucket_values, bucket_starts, dense, multi,
                            offsets, block_first, shift)
        a = lo
        b = hi
        while a < b:  # first SA index of the range whose suffix runs past the query
            mid = (a + b) >> 1
            p = np.int64(sa[mid])
            if _doc_end(offsets, block_first, shift, p) - p == n:
                a = mid + 1
            else:
                b = mid
        out[r] = a - lo
    return out


def count_ending(shard, queries: np.ndarray) -> np.ndarray:
    """(Q,) int64: for each row of `queries` (Q, n) (the shard's token dtype, C order), how
    many of the shard's documents end with it."""
    if queries.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return _count_ending(shard.tokens, shard.sa, np.ascontiguousarray(queries),
                         shard.bucket_values, shard.bucket_starts, shard.dense,
                         *shard.docs.arrays)
