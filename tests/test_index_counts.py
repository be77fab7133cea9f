"""CorpusIndex counts, window counts and locate against brute force on small random corpora."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from helpers import brute_count, brute_locate, brute_window_counts, sample_queries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import CorpusIndex


def _doc(draw, alphabet):
    kind = draw(st.sampled_from(["random", "equal", "repeat"]))
    length = draw(st.integers(1, 40))
    if kind == "equal":
        return [draw(st.integers(0, alphabet - 1))] * length
    if kind == "repeat":  # a short block repeated: deep ties, long common prefixes
        block = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=4))
        return (block * (length // len(block) + 1))[:length]
    return draw(st.lists(st.integers(0, alphabet - 1), min_size=length, max_size=length))


@st.composite
def corpora(draw):
    alphabet = draw(st.sampled_from([1, 2, 3, 5, 70000]))
    docs = [_doc(draw, alphabet) for _ in range(draw(st.integers(1, 5)))]
    return alphabet, [np.array(d, dtype=np.int64) for d in docs]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora(), st.integers(0, 2**31))
def test_count_matches_brute_force(corpus, seed):
    alphabet, docs = corpus
    rng = np.random.default_rng(seed)
    longest = max(len(d) for d in docs)
    with tempfile.TemporaryDirectory() as tmp:
        idx = CorpusIndex.build(docs, f"{tmp}/idx", progress=False)
        assert idx.n_tokens == sum(len(d) for d in docs)
        # n = 1, small n, and n longer than any document (always 0)
        for n in sorted({1, 2, 3, 5, 9, longest, longest + 1}):
            qs = sample_queries(docs, n, 12, min(alphabet, np.iinfo(idx.dtype).max + 1), rng)
            expected = [brute_count(docs, q) for q in qs]
            assert idx.count(qs).tolist() == expected, (n, qs)
        n = int(rng.integers(1, 5))
        np.testing.assert_array_equal(idx.window_counts(n), brute_window_counts(docs, n))
        q = sample_queries(docs, n, 1, min(alphabet, np.iinfo(idx.dtype).max + 1), rng)[0]
        np.testing.assert_array_equal(idx.locate(q), brute_locate(docs, q))


def test_boundary_crossing_queries_count_zero(tmp_path):
    docs = [np.array([1, 2, 3]), np.array([4, 5, 6]), np.array([1, 2, 3, 4, 5])]
    idx = CorpusIndex.build(docs, tmp_path / "idx", progress=False)
    # [2, 3, 4] spans docs 0|1 and occurs once inside doc 2; [6, 1] and [3, 4, 5, 6] occur
    # only across a boundary
    queries = [[2, 3, 4], [6, 1], [3, 4, 5, 6], [4, 5], [1, 2, 3]]
    assert [int(idx.count(np.array([q]))[0]) for q in queries] == [1, 0, 0, 2, 2]
    assert idx.locate(np.array([4, 5])).tolist() == [3, 9]
    assert idx.locate(np.array([1, 2, 3]), limit=1).shape == (1,)


def test_pythia_sequence_length_semantics(tmp_path):
    # one stream of 10 tokens cut into sequences of 4: windows never span two sequences
    stream = np.array([7, 7, 7, 7, 7, 7, 7, 7, 7, 7])
    idx = CorpusIndex.build(stream, tmp_path / "idx", sequence_length=4, progress=False)
    docs = [stream[0:4], stream[4:8], stream[8:10]]
    assert idx.n_docs == 3
    for n in range(1, 6):
        assert idx.count(np.full((1, n), 7))[0] == brute_count(docs, np.full(n, 7))
    np.testing.assert_array_equal(idx.window_counts(3), brute_window_counts(docs, 3))


def test_two_d_corpus_rows_are_documents_and_unigrams(tmp_path):
    rows = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint16)
    idx = CorpusIndex.build(rows, tmp_path / "idx", vocab_size=5, progress=False)
    # [2, 2] would span the rows; [1, 0] and [2, 1] occur once, in row 1
    assert idx.count(np.array([[2, 2], [1, 0], [2, 1]])).tolist() == [0, 1, 1]
    np.testing.assert_array_equal(idx.unigram_counts(), [2, 2, 2, 0, 0])
    assert idx.unigram_counts(size=7).shape == (7,)
    assert idx.stats()["n_docs"] == 2


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_uint32_and_large_token_ids(tmp_path, dtype):
    rng = np.random.default_rng(1)
    hi = 2**16 - 1 if dtype == np.uint16 else 2**32 - 1
    vocab = np.array([0, 5, hi - 1, hi], dtype=np.int64)
    docs = [vocab[rng.integers(0, 4, size=int(rng.integers(5, 30)))] for _ in range(4)]
    idx = CorpusIndex.build(docs, tmp_path / "idx", dtype=dtype, progress=False)
    assert idx.dtype == np.dtype(dtype)
    for n in (1, 2, 4):
        qs = vocab[rng.integers(0, 4, size=(1200, n))]  # >= 1000: sampled-key search too
        assert idx.count(qs).tolist() == [brute_count(docs, q) for q in qs]
    np.testing.assert_array_equal(idx.window_counts(2), brute_window_counts(docs, 2))


def test_suffix_order_and_kasai_lcp_match_brute_force(tmp_path):
    from features.index.lcp import kasai_lcp, window_counts, window_counts_from_lcp

    rng = np.random.default_rng(11)
    for trial in range(15):
        docs = [
            rng.integers(0, 3, size=int(rng.integers(1, 25))) for _ in range(rng.integers(1, 5))
        ]
        idx = CorpusIndex.build(docs, tmp_path / f"k{trial}", progress=False)
        s = idx.shards[0]
        tokens, sa, offsets = np.asarray(s.tokens), np.asarray(s.sa), np.asarray(s.offsets)
        ends = np.repeat(offsets[1:], np.diff(offsets))
        strings = [tuple(tokens[p : ends[p]].tolist()) for p in sa]
        assert strings == sorted(strings)  # document-truncated suffixes in order
        expected = [0]
        for a, b in zip(strings[:-1], strings[1:]):
            k = 0
            while k < min(len(a), len(b)) and a[k] == b[k]:
                k += 1
            expected.append(k)
        lcp = kasai_lcp(tokens, sa, offsets)
        assert lcp.tolist() == expected
        for n in (1, 2, 4):
            np.testing.assert_array_equal(
                window_counts_from_lcp(sa, lcp, offsets, n), window_counts(tokens, sa, offsets, n)
            )
