"""LCP arrays (Kasai) and per-position n-gram counts from a suffix array, in Numba.

All LCPs are of document-truncated suffixes: a common prefix stops at the end of either
suffix's document (the sentinel never matches), so no count ever spans two documents.

* `kasai_lcp` is Kasai et al.'s linear-time algorithm (needs the inverse SA: 4-8 bytes/token
  more). It relies on ties between identical truncated strings being ordered by position, which
  `build_suffix_array` guarantees.
* `window_counts` only needs to know, for each adjacent SA pair, whether their LCP reaches n;
  it compares at most n tokens per pair in parallel and needs no inverse SA. For the small n the
  paper uses (32) it is faster than Kasai here; `window_counts_from_lcp` uses a full LCP array
  when one is at hand.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from features.index.prefetch import prefetch as _prefetch
from features.index.suffix_array import _bit, doc_start_bits

__all__ = ["kasai_lcp", "window_counts", "window_counts_from_lcp"]

PREFETCH_AHEAD = 16  # SA entries between a prefetch and its use in the SA walks


@njit(cache=True)
def _kasai(tokens, sa, dbits):
    n = tokens.shape[0]
    rank = np.empty(n, dtype=sa.dtype)
    for i in range(n):
        rank[sa[i]] = i
    lcp = np.zeros(n, dtype=sa.dtype)
    h = 0
    for i in range(n):
        if _bit(dbits, i):
            h = 0  # a new document: nothing carries over
        r = rank[i]
        if r == 0:
            h = 0
            continue
        j = sa[r - 1]
        while i + h < n and j + h < n:
            if h > 0 and (_bit(dbits, i + h) or _bit(dbits, j + h)):
                break
            if tokens[i + h] != tokens[j + h]:
                break
            h += 1
        lcp[r] = h
        if h > 0:
            h -= 1
    return lcp


def kasai_lcp(tokens: np.ndarray, sa: np.ndarray, doc_offsets: np.ndarray) -> np.ndarray:
    """LCP (N,) in SA's dtype: lcp[i] = common prefix of suffixes SA[i-1] and SA[i] within their
    documents; lcp[0] = 0."""
    return _kasai(tokens, sa, doc_start_bits(doc_offsets, tokens.shape[0]))


@njit(cache=True, parallel=True)
def _breaks(tokens, sa, dbits, n_gram, brk):
    """brk[i] = 1 when suffixes SA[i-1], SA[i] do not share a full in-document n-gram."""
    total = tokens.shape[0]
    brk[0] = 1
    for i in prange(1, total):
        # the SA is read in order but tokens[SA[i]] at random: ask for later suffixes' tokens
        # now so their cache misses overlap this comparison
        _prefetch(tokens, sa[min(i + PREFETCH_AHEAD, total - 1)])
        p = sa[i - 1]
        q = sa[i]
        same = 1
        for k in range(n_gram):
            a = p + k
            b = q + k
            if a >= total or b >= total:
                same = 0
                break
            if k > 0 and (_bit(dbits, a) or _bit(dbits, b)):
                same = 0
                break
            if tokens[a] != tokens[b]:
                same = 0
                break
        brk[i] = 1 - same


@njit(cache=True, parallel=True)
def _scatter_sizes(sa, brk, out, chunks):
    """out[SA[i]] = size of i's run between breaks; runs are split into chunks that start at a
    break so that threads never share a run."""
    for c in prange(chunks.shape[0] - 1):
        i = chunks[c]
        end = chunks[c + 1]
        while i < end:
            e = i + 1
            while e < end and brk[e] == 0:
                e += 1
            size = e - i
            for t in range(i, e):
                _prefetch(out, sa[min(t + PREFETCH_AHEAD, end - 1)])  # random writes
                out[sa[t]] = size
            i = e


@njit(cache=True)
def _zero_tails(offsets, n_gram, out):
    """Positions whose n-gram would run past their document's end get count 0."""
    for d in range(offsets.shape[0] - 1):
        lo = offsets[d]
        hi = offsets[d + 1]
        start = max(lo, hi - n_gram + 1)
        for p in range(start, hi):
            out[p] = 0


@njit(cache=True)
def _next_breaks(brk, want):
    """For each (increasing) index in `want`, the first i >= it with brk[i] set, else len(brk).
    A forward scan: runs are short except in repetitive text, and never rescanned."""
    n = brk.shape[0]
    out = np.empty(want.shape[0], dtype=np.int64)
    i = 0
    for w in range(want.shape[0]):
        i = max(i, want[w])
        while i < n and brk[i] == 0:
            i += 1
        out[w] = i
    return out


def _chunks(brk: np.ndarray, parts: int) -> np.ndarray:
    """Chunk bounds near n * k / parts, each moved up to the next run start. (No flatnonzero of
    brk: at 1e8 tokens that is an 800 MB array and took 2 s, a third of window_counts.)"""
    n = brk.shape[0]
    want = np.linspace(0, n, parts + 1).astype(np.int64)[1:-1]
    cut = _next_breaks(brk, want)
    return np.unique(np.concatenate([[0], cut, [n]])).astype(np.int64)


def _finish(sa, brk, offsets, n_gram):
    out = np.empty(sa.shape[0], dtype=np.int64)
    _scatter_sizes(sa, brk, out, _chunks(brk, 64))
    _zero_tails(np.ascontiguousarray(offsets, dtype=np.int64), n_gram, out)
    return out


def window_counts(tokens: np.ndarray, sa: np.ndarray, doc_offsets: np.ndarray, n: int):
    """(N,) int64: count of the n-gram tokens[p:p+n] for every position p (0 where it would
    cross the end of p's document)."""
    brk = np.empty(tokens.shape[0], dtype=np.uint8)
    _breaks(tokens, sa, doc_start_bits(doc_offsets, tokens.shape[0]), int(n), brk)
    return _finish(sa, brk, doc_offsets, n)


def window_counts_from_lcp(sa: np.ndarray, lcp: np.ndarray, doc_offsets: np.ndarray, n: int):
    """Same as `window_counts`, from a full LCP array."""
    brk = (lcp < n).astype(np.uint8)
    brk[0] = 1
    return _finish(sa, brk, doc_offsets, n)
