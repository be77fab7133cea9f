"""The batch-count search internals (galloping sampled-key search, radix argsort, chunked sorted
batches with repeated queries) against independent oracles: np.searchsorted, np.argsort and a
hash of every in-document window."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import CorpusIndex
from features.index.query import _gallop_above, _radix_argsort, count_batch, sample_keys


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=0, max_size=60),
    st.integers(0, 21),
    st.booleans(),
    st.integers(-3, 70),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_gallop_above_matches_searchsorted(values, key, strict, hint, a, b):
    samples = np.sort(np.array(values, dtype=np.uint64))
    a, b = min(a, len(samples)), min(b, len(samples))
    a, b = min(a, b), max(a, b)
    side = "right" if strict else "left"
    expected = a + int(np.searchsorted(samples[a:b], np.uint64(key), side=side))
    assert _gallop_above(samples, a, b, np.uint64(key), strict, hint) == expected


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2000), st.sampled_from([1, 3, 2**11, 2**40, 2**64 - 1]), st.integers(0, 9))
def test_radix_argsort_is_a_stable_argsort(size, top, seed):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, top, size=size, dtype=np.uint64, endpoint=True)
    np.testing.assert_array_equal(_radix_argsort(keys), np.argsort(keys, kind="stable"))


def _window_counter(docs, n):
    c = Counter()
    for d in docs:
        for i in range(len(d) - n + 1):
            c[tuple(d[i : i + n].tolist())] += 1
    return c


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.sampled_from([2, 3, 40000]), st.sampled_from([1, 2, 8]))
def test_sorted_batch_with_dense_samples_matches_hash(tmp_path_factory, seed, alphabet, ndocs):
    """Big buckets (small alphabets) so the sampled-key narrowing and its galloping hints run
    on every query, at a dense sample step; batches with repeated, absent and boundary-crossing
    queries in random order, chunked across threads."""
    rng = np.random.default_rng(seed)
    vocab = np.array([0, 1, 7, 65535][: min(alphabet, 4)] if alphabet < 10 else [], np.int64)
    if alphabet >= 10:  # Zipf-like over a wide vocabulary: a few huge buckets, many small
        vocab = rng.permutation(alphabet)[:50]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    lengths = rng.integers(1, 3000 // ndocs + 2, size=ndocs)
    docs = [vocab[rng.choice(len(vocab), size=int(k), p=weights / weights.sum())] for k in lengths]
    idx = CorpusIndex.build(docs, tmp_path_factory.mktemp("i") / "idx", progress=False)
    s = idx.shards[0]
    stream = np.concatenate(docs)
    for n in (1, 2, 5, 17):
        if len(stream) < n:
            continue
        starts = rng.integers(0, len(stream) - n + 1, size=900)
        windows = np.lib.stride_tricks.sliding_window_view(stream, n)[starts]  # some cross docs
        noise = vocab[rng.integers(0, len(vocab), size=(300, n))]
        qs = np.concatenate([windows, noise, windows[:200]])[rng.permutation(1400)]
        qs = np.ascontiguousarray(qs, dtype=idx.dtype)
        table = _window_counter(docs, n)
        expected = [table.get(tuple(q.tolist()), 0) for q in qs]
        for sstep in (2, 5, 32):
            sampled = sample_keys(s.tokens, s.sa, int(s.values[-1]) + 1, s.docs, sstep=sstep)
            got = count_batch(
                s.tokens, s.sa, qs, s.bucket_values, s.bucket_starts, s.dense, s.docs, sampled
            )
            assert got.tolist() == expected, (n, sstep)
        assert idx.count(qs).tolist() == expected
        assert idx.count(qs[:7]).tolist() == expected[:7]  # small batch: no samples


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.sampled_from([1, 2, 3, 64]))
def test_window_count_chunks_start_at_run_heads(flags, parts):
    """`_chunks` cuts the SA walk only where a run of equal n-grams starts (brk set), covers
    [0, N] and is increasing, also with long runs (repetitive text) and more parts than runs."""
    from features.index.lcp import _chunks

    brk = np.array(flags, dtype=np.uint8)
    brk[0] = 1
    cuts = _chunks(brk, parts)
    assert cuts[0] == 0 and cuts[-1] == len(brk)
    assert np.all(np.diff(cuts) > 0)
    assert all(brk[c] == 1 for c in cuts[:-1])
    # each cut is the first run head at or after its target: none skipped over
    want = np.linspace(0, len(brk), parts + 1).astype(np.int64)[1:-1]
    heads = np.flatnonzero(brk)
    expected = {int(heads[i]) if i < len(heads) else len(brk) for i in np.searchsorted(heads, want)}
    assert set(cuts.tolist()) == expected | {0, len(brk)}


@pytest.mark.parametrize("key_batches", [1, 2, 3, 7])
def test_suffix_array_same_for_every_key_batching(key_batches):
    """The initial sort's batching (one text scan per batch) and the radix path (buckets of
    >= 512 suffixes) give exactly the brute-force order: document-truncated suffixes sorted, ties
    (identical truncated strings) by position."""
    from features.index.suffix_array import build_suffix_array

    rng = np.random.default_rng(key_batches)
    # three documents: random over 2 tokens (buckets of ~750: radix), a short period, one token
    docs = [rng.integers(0, 2, 1500), np.tile([1, 2, 1], 300), np.full(50, 3)]
    tokens = np.concatenate(docs).astype(np.uint16)
    offsets = np.r_[0, np.cumsum([len(d) for d in docs])].astype(np.int64)
    ends = np.repeat(offsets[1:], np.diff(offsets))
    expected = sorted(range(tokens.shape[0]), key=lambda p: (tokens[p : ends[p]].tolist(), p))
    sa = build_suffix_array(tokens, offsets, key_batches=key_batches)
    assert sa.tolist() == expected


@pytest.mark.parametrize("shard_tokens", [None, 700])
def test_corpus_index_build_passes_key_batches_down(tmp_path, shard_tokens):
    """CorpusIndex.build hands `key_batches` to the suffix sort, single or sharded: any batching
    gives the brute-force suffix order, and a bad value fails there, leaving no folder."""
    rng = np.random.default_rng(11)
    docs = [rng.integers(0, 3, 900).astype(np.uint16), np.tile([1, 2], 400).astype(np.uint16)]
    for k, key_batches in enumerate((1, 3)):
        idx = CorpusIndex.build(docs, tmp_path / f"i{k}", shard_tokens=shard_tokens,
                                key_batches=key_batches, progress=False)
        for shard in idx.shards:
            tokens = np.asarray(shard.tokens)
            ends = np.repeat(shard.offsets[1:], np.diff(shard.offsets))
            expected = sorted(range(tokens.shape[0]),
                              key=lambda p: (tokens[p : ends[p]].tolist(), p))
            assert np.asarray(shard.sa).tolist() == expected
    with pytest.raises(ValueError, match="key_batches must be a positive integer, got 0"):
        CorpusIndex.build(docs, tmp_path / "bad", shard_tokens=shard_tokens, key_batches=0,
                          progress=False)
    assert not (tmp_path / "bad").exists()


def _run_python(code: str) -> str:
    """`code` in a fresh interpreter without NUMBA_THREADING_LAYER; its last output line."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return res.stdout.strip().splitlines()[-1]


