"""Duplicates and token-frequency statistics against brute-force counts and numpy."""

import numpy as np
import pytest

from features import CorpusIndex
from features.duplicates import _distinct_rows, duplicate_counts
from features.token_stats import COLUMNS, token_frequency_stats


def brute_count(docs, query) -> int:
    """Occurrences of `query` inside any document (windows never cross a document end)."""
    n = len(query)
    total = 0
    for d in docs:
        for i in range(len(d) - n + 1):
            if np.array_equal(d[i : i + n], query):
                total += 1
    return total


@pytest.fixture(scope="module")
def corpus_and_index(tmp_path_factory):
    rng = np.random.default_rng(7)
    # Small vocabulary so short n-grams repeat; plant copies of one 16-token sample so that
    # counts > 1 occur for whole samples too, including across documents.
    docs = [rng.integers(0, 6, size=int(rng.integers(70, 120))).astype(np.int64)
            for _ in range(8)]
    planted = rng.integers(0, 6, size=16)
    for d in (0, 3, 5):
        docs[d][10:26] = planted
    docs[3][50:66] = planted  # twice in one document
    path = tmp_path_factory.mktemp("idx") / "index"
    idx = CorpusIndex.build(docs, path, vocab_size=8, progress=False)
    return docs, idx, planted


def test_duplicates_match_brute_force(corpus_and_index):
    docs, idx, planted = corpus_and_index
    rng = np.random.default_rng(1)
    # samples: corpus windows (counts >= 1), the planted run, random rows (mostly 0), and a
    # window straddling two documents (must not be counted across the boundary).
    rows = [docs[i][j : j + 16] for i, j in [(1, 0), (2, 5), (6, 20), (0, 10)]]
    rows.append(planted)
    rows += [rng.integers(0, 6, size=16) for _ in range(5)]
    rows.append(np.r_[docs[0][-8:], docs[1][:8]])
    rows.append(rows[0])  # duplicate query rows in one chunk are counted once, mapped back
    tokens = np.stack(rows).astype(np.int64)
    got = duplicate_counts(idx, tokens, prefix_len=6)
    for k, row in enumerate(tokens):
        assert got["duplicates"][k] == brute_count(docs, row[6:])
        assert got["prompt_duplicates"][k] == brute_count(docs, row[:6])
        assert got["sample_duplicates"][k] == brute_count(docs, row)
    assert got["sample_duplicates"][4] == 4  # the planted run: 3 documents, one of them twice
    assert all(v.dtype == np.int64 for v in got.values())


def test_distinct_rows_round_trip():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 3, size=(200, 4))
    rows, inverse = _distinct_rows(q)
    assert np.array_equal(rows[inverse], q)
    assert len({tuple(r) for r in q}) == rows.shape[0]


def test_duplicates_bad_inputs(corpus_and_index):
    _, idx, _ = corpus_and_index
    with pytest.raises(ValueError, match="prefix_len"):
        duplicate_counts(idx, np.zeros((2, 8), np.int64), prefix_len=8)
    with pytest.raises(ValueError, match="integer"):
        duplicate_counts(idx, np.zeros((2, 8), np.float32), prefix_len=4)
    # token 9 is outside the index's declared vocabulary of 8: another tokenizer
    with pytest.raises(ValueError, match="vocabulary"):
        duplicate_counts(idx, np.full((1, 8), 9, np.int64), prefix_len=4)
    empty = duplicate_counts(idx, np.zeros((0, 8), np.int64), prefix_len=4)
    assert all(v.shape == (0,) for v in empty.values())


def test_token_stats_match_numpy(corpus_and_index):
    docs, idx, _ = corpus_and_index
    counts = idx.unigram_counts()
    # oracle for the counts themselves
    flat = np.concatenate(docs)
    assert np.array_equal(counts[:6], np.bincount(flat, minlength=8)[:6])
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 8, size=(30, 13))
    got = token_frequency_stats(tokens, counts)
    for k, row in enumerate(tokens):
        f = np.array([counts[t] for t in row], dtype=np.float64)
        assert got["token_freq_max"][k] == f.max()
        assert got["token_freq_min"][k] == f.min()
        assert got["token_freq_mean"][k] == pytest.approx(f.mean())
        assert got["token_freq_median"][k] == pytest.approx(np.median(f))
        assert got["token_freq_p25"][k] == pytest.approx(np.percentile(f, 25))
        assert got["token_freq_p75"][k] == pytest.approx(np.percentile(f, 75))
    assert set(got) == set(COLUMNS)


def test_token_stats_even_length_and_bad_vocab():
    counts = np.array([5, 1, 9, 2])
    got = token_frequency_stats(np.array([[0, 1, 2, 3]]), counts)
    # sorted f = 1 2 5 9: median (2+5)/2, p25 at position 0.75 -> 1.75, p75 at 2.25 -> 6.0
    assert got["token_freq_median"][0] == 3.5
    assert got["token_freq_p25"][0] == 1.75
    assert got["token_freq_p75"][0] == 6.0
    with pytest.raises(ValueError, match="different tokenizers"):
        token_frequency_stats(np.array([[0, 4]]), counts)
    assert token_frequency_stats(np.zeros((0, 4), np.int64), counts)["token_freq_max"].shape == (0,)


def test_distinct_rows_survives_hash_collisions(monkeypatch):
    import features.duplicates as dmod

    # A zero multiplier makes the hash depend on the last column only: different rows then
    # collide, and the exact fallback must still separate them.
    monkeypatch.setattr(dmod, "_MULT", np.uint64(0))
    q = np.array([[1, 2, 5], [3, 4, 5], [1, 2, 5], [0, 0, 6], [3, 4, 5]])
    rows, inverse = dmod._distinct_rows(q)
    assert np.array_equal(rows[inverse], q)
    assert rows.shape[0] == 3
