"""Brute-force oracles for the corpus-index tests (independent of features.index)."""

from __future__ import annotations

from collections import Counter

import numpy as np


def brute_count(docs: list[np.ndarray], q: np.ndarray) -> int:
    """Sliding-window count of q inside each document (never across two)."""
    n = len(q)
    total = 0
    for d in docs:
        if len(d) < n:
            continue
        w = np.lib.stride_tricks.sliding_window_view(np.asarray(d, dtype=np.int64), n)
        total += int(np.all(w == np.asarray(q, dtype=np.int64), axis=1).sum())
    return total


def brute_window_counts(docs: list[np.ndarray], n: int) -> np.ndarray:
    """Count of the n-gram at every position of the concatenated corpus (0 past a doc end)."""
    grams = Counter()
    for d in docs:
        for i in range(len(d) - n + 1):
            grams[tuple(int(x) for x in d[i : i + n])] += 1
    out = []
    for d in docs:
        for i in range(len(d)):
            out.append(grams[tuple(int(x) for x in d[i : i + n])] if i + n <= len(d) else 0)
    return np.array(out, dtype=np.int64)


def brute_locate(docs: list[np.ndarray], q: np.ndarray) -> np.ndarray:
    out, base, n = [], 0, len(q)
    for d in docs:
        for i in range(len(d) - n + 1):
            if np.array_equal(np.asarray(d[i : i + n], dtype=np.int64), np.asarray(q, np.int64)):
                out.append(base + i)
        base += len(d)
    return np.array(out, dtype=np.int64)


def sample_queries(docs: list[np.ndarray], n: int, k: int, alphabet: int, rng) -> np.ndarray:
    """k queries of length n: half cut from the concatenated corpus (some crossing document
    boundaries), half random."""
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    qs = []
    for i in range(k):
        if i % 2 == 0 and len(flat) >= n:
            s = int(rng.integers(0, len(flat) - n + 1))
            qs.append(flat[s : s + n])
        else:
            qs.append(rng.integers(0, alphabet, size=n))
    return np.array(qs, dtype=np.int64)