def test_numba_runs_on_the_workqueue_layer(tmp_path):
    """The `memtax` command picks Numba's workqueue layer (the default omp layer slowed torch's
    bf16 attention ~25x in the same process); the library itself leaves the process-wide choice
    alone."""
    corpus = tmp_path / "corpus.npy"
    np.save(corpus, (np.arange(50) % 7).astype(np.uint16))
    library = _run_python(
        "import numba, numpy as np\n"
        "from features import CorpusIndex\n"
        f"idx = CorpusIndex.build(np.load({str(corpus)!r}), {str(tmp_path / 'lib')!r}, "
        "progress=False)\n"
        "assert idx.count(np.array([[0, 1]], dtype=np.uint16)).tolist() == [7]\n"
        "print(numba.config.THREADING_LAYER)")
    assert library == "default"
    command = _run_python(
        "import numba\n"
        "from memtax.cli import main\n"
        f"assert main(['index', 'build', '--corpus', {str(corpus)!r}, '--out', "
        f"{str(tmp_path / 'cli')!r}]) == 0\n"
        "print(numba.threading_layer())")
    assert command == "workqueue"


def test_radix_argsort_msd_path_is_a_stable_argsort():
    """Batches of at least _MSD_MIN keys take an MSD pass first, then LSD per sub-range: still
    exactly np.argsort(kind="stable"), with skewed top digits and many duplicate keys."""
    from features.index.suffix_array import _MSD_MIN

    rng = np.random.default_rng(5)
    size = _MSD_MIN + 4321
    top = rng.zipf(1.3, size=size).clip(max=5000).astype(np.uint64) << np.uint64(40)
    keys = top | rng.integers(0, 1 << 12, size=size, dtype=np.uint64)
    np.testing.assert_array_equal(_radix_argsort(keys), np.argsort(keys, kind="stable"))


def test_suffix_array_with_a_bucket_past_the_msd_threshold_matches_pydivsufsort():
    """One first-token bucket bigger than _MSD_MIN (the MSD-then-LSD bucket sort): the suffix
    array equals pydivsufsort's on the same uint16 text (one document)."""
    pydivsufsort = pytest.importorskip("pydivsufsort")
    from features.index.suffix_array import _MSD_MIN, build_suffix_array

    rng = np.random.default_rng(8)
    n = int(_MSD_MIN * 1.3)
    tokens = np.where(rng.random(n) < 0.85, 7, rng.integers(0, 300, n)).astype(np.uint16)
    assert int((tokens == 7).sum()) > _MSD_MIN
    sa = build_suffix_array(tokens, np.array([0, n], dtype=np.int64))
    np.testing.assert_array_equal(sa, pydivsufsort.divsufsort(tokens.copy()))


def test_sorts_reload_from_numba_cache_in_a_fresh_process():
    """The jitted sorts work when a new process loads them from Numba's on-disk cache (a
    self-recursive radix sort once compiled fine, then segfaulted when reloaded): two fresh
    interpreters in a row, the second one loading what the first cached."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import numpy as np\n"
        "from features.index.query import _radix_argsort\n"
        "from features.index.suffix_array import _MSD_MIN\n"
        "k = np.random.default_rng(1).integers(0, 2**64 - 1, _MSD_MIN + 7, dtype=np.uint64)\n"
        "assert (_radix_argsort(k) == np.argsort(k, kind='stable')).all()\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[1]
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
