"""Corpus-index benchmark: memtax's Numba suffix array against pydivsufsort, tokengrams and
infini-gram, side by side in one run (figures on a shared machine are noisy: read the ratios).

    .venv/bin/pytest benchmarks/bench_index.py -p no:cacheprovider --benchmark-disable-gc -q -s
    MEMTAX_BENCH_TOKENS=1e8 .venv/bin/pytest benchmarks/bench_index.py ...   # the target sizes (docs/notes/index.md)

Corpora (uint16, one document, Zipf over a 50,000-token vocabulary): N/10 and N tokens, and a
repetitive one of N/10 tokens where 30% of the text is copies of one 5,000-token document.
N = MEMTAX_BENCH_TOKENS (default 2e6). Anchors that are not installed are skipped
(`pip install 'memtax[anchors]'`). Every build runs in a fresh child process that reports its
own peak RSS; bytes/token = (peak RSS - the child's RSS before building) / N. Queries are 1e6
windows of n = 32 and 64 tokens drawn from the corpus (fewer for the anchors, which have no batch
call: their rate is measured on a sample). Counts must be identical across systems.
Results land in benchmarks/results/bench_index.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

N = int(float(os.environ.get("MEMTAX_BENCH_TOKENS", "2e6")))
N_QUERIES = int(float(os.environ.get("MEMTAX_BENCH_QUERIES", "1e6")))
ANCHOR_QUERIES = int(float(os.environ.get("MEMTAX_BENCH_ANCHOR_QUERIES", "20000")))
VOCAB = 50000
RESULTS: dict = {"tokens": N, "machine_cpus": os.cpu_count(), "runs": {}}
OUT = Path(__file__).parent / "results" / "bench_index.json"


def _save() -> None:
    """Write what has been measured so far (a killed run keeps its finished parts)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(RESULTS, indent=1, default=float))


