"""Corpus-wide window counts of a sharded index: a k-way merge of the shards' suffix arrays.

Each shard's `window_counts(n)` groups its complete n-grams into runs of its suffix array (a run:
the suffixes that share one n-gram, contiguous in the SA; its size: the shard-local count; a
window that would cross its document's end is a run of its own with count 0). Every shard's SA
lists its runs in n-gram order, so walking the S run sequences side by side (the merge step of
a merge sort) meets the equal n-grams of different shards together: their corpus count is the
sum of their run sizes, written back over each run's positions.

Runs never span two first tokens, so the merge is cut at first-token boundaries into parts that
run in parallel (`prange`). A run's head is compared by a 64-bit key of its leading tokens, read
once per run; the full n tokens are compared only when keys tie. Work is O(N) token reads in
all (the previous method counted every shard's windows in every other shard: O(N x S) binary
searches, with each shard's windows copied into one (N/S, n) query array).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["merge_window_counts"]


@njit(cache=True, inline="always")
def _head_key(tokens, p, kq, bits):
    key = np.uint64(0)
    for j in range(kq):
        key = (key << np.uint64(bits)) | np.uint64(tokens[p + j])
    return key


@njit(cache=True, inline="always")
def _cmp_windows(ta, p, tb, q, n):
    """-1/0/+1: the n-gram at ta[p:] vs the one at tb[q:] (both complete)."""
    for j in range(n):
        a = ta[p + j]
        b = tb[q + j]
        if a != b:
            return -1 if a < b else 1
    return 0


@njit(cache=True, inline="always")
def _next_run(tokens, sa, out, base, cur, hi, s, size, head, key, kq, bits):
    """Move shard s's cursor to its next complete window (local count > 0) below hi and load
    that run's head position, size and key; size[s] = 0 when the part has none left."""
    c = cur[s]
    while c < hi and out[base + sa[c]] == 0:
        c += 1
    cur[s] = c
    size[s] = 0
    if c < hi:
        head[s] = base + sa[c]
        size[s] = out[head[s]]
        key[s] = _head_key(tokens, head[s], kq, bits)


@njit(cache=True, parallel=True)
def _merge_parts(tokens, sa, bases, out, lo, hi, n, kq, bits):
    """tokens / out: the whole corpus (shard s at offset bases[s]); sa: the shards' suffix arrays
    one after another (shard-local positions; shard s's SA indices start at bases[s] too).
    out holds every shard's local window counts; for every part r, merge the runs of the SA
    ranges [lo[r, s], hi[r, s]) of all shards and give each run the sum over the shards that
    hold the same n-gram."""
    nparts, ns = lo.shape
    for r in prange(nparts):
        cur = np.empty(ns, dtype=np.int64)
        size = np.zeros(ns, dtype=np.int64)  # 0: shard exhausted in this part
        head = np.zeros(ns, dtype=np.int64)  # corpus position of the current run's head
        key = np.zeros(ns, dtype=np.uint64)
        same = np.zeros(ns, dtype=np.bool_)
        for s in range(ns):
            cur[s] = lo[r, s]
            _next_run(tokens, sa, out, bases[s], cur, hi[r, s], s, size, head, key, kq, bits)
        while True:
            m = -1
            for s in range(ns):  # the smallest head
                if size[s] == 0:
                    continue
                if m < 0 or key[s] < key[m]:
                    m = s
                elif key[s] == key[m] and _cmp_windows(tokens, head[s], tokens, head[m], n) < 0:
                    m = s
            if m < 0:
                break
            total = 0
            for s in range(ns):  # every shard holding the same n-gram
                same[s] = size[s] > 0 and key[s] == key[m] and (
                    s == m or _cmp_windows(tokens, head[s], tokens, head[m], n) == 0
                )
                if same[s]:
                    total += size[s]
            for s in range(ns):
                if not same[s]:
                    continue
                end = cur[s] + size[s]
                if total != size[s]:
                    for t in range(cur[s], end):
                        out[bases[s] + sa[t]] = total
                cur[s] = end
                _next_run(tokens, sa, out, bases[s], cur, hi[r, s], s, size, head, key, kq, bits)


def _part_bounds(shards, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (P, S) SA index ranges: part r holds, in every shard, the suffixes whose first
    token lies in [cut_r, cut_r+1); cuts at first-token values splitting the corpus's suffixes
    into about `parts` equal shares."""
    values = np.concatenate([np.asarray(s.values, dtype=np.uint64) for s in shards])
    counts = np.concatenate([np.asarray(s.counts, dtype=np.int64) for s in shards])
    order = np.argsort(values, kind="stable")
    values, counts = values[order], np.cumsum(counts[order])
    targets = counts[-1] * np.arange(1, parts) / parts
    cuts = np.unique(values[np.searchsorted(counts, targets, side="left")])
    edges = []  # per shard: SA index of the first suffix whose first token is >= each cut
    for s in shards:
        v = np.asarray(s.values, dtype=np.uint64)
        starts = np.r_[0, np.cumsum(np.asarray(s.counts, dtype=np.int64))]
        edges.append(np.r_[0, starts[np.searchsorted(v, cuts)], s.n_tokens])
    e = np.stack(edges, axis=1).astype(np.int64)  # (P+1, S)
    return np.ascontiguousarray(e[:-1]), np.ascontiguousarray(e[1:])


def merge_window_counts(shards, out: np.ndarray, n: int, bits: int) -> None:
    """Turn `out` (N,) int64, every shard's local window counts (its `window_counts(n)`) one
    after another, into corpus-wide counts, in place. `bits`: token width for the head keys
    (bit length of the largest token id). Holds the shards' tokens and suffix arrays in memory
    at once (6 bytes/token below 2^32 tokens a shard, on top of `out`'s 8)."""
    kq = max(1, min(int(n), 64 // max(1, bits)))
    lo, hi = _part_bounds(shards, 64 * max(1, numba.get_num_threads()))
    bases = np.r_[0, np.cumsum([s.n_tokens for s in shards])].astype(np.int64)
    tokens = np.concatenate([np.asarray(s.tokens) for s in shards])
    sa = np.concatenate([np.asarray(s.sa) for s in shards])
    if sa.dtype == np.uint64:  # shards of 2^32 tokens or more: int64 keeps base + sa an integer
        sa = sa.view(np.int64)
    # part bounds are shard-local SA indices: the concatenated SA puts shard s at bases[s]
    _merge_parts(tokens, sa, bases, out, lo + bases[:-1], hi + bases[:-1], int(n), kq, int(bits))
