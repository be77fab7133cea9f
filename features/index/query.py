"""Batch n-gram counting and location on one suffix array, in Numba.

A query q of length n matches suffix p when tokens[p : p+n] == q and p+n does not pass the end of
p's document. The suffixes with that prefix are one contiguous SA range (the suffix array orders
document-truncated suffixes, see suffix_array.py), found by two binary searches inside the bucket
of q's first token (from the unigram table). The batch is first sorted by a packed key of its
leading tokens so that neighbouring queries walk the same cache lines, then searched in parallel
with `prange`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from features.index.suffix_array import pack_params

__all__ = ["DocTable", "count_batch", "sa_range", "sample_keys"]


class DocTable:
    """Document-end lookup in O(1) expected: block_first[p >> shift] is the document holding the
    first position of p's block; a short forward scan of `offsets` finishes the job."""

    def __init__(self, offsets: np.ndarray, n: int):
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        ndocs = max(1, self.offsets.shape[0] - 1)
        self.multi = ndocs > 1
        avg = max(1, n // ndocs)
        self.shift = max(0, avg.bit_length() - 1)
        starts = np.arange(0, max(n, 1), 1 << self.shift, dtype=np.int64)
        self.block_first = (np.searchsorted(self.offsets, starts, side="right") - 1).astype(
            np.int64
        )


@njit(cache=True, inline="always")
def _doc_end(offsets, block_first, shift, p):
    d = block_first[p >> shift]
    while offsets[d + 1] <= p:
        d += 1
    return offsets[d + 1]


@njit(cache=True)
def _cmp(tokens, p, q, n, k0, multi, offsets, block_first, shift):
    """(sign, lcp): document-truncated suffix p vs query q (n,), sign -1/0/+1 with 0 when q is
    a prefix of the suffix, and the number of leading tokens they share. Tokens before k0 are
    known to be equal."""
    total = tokens.shape[0]
    lim = min(n, total - p)
    k = k0
    c = 0
    while k < lim:
        t = tokens[p + k]
        x = q[k]
        if t != x:
            c = -1 if t < x else 1
            break
        k += 1
    if c == 0 and lim < n:
        c = -1  # the corpus ends inside the query: the suffix is shorter, hence smaller
    if multi:
        r = _doc_end(offsets, block_first, shift, p) - p
        if r < n and r <= k:
            return -1, r  # the document ends before the first difference: sentinel < any token
    return c, k


@njit(cache=True)
def _range(tokens, sa, q, n, lo, hi, multi, offsets, block_first, shift):
    """[first, last) SA indices of suffixes starting with q, searching SA[lo:hi] whose suffixes
    all share q[0]. Binary search for the first match skipping the tokens both bounds already
    share with q (Manber-Myers' min(llcp, rlcp)), then a galloping search for the end: the
    typical count is small, so that costs O(log count) probes."""
    a = lo
    b = hi
    la = 1  # lcp of q with the suffix just below a (all share q[0])
    lb = 1  # lcp of q with the suffix at b
    while a < b:  # first index with suffix >= q
        mid = (a + b) >> 1
        c, k = _cmp(tokens, sa[mid], q, n, min(la, lb), multi, offsets, block_first, shift)
        if c < 0:
            a = mid + 1
            la = k
        else:
            b = mid
            lb = k
    first = a
    if first >= hi:
        return first, first
    c, k = _cmp(tokens, sa[first], q, n, 1, multi, offsets, block_first, shift)
    if c != 0:
        return first, first
    # gallop: find a step where the suffix no longer matches
    step = 1
    good = first
    while True:
        probe = first + step
        if probe >= hi:
            probe = hi
            break
        c, k = _cmp(tokens, sa[probe], q, n, 1, multi, offsets, block_first, shift)
        if c != 0:
            break
        good = probe
        step <<= 1
    a = good + 1
    b = probe
    while a < b:  # first index in (good, probe] that does not match
        mid = (a + b) >> 1
        c, k = _cmp(tokens, sa[mid], q, n, 1, multi, offsets, block_first, shift)
        if c == 0:
            a = mid + 1
        else:
            b = mid
    return first, a


@njit(cache=True)
def _bucket(bucket_values, bucket_starts, dense, t):
    """SA range of first token t: dense table when available, else binary search."""
    if dense:
        if t + 1 >= bucket_starts.shape[0]:
            return 0, 0
        return bucket_starts[t], bucket_starts[t + 1]
    i = np.searchsorted(bucket_values, t)
    if i >= bucket_values.shape[0] or bucket_values[i] != t:
        return 0, 0
    return bucket_starts[i], bucket_starts[i + 1]


@njit(cache=True, inline="always")
def _first_above(samples, a, b, key, strict):
    """First index i in [a, b) with samples[i] >= key (> key when strict), else b."""
    while a < b:
        mid = (a + b) >> 1
        v = samples[mid]
        if v < key or (strict and v == key):
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True, parallel=True)
def _count_sorted(
    tokens,
    sa,
    queries,
    order,
    bucket_values,
    bucket_starts,
    dense,
    multi,
    offsets,
    block_first,
    shift,
    samples,
    sstep,
    bits,
    kq,
    out,
):
    nq, n = queries.shape
    ns = samples.shape[0]
    m = min(n, kq)
    fill = np.uint64((1 << bits) - 1)
    for i in prange(nq):
        r = order[i]
        q = queries[r]
        lo, hi = _bucket(bucket_values, bucket_starts, dense, q[0])
        if hi - lo == 0:
            out[r] = 0
            continue
        if n == 1:
            out[r] = hi - lo
            continue
        if ns > 0 and hi - lo > 2 * sstep:
            # narrow the range with the sampled SA keys (compact, cache-friendly for a sorted
            # batch) before touching the suffix array itself
            klo = np.uint64(0)
            khi = np.uint64(0)
            for j in range(kq):
                d_lo = np.uint64(0)
                d_hi = fill
                if j < m:
                    d_lo = np.uint64(q[j]) + np.uint64(1)
                    d_hi = d_lo
                klo = (klo << np.uint64(bits)) | d_lo
                khi = (khi << np.uint64(bits)) | d_hi
            s_lo = (lo + sstep - 1) // sstep
            s_hi = min(ns, (hi + sstep - 1) // sstep)
            i0 = _first_above(samples, s_lo, s_hi, klo, False)
            if i0 > s_lo:
                lo = max(lo, (i0 - 1) * sstep + 1)
            i1 = _first_above(samples, i0, s_hi, khi, True)
            if i1 < s_hi:
                hi = min(hi, i1 * sstep)
            if hi <= lo:
                out[r] = 0
                continue
        a, b = _range(tokens, sa, q, n, lo, hi, multi, offsets, block_first, shift)
        out[r] = b - a


@njit(cache=True, parallel=True)
def _sample_keys(tokens, sa, sstep, bits, kq, multi, offsets, block_first, shift):
    """Packed first-kq-token keys (digits token+1, 0 past the document end) of SA[::sstep]."""
    total = tokens.shape[0]
    ns = (sa.shape[0] + sstep - 1) // sstep
    out = np.empty(ns, dtype=np.uint64)
    for i in prange(ns):
        p = sa[i * sstep]
        end = total
        if multi:
            end = _doc_end(offsets, block_first, shift, p)
        key = np.uint64(0)
        for j in range(kq):
            d = np.uint64(0)
            if p + j < end:
                d = np.uint64(tokens[p + j]) + np.uint64(1)
            key = (key << np.uint64(bits)) | d
        out[i] = key
    return out


def sample_keys(tokens, sa, alphabet: int, docs: DocTable, sstep: int = 32):
    """(samples, sstep, bits, kq) for `count_batch`: sorted packed keys of every sstep-th
    suffix. About 8/sstep bytes per token of memory."""
    bits, kq = pack_params(alphabet)
    samples = _sample_keys(
        tokens, sa, sstep, bits, kq, docs.multi, docs.offsets, docs.block_first, docs.shift
    )
    return samples, sstep, bits, kq


@njit(cache=True)
def _sort_keys(queries, bits, k):
    nq, n = queries.shape
    keys = np.zeros(nq, dtype=np.uint64)
    m = min(n, k)
    for i in range(nq):
        key = np.uint64(0)
        for j in range(m):
            key = (key << np.uint64(bits)) | np.uint64(queries[i, j])
        keys[i] = key
    return keys


def count_batch(
    tokens, sa, queries, bucket_values, bucket_starts, dense, docs: DocTable, sampled=None
):
    """Counts (Q,) int64 of each row of `queries` (Q, n) (already in the token dtype).
    `sampled`: the tuple of `sample_keys` (optional; narrows each search)."""
    nq = queries.shape[0]
    out = np.zeros(nq, dtype=np.int64)
    if nq == 0:
        return out
    alphabet = int(bucket_values[-1]) + 1 if bucket_values.shape[0] else 1
    bits, k = pack_params(alphabet)
    order = np.argsort(_sort_keys(queries, bits, k))
    if sampled is None:
        sampled = (np.zeros(0, dtype=np.uint64), 1, bits, k)
    samples, sstep, sbits, kq = sampled
    _count_sorted(
        tokens,
        sa,
        queries,
        order,
        bucket_values,
        bucket_starts,
        dense,
        docs.multi,
        docs.offsets,
        docs.block_first,
        docs.shift,
        samples,
        sstep,
        sbits,
        kq,
        out,
    )
    return out


@njit(cache=True)
def _one_range(
    tokens, sa, q, bucket_values, bucket_starts, dense, multi, offsets, block_first, shift
):
    lo, hi = _bucket(bucket_values, bucket_starts, dense, q[0])
    if hi - lo == 0 or q.shape[0] == 1:
        return lo, hi
    return _range(tokens, sa, q, q.shape[0], lo, hi, multi, offsets, block_first, shift)


def sa_range(tokens, sa, query, bucket_values, bucket_starts, dense, docs: DocTable):
    """[first, last) SA indices of the suffixes that start with `query` (n,)."""
    a, b = _one_range(
        tokens,
        sa,
        query,
        bucket_values,
        bucket_starts,
        dense,
        docs.multi,
        docs.offsets,
        docs.block_first,
        docs.shift,
    )
    return int(a), int(b)
