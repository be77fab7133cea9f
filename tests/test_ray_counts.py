"""Corpus counts on a local Ray cluster (2 worker processes) equal the single-process ones
exactly; a worker killed mid-count is retried; a worker that cannot see a shard is refused."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import brute_count, sample_queries

from features import CorpusIndex

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (starting one costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _random_docs(rng, n_docs, alphabet, dtype):
    return [rng.integers(0, alphabet, size=int(rng.integers(50, 400))).astype(dtype)
            for _ in range(n_docs)]


def _repetitive_docs(rng, n_docs):
    """Every document a short motif repeated, some documents copies of others: deep ties."""
    motifs = [rng.integers(0, 4, size=k) for k in (1, 3, 7)]
    docs = []
    for i in range(n_docs):
        m = motifs[i % 3]
        docs.append(np.tile(m, 300 // len(m) + 1)[: int(rng.integers(100, 300))].astype(np.uint16))
    return docs + docs[:5]


def _queries(docs, rng, n, alphabet):
    qs = sample_queries(docs, n, 300, alphabet, rng)
    return np.concatenate([qs, qs[:50]])  # repeated rows too


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("ray-idx")
    corpora = {
        "random": (_random_docs(rng, 40, 5, np.uint16), 5),
        "repetitive": (_repetitive_docs(rng, 30), 4),
        "uint32": (_random_docs(rng, 30, 70_000, np.uint32), 70_000),
    }
    out = {}
    for name, (docs, alphabet) in corpora.items():
        idx = CorpusIndex.build(docs, root / name, shard_tokens=1500, progress=False)
        assert len(idx.shards) >= 3
        out[name] = (idx, docs, alphabet)
    return out


@pytest.mark.parametrize("name", ["random", "repetitive", "uint32"])
def test_counts_equal_single_process(cluster, indexes, name):
    idx, docs, alphabet = indexes[name]
    rng = np.random.default_rng(11)
    for n in (1, 3, 8):
        qs = _queries(docs, rng, n, alphabet)
        single = idx.count(qs)
        # blocks of 64 queries in groups of two: several blocks and groups per shard
        distributed = idx.count(qs, cluster="ray", block_rows=64, group_rows=128)
        assert distributed.dtype == np.int64
        np.testing.assert_array_equal(distributed, single)
        # and both equal brute force on a sample
        for q, c in list(zip(qs, distributed))[::37]:
            assert c == brute_count(docs, q)
    assert idx.window_counts(5, cluster="ray").tolist() == idx.window_counts(5).tolist()


def _kill_once(marker: str):
    """A count task that kills its own worker process on its first attempt (the marker file
    records the attempt), then counts normally on Ray's retry."""
    def task(folder, digest, queries, threads):
        import os
        import signal

        from features.index.distributed import count_task

        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return count_task(folder, digest, queries, threads)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    return task


def test_worker_killed_mid_count_is_retried(cluster, indexes, tmp_path):
    from features.index.distributed import count_on_ray

    idx, docs, alphabet = indexes["random"]
    qs = idx._queries(_queries(docs, np.random.default_rng(3), 4, alphabet), None)
    marker = tmp_path / "killed"
    got = count_on_ray(idx, qs, block_rows=100, max_retries=3, task_fn=_kill_once(str(marker)))
    assert marker.exists()  # a worker process did die
    np.testing.assert_array_equal(got, idx.count(qs))


def test_worker_without_the_shard_files_is_refused(cluster, tmp_path):
    rng = np.random.default_rng(5)
    docs = _random_docs(rng, 20, 6, np.uint16)
    idx = CorpusIndex.build(docs, tmp_path / "idx", shard_tokens=1500, progress=False)
    qs = sample_queries(docs, 3, 20, 6, rng)
    gone = idx.shards[1].folder
    # the driver keeps its memory maps; the workers look for the path and find nothing
    gone.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=str(gone / "index.json")):
        idx.count(qs, cluster="ray")
    with pytest.raises(FileNotFoundError, match=str(gone / "index.json")):
        idx.window_counts(4, cluster="ray")


def test_cluster_argument_is_checked(indexes):
    idx = indexes["random"][0]
    with pytest.raises(ValueError, match="cluster must be None or 'ray'"):
        idx.count([[1, 2]], cluster="dask")
    with pytest.raises(ValueError, match="need cluster='ray'"):
        idx.count([[1, 2]], block_rows=4)


def test_cli_index_count_ray(cluster, indexes, tmp_path):
    from memtax.cli import main

    idx, docs, alphabet = indexes["repetitive"]
    qs = _queries(docs, np.random.default_rng(9), 6, alphabet)
    np.save(tmp_path / "q.npy", qs)
    args = ["index", "count", "--index", str(idx.path), "--queries", str(tmp_path / "q.npy")]
    assert main(args + ["--out", str(tmp_path / "ray.npy"), "--ray"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "ray.npy"), idx.count(qs))


