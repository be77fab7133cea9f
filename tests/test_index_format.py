"""CorpusIndex: bad inputs, on-disk format checks, shards (local pool, Ray) and the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from helpers import brute_count, brute_window_counts, sample_queries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.indexed_dataset import write_indexed_dataset
from features import CorpusIndex
from features.index.format import HEADER
from memtax.cli import main


def _docs(seed=0, k=12, alphabet=6):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, alphabet, size=int(rng.integers(1, 60))) for _ in range(k)]


# ---------------------------------------------------------------- bad input
def test_tokens_that_do_not_fit_the_declared_dtype(tmp_path):
    with pytest.raises(ValueError, match="do not fit the declared token dtype uint16"):
        CorpusIndex.build(np.array([1, 70000]), tmp_path / "a", dtype=np.uint16, progress=False)
    with pytest.raises(ValueError, match="do not fit"):
        CorpusIndex.build(np.array([1, -1]), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="integer token ids"):
        CorpusIndex.build(np.array([1.0, 2.0]), tmp_path / "c", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_empty_corpus(tmp_path):
    for empty in (np.zeros(0, dtype=np.uint16), [], [np.zeros(0, dtype=np.int64)]):
        with pytest.raises(ValueError, match="empty"):
            CorpusIndex.build(empty, tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()


def test_bad_queries(tmp_path):
    idx = CorpusIndex.build(np.array([1, 2, 3, 1, 2]), tmp_path / "i", progress=False)
    with pytest.raises(ValueError, match="length n = 0"):
        idx.count(np.zeros((3, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="wider than the index's token dtype uint16"):
        idx.count(np.array([[1, 70000]]))
    with pytest.raises(ValueError, match="integer token ids"):
        idx.count(np.array([[1.5, 2.0]]))
    with pytest.raises(ValueError, match="positive integer"):
        idx.window_counts(0)
    assert idx.count(np.array([[1, 2]], dtype=np.uint32)).tolist() == [2]


class _FakeTokenizer:
    def __init__(self, vocab):
        self.vocab = vocab

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)


def test_tokenizer_mismatch(tmp_path):
    tok_a = _FakeTokenizer({"a": 0, "b": 1, "c": 2, "d": 3})
    tok_b = _FakeTokenizer({"a": 0, "b": 2, "c": 1, "d": 3})
    idx = CorpusIndex.build(
        np.array([0, 1, 2, 3]), tmp_path / "i", tokenizer=tok_a, vocab_size=4, progress=False
    )
    assert idx.count(np.array([[1, 2]]), tokenizer=tok_a).tolist() == [1]
    with pytest.raises(ValueError, match="built with tokenizer"):
        idx.count(np.array([[1, 2]]), tokenizer=tok_b)
    with pytest.raises(ValueError, match="built with tokenizer"):
        idx.count(np.array([[1, 2]]), tokenizer="gpt2")
    with pytest.raises(ValueError, match="outside the index's vocabulary of 4"):
        idx.count(np.array([[1, 9]]))


def test_corrupt_truncated_and_foreign_indexes(tmp_path):
    CorpusIndex.build(_docs(), tmp_path / "i", progress=False)
    good = tmp_path / "i"
    # corrupt: flip one byte of the suffix array
    raw = bytearray((good / "sa.bin").read_bytes())
    raw[5] ^= 0xFF
    (good / "sa.bin").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sa.bin.*corrupt: CRC-32 mismatch"):
        CorpusIndex.open(good)
    raw[5] ^= 0xFF
    (good / "sa.bin").write_bytes(bytes(raw))
    CorpusIndex.open(good)
    # truncated tokens
    tok = (good / "tokens.bin").read_bytes()
    (good / "tokens.bin").write_bytes(tok[:-2])
    with pytest.raises(ValueError, match="tokens.bin.*truncated"):
        CorpusIndex.open(good, verify=False)
    (good / "tokens.bin").write_bytes(tok)
    # foreign header / no header / corrupt header / future version
    h = json.loads((good / HEADER).read_text())
    (good / HEADER).write_text(json.dumps(dict(h, magic="infini-gram")))
    with pytest.raises(ValueError, match="not a memtax corpus index: magic 'infini-gram'"):
        CorpusIndex.open(good)
    (good / HEADER).write_text(json.dumps(dict(h, format_version=99)))
    with pytest.raises(ValueError, match="unsupported corpus-index format version 99"):
        CorpusIndex.open(good)
    (good / HEADER).write_bytes(b"\x00\xff garbage")
    with pytest.raises(ValueError, match="corrupt or not a corpus-index header"):
        CorpusIndex.open(good)
    (good / HEADER).unlink()
    with pytest.raises(ValueError, match="no index.json header"):
        CorpusIndex.open(good)
    with pytest.raises(FileNotFoundError):
        CorpusIndex.open(tmp_path / "nope")


def test_existing_output_is_kept(tmp_path):
    CorpusIndex.build(np.array([1, 2, 3]), tmp_path / "i", progress=False)
    with pytest.raises(FileExistsError):
        CorpusIndex.build(np.array([4, 5]), tmp_path / "i", progress=False)
    assert CorpusIndex.open(tmp_path / "i").n_tokens == 3
    idx = CorpusIndex.build(np.array([4, 5]), tmp_path / "i", overwrite=True, progress=False)
    assert idx.n_tokens == 2


# ---------------------------------------------------------------- inputs and shards
def test_npy_and_indexed_dataset_inputs(tmp_path):
    docs = _docs(1)
    write_indexed_dataset(tmp_path / "ds", docs, dtype=np.uint16)
    flat = np.concatenate(docs).astype(np.uint16)
    np.save(tmp_path / "flat.npy", flat)
    a = CorpusIndex.build(tmp_path / "ds", tmp_path / "a", progress=False)
    b = CorpusIndex.build(tmp_path / "flat.npy", tmp_path / "b", progress=False)
    c = CorpusIndex.build(iter(docs), tmp_path / "c", progress=False)  # any iterable
    assert a.n_docs == len(docs) and b.n_docs == 1
    qs = sample_queries(docs, 3, 40, 6, np.random.default_rng(0))
    assert a.count(qs).tolist() == [brute_count(docs, q) for q in qs]
    assert c.count(qs).tolist() == a.count(qs).tolist()
    assert b.count(qs).tolist() == [brute_count([flat], q) for q in qs]


def test_engine_sample_source_rows_are_documents(tmp_path):
    from engine.data import ArraySource

    rows = np.random.default_rng(8).integers(0, 3, size=(40, 16))
    idx = CorpusIndex.build(ArraySource(rows, 16), tmp_path / "s", progress=False)
    docs = list(rows)
    assert idx.n_docs == 40
    qs = sample_queries(docs, 3, 50, 3, np.random.default_rng(9))
    assert idx.count(qs).tolist() == [brute_count(docs, q) for q in qs]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.lists(st.integers(0, 3), min_size=0, max_size=40).map(np.array), min_size=1, max_size=8
    ),
    st.integers(1, 7),
    st.integers(5, 60),
    st.sampled_from([0, 3, 2**32 - 4]),
)
def test_sharded_window_counts_match_brute_force(tmp_path_factory, docs, n, shard_tokens, offset):
    """The k-way merge of the shards' suffix arrays (features/index/shard_merge.py) gives every
    position its corpus-wide count: random documents over 4 tokens (repeats within and across
    shards), shard sizes from 5 tokens up, n longer than documents, and token ids near 2^32 (the
    sparse first-token path and 32-bit head keys)."""
    docs = [d.astype(np.uint64) + offset for d in docs]
    if sum(len(d) for d in docs) == 0:
        docs[0] = np.array([offset], dtype=np.uint64)
    dtype = np.uint32 if offset > 3 else np.uint16
    tmp = tmp_path_factory.mktemp("wc")
    idx = CorpusIndex.build([d.astype(dtype) for d in docs], tmp / "sh", dtype=dtype,
                            shard_tokens=shard_tokens, progress=False)
    np.testing.assert_array_equal(idx.window_counts(n), brute_window_counts(docs, n))


def test_sharded_merge_takes_uint64_suffix_arrays(tmp_path):
    """Shards of 2^32 tokens or more store a uint64 suffix array: the merge takes it (same
    counts as with the uint32 arrays these small shards really have)."""
    from types import SimpleNamespace

    from features.index.shard_merge import merge_window_counts

    docs = _docs(5, k=12, alphabet=3)
    idx = CorpusIndex.build(docs, tmp_path / "sh", shard_tokens=60, progress=False)
    assert len(idx.shards) > 2
    wide = [
        SimpleNamespace(tokens=s.tokens, sa=np.asarray(s.sa, dtype=np.uint64), values=s.values,
                        counts=s.counts, n_tokens=s.n_tokens)
        for s in idx.shards
    ]
    out = np.concatenate([s.window_counts(2) for s in idx.shards])
    merge_window_counts(wide, out, 2, int(max(int(s.values[-1]) for s in idx.shards)).bit_length())
    np.testing.assert_array_equal(out, brute_window_counts(docs, 2))


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_equals_unsharded(tmp_path, workers):
    docs = _docs(2, k=30, alphabet=4)
    whole = CorpusIndex.build(docs, tmp_path / "whole", progress=False)
    sharded = CorpusIndex.build(
        docs, tmp_path / "sh", shard_tokens=150, workers=workers, progress=False
    )
    assert len(sharded.shards) > 2 and sharded.n_tokens == whole.n_tokens
    sharded = CorpusIndex.open(tmp_path / "sh")
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 6):
        qs = sample_queries(docs, n, 60, 4, rng)
        np.testing.assert_array_equal(sharded.count(qs), whole.count(qs))
    np.testing.assert_array_equal(sharded.window_counts(3), whole.window_counts(3))
    np.testing.assert_array_equal(sharded.unigram_counts(), whole.unigram_counts())
    q = qs[0][:2]
    np.testing.assert_array_equal(sharded.locate(q), whole.locate(q))


@pytest.mark.slow  # starting a local Ray instance costs ~15-20 s on the 2-core machine
def test_ray_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    docs = _docs(4, k=20, alphabet=3)
    t0 = time.perf_counter()
    try:
        idx = CorpusIndex.build(
            docs, tmp_path / "r", shard_tokens=200, workers=2, use_ray=True, progress=False
        )
    finally:
        ray.shutdown()
    assert time.perf_counter() - t0 < 120
    qs = sample_queries(docs, 2, 40, 3, np.random.default_rng(5))
    assert idx.count(qs).tolist() == [brute_count(docs, q) for q in qs]
    assert len(idx.shards) > 1


# ---------------------------------------------------------------- CLI
def test_cli_build_count_stats(tmp_path, capsys):
    docs = _docs(6)
    write_indexed_dataset(tmp_path / "ds", docs, dtype=np.uint16)
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(tmp_path / "ds"),
                "--out",
                str(tmp_path / "idx"),
                "--shard-tokens",
                "200",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    stats = json.loads(capsys.readouterr().out)
    assert stats["n_tokens"] == sum(len(d) for d in docs) and stats["n_shards"] > 1
    qs = sample_queries(docs, 2, 10, 6, np.random.default_rng(7))
    lines = [" ".join(map(str, q)) for q in qs] + ["1, 2, 3"]
    (tmp_path / "q.txt").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "index",
                "count",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(tmp_path / "q.txt"),
            ]
        )
        == 0
    )
    got = [int(x) for x in capsys.readouterr().out.split()]
    expected = [brute_count(docs, q) for q in qs] + [brute_count(docs, np.array([1, 2, 3]))]
    assert got == expected
    np.save(tmp_path / "q.npy", qs)
    assert (
        main(
            [
                "index",
                "count",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(tmp_path / "q.npy"),
                "--out",
                str(tmp_path / "c.npy"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "c.npy").tolist() == expected[:-1]
    assert main(["index", "stats", str(tmp_path / "idx")]) == 0
    assert json.loads(capsys.readouterr().out)["n_docs"] == len(docs)
    assert (
        main(
            [
                "index",
                "count",
                "--index",
                str(tmp_path / "nope"),
                "--queries",
                str(tmp_path / "q.npy"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