def _zipf(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    p /= p.sum()
    perm = rng.permutation(VOCAB).astype(np.uint16)  # frequent ids spread over the vocabulary
    out = np.empty(n, dtype=np.uint16)
    step = 10_000_000
    for s in range(0, n, step):
        out[s : s + step] = perm[rng.choice(VOCAB, size=min(step, n - s), p=p)]
    return out


def _repetitive(n: int, seed: int) -> np.ndarray:
    """30% of the text: copies of one 5,000-token document, spread evenly."""
    toks = _zipf(n, seed)
    doc = toks[:5000].copy()
    copies = int(0.3 * n) // 5000
    stride = n // max(1, copies)
    for i in range(copies):
        toks[i * stride : i * stride + 5000] = doc
    return toks


@pytest.fixture(scope="module")
def corpora():
    tmp = Path(tempfile.mkdtemp(prefix="memtax-bench-index-"))
    sizes = {"zipf_small": max(1000, N // 10), "zipf": N, "repetitive": max(10000, N // 10)}
    paths = {}
    for name, n in sizes.items():
        arr = _repetitive(n, 1) if name == "repetitive" else _zipf(n, 0)
        paths[name] = tmp / f"{name}.npy"
        np.save(paths[name], arr)
        arr.tofile(tmp / f"{name}.u16")  # raw tokens for tokengrams
    yield tmp, paths
    shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- builds (child processes)
_CHILD = r"""
import json, os, resource, sys, time
import numpy as np
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
system, src, out = sys.argv[1:4]
tokens = np.load(src)
n = tokens.shape[0]
if system == "memtax":
    from features import CorpusIndex
    from features.index.suffix_array import build_suffix_array
    import tempfile
    # JIT compile / cache load of every jitted step of a build, outside the timed build
    build_suffix_array(tokens[:2000].copy(), np.array([0, 2000]))
    CorpusIndex.build(tokens[:5000].copy(), tempfile.mkdtemp() + "/warm", progress=False)
elif system == "pydivsufsort":
    from pydivsufsort import divsufsort
elif system == "tokengrams":
    from tokengrams import MemmapIndex
base = rss()
t0 = time.perf_counter()
if system == "memtax":
    CorpusIndex.build(tokens, out, progress=False)
elif system == "pydivsufsort":
    sa = divsufsort(tokens.copy())
elif system == "tokengrams":
    MemmapIndex.build(src[:-4] + ".u16", out + ".table", vocab=2**16)
elif system == "infinigram":
    import subprocess
    os.makedirs(out)
    with open(os.path.join(out, "tokenized.0"), "wb") as f:
        f.write(b"\xff\xff")
        f.write(tokens.tobytes())
    np.array([0], dtype=np.uint64).tofile(os.path.join(out, "offset.0"))
    subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", out,
                    "--save_dir", out, "--token_dtype", "u16", "--cpus", str(os.cpu_count()),
                    "--mem", "16", "--ulimit", "20000"], check=True, capture_output=True)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
if system == "pydivsufsort":
    np.save(out + ".npy", sa)  # for the count-agreement check; not timed
print(json.dumps({"seconds": seconds, "peak_bytes": max(peak - base, child_peak), "n": n}))
"""


def _disk_bytes(path: str) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return 0


def _build(system: str, src: Path, out: Path) -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, system, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    if res.returncode:
        raise RuntimeError(f"{system} build failed: {res.stderr[-2000:]}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    disk = _disk_bytes(str(out)) + _disk_bytes(str(out) + ".table")
    if system == "pydivsufsort":  # in memory only; what it would take to keep: tokens + SA
        disk = _disk_bytes(str(out) + ".npy") + 2 * info["n"]
    if system == "tokengrams":
        disk += _disk_bytes(str(src)[:-4] + ".u16")  # its index needs the token file too
    info["disk_bytes_per_token"] = disk / info["n"] if disk else None
    info["peak_bytes_per_token"] = info["peak_bytes"] / info["n"]
    return info


def _available(system: str) -> bool:
    mod = {
        "pydivsufsort": "pydivsufsort",
        "tokengrams": "tokengrams",
        "infinigram": "infini_gram",
        "memtax": "numba",
    }[system]
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


SYSTEMS = ["memtax", "pydivsufsort", "tokengrams", "infinigram"]
SMALL_ROUNDS = int(os.environ.get("MEMTAX_BENCH_SMALL_ROUNDS", 3))
# memtax's sub-second 1e7 builds move most between children (cold memory on this VM): more rounds
MEMTAX_ROUNDS = int(os.environ.get("MEMTAX_BENCH_MEMTAX_ROUNDS", 5))


@pytest.mark.parametrize("corpus", ["zipf_small", "zipf", "repetitive"])
@pytest.mark.parametrize("system", SYSTEMS)
def test_build(benchmark, corpora, system, corpus):
    if not _available(system):
        pytest.skip(f"{system} not installed")
    tmp, paths = corpora
    out = tmp / f"{system}-{corpus}"
    # builds move by +-20-30% between child processes on this shared machine: memtax's builds take
    # the median of MEMTAX_ROUNDS fresh builds at every size, the anchors' small-corpus builds
    # (the repetitive-slowdown ratio) of SMALL_ROUNDS; the anchors' long builds at full size run once
    rounds = 1 if corpus == "zipf" and system != "memtax" else SMALL_ROUNDS
    if system == "memtax":
        rounds = MEMTAX_ROUNDS
    infos = []

    def build_once():
        for p in (out, Path(str(out) + ".table"), Path(str(out) + ".npy")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        # flush the previous builds' output (GBs for the anchors) first, so that its writeback
        # does not compete with this build; untimed, same for every system
        os.sync()
        infos.append(_build(system, paths[corpus], out))

    benchmark.pedantic(build_once, rounds=rounds, iterations=1)
    info = dict(infos[-1])
    info["seconds"] = float(np.median([i["seconds"] for i in infos]))
    info["seconds_all"] = [i["seconds"] for i in infos]
    info["peak_bytes_per_token"] = max(i["peak_bytes_per_token"] for i in infos)
    benchmark.extra_info.update(info)
    RESULTS["runs"].setdefault(corpus, {})[system] = {"build": info}
    _save()


# ---------------------------------------------------------------- queries
def _queries(tokens: np.ndarray, n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, tokens.shape[0] - n, size=k)
    return np.lib.stride_tricks.sliding_window_view(tokens, n)[starts]


@pytest.mark.parametrize("n", [32, 64])
def test_count_and_agreement(benchmark, corpora, n):
    from features import CorpusIndex

    tmp, paths = corpora
    corpus = "zipf"
    if not (tmp / f"memtax-{corpus}").exists():
        pytest.skip("memtax build did not run")
    tokens = np.load(paths[corpus])
    idx = CorpusIndex.open(tmp / f"memtax-{corpus}", verify=False)
    q = np.ascontiguousarray(_queries(tokens, n, N_QUERIES, n))
    idx.count(q[:1000])  # JIT / cache load
    os.sync()  # no writeback of the builds' output during the timed counts
    cpu = []  # CPU seconds of all threads per round: the machine is shared, wall time is noisy

    def timed_count(q):
        c0 = time.process_time()
        out = idx.count(q)
        cpu.append(time.process_time() - c0)
        return out

    counts = benchmark.pedantic(timed_count, args=(q,), rounds=3, iterations=1)
    rate = N_QUERIES / benchmark.stats.stats.median
    rec = {
        "memtax_queries_per_s": rate,
        "n_queries": N_QUERIES,
        "memtax_cpu_seconds_median": float(np.median(cpu)),
        # what two otherwise idle cores would give if the CPU time split evenly over them
        "memtax_queries_per_cpu_s": N_QUERIES / float(np.median(cpu)),
    }
    sample = q[:ANCHOR_QUERIES]
    agree = {}
    # pydivsufsort: its SA of the uint16 array is a token SA; count by binary search (exact)
    if _available("pydivsufsort"):
        from pydivsufsort import divsufsort

        saved = tmp / f"pydivsufsort-{corpus}.npy"
        sa = np.load(saved, mmap_mode="r") if saved.exists() else divsufsort(tokens.copy())
        big = tokens.astype(">u2")  # big-endian bytes compare like the token sequences
        ref = [_count_sa(big, sa, row) for row in sample[:1000]]
        agree["pydivsufsort"] = bool(np.array_equal(ref, counts[:1000]))
    if _available("tokengrams") and (tmp / f"tokengrams-{corpus}.table").exists():
        from tokengrams import MemmapIndex

        tg = MemmapIndex(str(paths[corpus])[:-4] + ".u16", str(tmp / f"tokengrams-{corpus}.table"))
        rows = [r.tolist() for r in sample]
        t0 = time.perf_counter()
        ref = [tg.count(r) for r in rows]
        rec["tokengrams_queries_per_s"] = len(rows) / (time.perf_counter() - t0)
        agree["tokengrams"] = bool(np.array_equal(ref, counts[: len(rows)]))
    if _available("infinigram") and (tmp / f"infinigram-{corpus}").exists():
        from infini_gram.engine import InfiniGramEngine

        eng = InfiniGramEngine(
            index_dir=str(tmp / f"infinigram-{corpus}"),
            eos_token_id=VOCAB,  # any id below 65535 that the corpus does not use
            ds_prefetch_depth=0,
            sa_prefetch_depth=0,
            od_prefetch_depth=0,
        )
        rows = [r.tolist() for r in sample[: ANCHOR_QUERIES // 4]]
        t0 = time.perf_counter()
        ref = [eng.count(input_ids=r)["count"] for r in rows]
        rec["infinigram_queries_per_s"] = len(rows) / (time.perf_counter() - t0)
        agree["infinigram"] = bool(np.array_equal(ref, counts[: len(rows)]))
    rec["identical_counts"] = agree
    benchmark.extra_info.update(rec)
    RESULTS.setdefault("count", {})[f"n{n}"] = rec
    _save()
    assert all(agree.values()), agree


def _count_sa(big: np.ndarray, sa: np.ndarray, q: np.ndarray) -> int:
    """Reference count from a plain token suffix array (pydivsufsort's), by binary search over
    the big-endian tokens `big`."""
    n = q.shape[0]
    qb = q.astype(">u2").tobytes()

    def key(i):
        return big[sa[i] : sa[i] + n].tobytes()

    def bound(strict):
        lo, hi = 0, sa.shape[0]
        while lo < hi:
            mid = (lo + hi) // 2
            k = key(mid)
            if k < qb or (strict and k == qb):
                lo = mid + 1
            else:
                hi = mid
        return lo

    return bound(True) - bound(False)


def test_window_counts(benchmark, corpora):
    from features import CorpusIndex

    tmp, _ = corpora
    if not (tmp / "memtax-zipf").exists():
        pytest.skip("memtax build did not run")
    idx = CorpusIndex.open(tmp / "memtax-zipf", verify=False)
    benchmark.pedantic(idx.window_counts, args=(32,), rounds=1, iterations=1)
    RESULTS["window_counts_32_seconds"] = benchmark.stats.stats.median
    _save()


def _window_counts_by_counting(idx, n: int) -> np.ndarray:
    """The previous sharded method, kept as this benchmark's baseline: each shard's local counts
    plus a `count` of all its complete windows in every other shard (O(N x shards))."""
    out = np.empty(idx.n_tokens, dtype=np.int64)
    for k, (s, base) in enumerate(zip(idx.shards, idx.shard_starts[:-1])):
        local = s.window_counts(n)
        valid = np.flatnonzero(local)
        q = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(s.tokens, n)[valid])
        for j, other in enumerate(idx.shards):
            if j != k:
                local[valid] += other.count(q)
        out[base : base + s.n_tokens] = local
    return out


SHARDS = int(os.environ.get("MEMTAX_BENCH_SHARDS", 4))


def test_sharded_window_counts(benchmark, corpora):
    """window_counts(32) of the N/10 Zipf corpus cut into 40 documents and SHARDS shards: the
    k-way merge of the shards' suffix arrays against counting every shard's windows in every
    other shard (the previous method), and against the unsharded index (identical counts)."""
    from features import CorpusIndex

    tmp, paths = corpora
    tokens = np.load(paths["zipf_small"])
    docs = np.array_split(tokens, 40)
    sharded = CorpusIndex.build(docs, tmp / "wc-sharded", progress=False,
                                shard_tokens=tokens.shape[0] // SHARDS + 1)
    whole = CorpusIndex.build(docs, tmp / "wc-whole", progress=False)
    sharded.window_counts(32)  # JIT / cache load
    merged = benchmark.pedantic(sharded.window_counts, args=(32,), rounds=3, iterations=1)
    t0 = time.perf_counter()
    by_counting = _window_counts_by_counting(sharded, 32)
    counting_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = whole.window_counts(32)
    whole_s = time.perf_counter() - t0
    merge_s = benchmark.stats.stats.median
    RESULTS["sharded_window_counts_32"] = {
        "tokens": int(tokens.shape[0]),
        "shards": len(sharded.shards),
        "merge_seconds_median": merge_s,
        "per_shard_counting_seconds": counting_s,
        "unsharded_seconds": whole_s,
        "speedup_vs_per_shard_counting": counting_s / merge_s,
    }
    _save()
    np.testing.assert_array_equal(merged, ref)
    np.testing.assert_array_equal(by_counting, ref)


def test_zz_summary():
    """Ratios against the anchors, written to benchmarks/results/bench_index.json."""
    runs = RESULTS["runs"]
    summary = {}
    for corpus, by_system in runs.items():
        mt = by_system.get("memtax", {}).get("build")
        if not mt:
            continue
        row = {
            "memtax_seconds": mt["seconds"],
            "memtax_peak_bytes_per_token": mt["peak_bytes_per_token"],
            "memtax_disk_bytes_per_token": mt["disk_bytes_per_token"],
        }
        for system, rec in by_system.items():
            if system != "memtax":
                row[f"speedup_vs_{system}"] = rec["build"]["seconds"] / mt["seconds"]
        summary[corpus] = row
    if "repetitive" in runs and "zipf_small" in runs:
        for system in SYSTEMS:
            a = runs["repetitive"].get(system, {}).get("build")
            b = runs["zipf_small"].get(system, {}).get("build")
            if a and b:
                summary.setdefault("repetitive_slowdown", {})[system] = a["seconds"] / b["seconds"]
    RESULTS["summary"] = summary
    _save()
    print(json.dumps(summary, indent=1, default=float))