def test_importing_starts_no_ray():
    import subprocess
    import sys

    code = ("import features.distributed, features.index.distributed, features.pipeline, ray; "
            "print(ray.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _part_recorder(log: str):
    """The window part task, appending each part's suffix count to `log`."""
    def task(shards, lo, hi, n, threads):
        import os

        from features.index.distributed import window_part_task

        out = window_part_task(shards, lo, hi, n, threads)
        fd = os.open(log, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
        os.write(fd, f"{int(sum(int(b) - int(a) for a, b in zip(lo, hi)))}\n".encode())
        os.close(fd)
        return out

    return task


@pytest.mark.parametrize("name", ["random", "repetitive", "uint32"])
def test_window_counts_by_parts_equal_single_process(cluster, indexes, name, tmp_path):
    """Parts of about 300 suffixes: many tasks, each holding every shard's share of one range
    of the n-gram order; their counts equal the single-process merge and brute force."""
    from features.index.distributed import window_counts_on_ray

    idx, docs, _ = indexes[name]
    corpus = np.concatenate(docs)
    doc_end = np.repeat(np.cumsum([len(d) for d in docs]), [len(d) for d in docs])
    for n in (1, 3, 8):
        log = tmp_path / f"parts-{n}"
        got = window_counts_on_ray(idx, n, part_rows=300, task_fn=_part_recorder(str(log)))
        np.testing.assert_array_equal(got, idx.window_counts(n))
        sizes = [int(x) for x in log.read_text().split()]
        assert sum(sizes) == idx.n_tokens  # the parts cover every suffix once
        # about equal parts; one n-gram's occurrences stay in one part (n = 1: a few big ones)
        assert max(sizes) <= 3 * 300 + int(got.max())
        if n == 8 and name != "repetitive":  # mostly distinct 8-grams: cuts anywhere
            assert len(sizes) >= idx.n_tokens // 300 // 2
        for p in range(0, idx.n_tokens, 97):  # brute force at every 97th position
            complete = p + n <= doc_end[p]
            assert got[p] == (brute_count(docs, corpus[p : p + n]) if complete else 0)


def test_equal_row_counts_survives_hash_collisions():
    """Every row given the same hash (a collision between all rows): the counts are still the
    brute-force ones, as they are with the real hashes."""
    from collections import Counter

    from features.index.window_parts import _equal_row_counts

    rows = np.random.default_rng(2).integers(0, 3, size=(500, 3)).astype(np.uint16)
    want = Counter(map(tuple, rows))
    expected = np.array([want[tuple(r)] for r in rows])
    np.testing.assert_array_equal(_equal_row_counts(rows, np.zeros(500, np.uint64)), expected)
    hashes = np.array([hash(tuple(r)) % 2**63 for r in rows], dtype=np.uint64)
    np.testing.assert_array_equal(_equal_row_counts(rows, hashes), expected)


def test_worker_killed_mid_window_part_is_retried(cluster, indexes, tmp_path):
    """A window part task that SIGKILLs its own worker on its first attempt: Ray retries it
    and the window counts are the single-process ones."""
    from features.index.distributed import window_counts_on_ray

    marker = tmp_path / "killed"

    def task(shards, lo, hi, n, threads, marker=str(marker)):
        import os
        import signal

        from features.index.distributed import window_part_task

        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return window_part_task(shards, lo, hi, n, threads)
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    idx = indexes["repetitive"][0]
    got = window_counts_on_ray(idx, 6, part_rows=1000, max_retries=3, task_fn=task)
    assert marker.exists()
    np.testing.assert_array_equal(got, idx.window_counts(6))


def test_worker_shard_cache_keeps_what_fits(indexes, monkeypatch):
    """A worker keeps the shards it opened, most recently used, while their sampled keys (8
    bytes a 32 tokens) fit the budget; a shard bigger than the budget is still kept alone."""
    import features.index.distributed as dist

    idx = indexes["random"][0]
    refs = dist._shard_refs(idx)[:3]
    keys = [s.n_tokens // 32 * 8 for s in idx.shards[:3]]
    monkeypatch.setattr(dist, "_OPENED", dist.OrderedDict())
    monkeypatch.setattr(dist, "SHARD_CACHE_BYTES", keys[1] + keys[2])
    first = dist._open_shard(*refs[0])
    assert dist._open_shard(*refs[0]) is first  # kept: the same object
    for ref in refs[1:]:
        dist._open_shard(*ref)
    assert list(dist._OPENED) == [tuple(r) for r in refs[1:]]  # the oldest left
    monkeypatch.setattr(dist, "SHARD_CACHE_BYTES", 1)
    dist._open_shard(*refs[0])
    assert list(dist._OPENED) == [tuple(refs[0])]
