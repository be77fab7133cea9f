"""Corpus-wide window counts by parts of the n-gram order, one part at a time (a Ray task each).

    cuts = plan_cuts(shards, n, parts)          # (R-1, n) n-grams, increasing
    edges = part_edges(shard, cuts)             # (R+1,) SA indices: part r = [edges[r], edges[r+1])
    counts = part_counts(shards, lo, hi, n)     # per shard, the counts of its part's suffixes

Every shard's suffix array lists its suffixes in one order (the n-gram order, with a document's
end read as a sentinel smaller than every token). Cut n-grams split that order into parts; in
every shard, part r holds the suffixes that sort at or after cut r-1 and before cut r. Equal
complete n-grams sort between the same two cuts in every shard, so a part holds every
occurrence, in the whole corpus, of each n-gram it holds: counting equal windows inside the part
gives their corpus counts exactly, with no other part needed. A part's memory is its suffixes'
windows (n tokens each), so `plan_cuts` draws cuts at evenly spaced suffixes (about equal
parts); one n-gram that repeats more than a part's share still makes one part of all its
occurrences (they must be counted together).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["plan_cuts", "part_edges", "part_counts", "PART_ROWS"]

PART_ROWS = 1 << 21  # suffixes a part holds, about (64 B of windows each at n = 32, uint16)


@njit(cache=True)
def _suffix_vs_cut(tokens, offsets, p, cut):
    """-1 when the suffix at p (up to its document's end) sorts before `cut`, else 0 (at or
    after it): a document's end is a sentinel below every token."""
    end = offsets[np.searchsorted(offsets, p, side="right")]
    for j in range(cut.shape[0]):
        if p + j >= end:
            return -1
        t = tokens[p + j]
        if t != cut[j]:
            return -1 if t < cut[j] else 0
    return 0


@njit(cache=True)
def _lower_bounds(tokens, sa, offsets, cuts):
    """For each cut (rows, increasing): the first SA index whose suffix sorts at or after it."""
    out = np.empty(cuts.shape[0], dtype=np.int64)
    for r in range(cuts.shape[0]):
        lo, hi = 0, sa.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            if _suffix_vs_cut(tokens, offsets, np.int64(sa[mid]), cuts[r]) < 0:
                lo = mid + 1
            else:
                hi = mid
        out[r] = lo
    return out


_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: a multiplicative row hash


@njit(cache=True)
def _gather_hash(tokens, pos, n, rows, hashes, start):
    """rows[start + i] = the n tokens at pos[i]; hashes[start + i] = their 64-bit hash."""
    for i in range(pos.shape[0]):
        p = pos[i]
        h = np.uint64(0)
        for j in range(n):
            t = tokens[p + j]
            rows[start + i, j] = t
            h = (h * _MULT) ^ np.uint64(t)
            h ^= h >> np.uint64(29)
        hashes[start + i] = h


def _complete_positions(shard, a: int, b: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, positions): which suffixes of SA indices [a, b) start a complete n-gram (inside
    their document), and those suffixes' positions."""
    pos = np.asarray(shard.sa[a:b], dtype=np.int64)
    offsets = np.asarray(shard.offsets, dtype=np.int64)
    ok = pos + n <= offsets[np.searchsorted(offsets, pos, side="right")]
    return ok, pos[ok]


def _complete_windows(shard, idx: np.ndarray, n: int) -> np.ndarray:
    """The complete n-grams that start at the suffixes of SA indices `idx`, as rows."""
    pos = np.asarray(shard.sa[idx], dtype=np.int64)
    offsets = np.asarray(shard.offsets, dtype=np.int64)
    pos = pos[pos + n <= offsets[np.searchsorted(offsets, pos, side="right")]]
    return np.asarray(shard.tokens)[pos[:, None] + np.arange(n)]


def _equal_row_counts(rows: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(L,) int64: how many rows equal each row. Rows are grouped by hash and equal-hash
    neighbours compared in full; a hash collision between different rows (never seen in
    practice) falls back to an exact byte-wise grouping."""
    order = np.argsort(hashes)
    sorted_hashes = hashes[order]
    same = sorted_hashes[1:] == sorted_hashes[:-1]
    pairs = np.flatnonzero(same)
    if not np.all(rows[order[pairs]] == rows[order[pairs + 1]]):
        keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.itemsize * rows.shape[1])))
        _, inverse, sizes = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
        return sizes[inverse.ravel()].astype(np.int64)
    group = np.cumsum(np.r_[True, ~same]) - 1
    counts = np.empty(rows.shape[0], dtype=np.int64)
    counts[order] = np.bincount(group)[group]
    return counts


def plan_cuts(shards, n: int, parts: int) -> np.ndarray:
    """(R-1, n) distinct n-grams in increasing order that split the shards' suffixes into about
    `parts` equal parts: the windows at evenly spaced suffixes of every shard (16 a part)."""
    total = sum(s.n_tokens for s in shards)
    samples = []
    for s in shards:
        k = max(1, round(16 * parts * s.n_tokens / max(1, total)))
        samples.append(_complete_windows(s, np.linspace(0, s.n_tokens - 1, k).astype(np.int64), n))
    rows = np.concatenate(samples)
    if rows.shape[0] == 0 or parts < 2:
        return rows[:0]
    rows = rows[np.lexsort(rows.T[::-1])]
    picks = rows[(np.arange(1, parts) * rows.shape[0]) // parts]
    new = np.ones(picks.shape[0], dtype=bool)
    new[1:] = np.any(picks[1:] != picks[:-1], axis=1)
    return np.ascontiguousarray(picks[new])


def part_edges(shard, cuts: np.ndarray) -> np.ndarray:
    """(R+1,) int64 SA indices of `shard`: 0, the first suffix at or after each cut, N."""
    bounds = _lower_bounds(np.asarray(shard.tokens), np.asarray(shard.sa),
                           np.asarray(shard.offsets, dtype=np.int64),
                           np.ascontiguousarray(cuts, dtype=shard.tokens.dtype))
    return np.r_[0, bounds, shard.n_tokens].astype(np.int64)


def part_counts(shards, lo, hi, n: int) -> list[np.ndarray]:
    """For every shard s, (hi[s] - lo[s],) int64: the corpus count of the n-gram starting at
    each suffix of SA indices [lo[s], hi[s]) (0 where it would cross its document's end), for
    one part of `part_edges` (which holds every occurrence of its n-grams). Memory: the part's
    windows (n tokens each) and ~40 bytes a suffix."""
    found = [_complete_positions(s, int(a), int(b), n) for s, a, b in zip(shards, lo, hi)]
    total = sum(int(pos.shape[0]) for _, pos in found)
    rows = np.empty((total, n), dtype=shards[0].tokens.dtype)
    hashes = np.empty(total, dtype=np.uint64)
    orders, start = [], 0
    for s, (_, pos) in zip(shards, found):
        # read the windows in position order (nearly sequential), not SA order (random)
        order = np.argsort(pos)
        _gather_hash(np.asarray(s.tokens), pos[order], n, rows, hashes, start)
        orders.append(order + start)
        start += pos.shape[0]
    counts = np.zeros(0, dtype=np.int64)
    if total:
        by_position = _equal_row_counts(rows, hashes)
        counts = np.empty(total, dtype=np.int64)
        counts[np.concatenate(orders)] = by_position
    out, start = [], 0
    for ok, pos in found:
        c = np.zeros(ok.shape[0], dtype=np.int64)
        c[ok] = counts[start : start + pos.shape[0]]
        start += pos.shape[0]
        out.append(c)
    return out
