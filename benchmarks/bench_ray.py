"""Corpus counts past one process: per-shard build and count figures, then single-process
against Ray tasks per (shard, block of queries), all in one run.

    .venv/bin/python benchmarks/bench_ray.py            # or through pytest (make bench)
    MEMTAX_BENCH_RAY_SCALE=1e7,1e8 MEMTAX_BENCH_RAY_SHARDS=16 .venv/bin/python benchmarks/bench_ray.py

1. Scale (one shard of N tokens, for N in MEMTAX_BENCH_RAY_SCALE, default 1e7 and 1e8): a child
   process generates a Zipf corpus (uint16, 50,000 ids, 2049-token sequences), builds one index
   and counts 1e6 queries of n = 32 with one Numba thread; it reports build seconds, peak RSS of
   the build and of the count above its baseline (VmHWM, reset through /proc/self/clear_refs)
   and disk bytes.
2. Distribution: MEMTAX_BENCH_RAY_SHARDS (16) shards of MEMTAX_BENCH_RAY_SHARD_TOKENS (1e7)
   tokens, MEMTAX_BENCH_RAY_QUERIES (1e6) queries of n = 32 (90% windows of the corpus, 10%
   random). Single process with one Numba thread (one worker's share) and with every thread,
   against a local Ray cluster of 2 worker processes (one thread each), warm (workers started
   and shards opened by a first call, whose time is reported too). Ray overhead per task:
   (Ray wall - single 1-thread wall / 2) / tasks, and the wall per task of a run of empty tasks.
The machine's load average is recorded around every phase: on a shared machine the ratios are
only as good as the load allows.
3. The Pile plan (with both 1e7 and 1e8 measured): shards, disk, memory, node-hours and wall
   time on 8 and 64 nodes, from these figures and the assumptions in `PILE`.
Results: benchmarks/results/bench_ray.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from features.index.distributed import BLOCK_ROWS

VOCAB, SEQ, N_GRAM = 50_000, 2049, 32
SCALE = [int(float(x)) for x in os.environ.get("MEMTAX_BENCH_RAY_SCALE", "1e7,1e8").split(",")]
SHARDS = int(os.environ.get("MEMTAX_BENCH_RAY_SHARDS", "16"))
SHARD_TOKENS = int(float(os.environ.get("MEMTAX_BENCH_RAY_SHARD_TOKENS", "1e7")))
QUERIES = int(float(os.environ.get("MEMTAX_BENCH_RAY_QUERIES", "1e6")))
OUT = Path(os.environ.get("MEMTAX_BENCH_RAY_OUT",
                         Path(__file__).parent / "results" / "bench_ray.json"))
SAMPLES = int(float(os.environ.get("MEMTAX_BENCH_RAY_SAMPLES", "1e5")))
FEATURE_SAMPLES = int(float(os.environ.get("MEMTAX_BENCH_RAY_FEATURE_SAMPLES", "2e4")))
RESULTS: dict = {"machine_cpus": os.cpu_count(), "scale": {}, "distributed": {}}


def _save() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(RESULTS, indent=1, default=float))


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def zipf_tokens(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, VOCAB + 1)
    p /= p.sum()
    perm = rng.permutation(VOCAB).astype(np.uint16)
    out = np.empty(n, dtype=np.uint16)
    for s in range(0, n, 10_000_000):
        out[s : s + 10_000_000] = perm[rng.choice(VOCAB, size=min(10_000_000, n - s), p=p)]
    return out


def make_queries(tokens: np.ndarray, q: int, seed: int) -> np.ndarray:
    """q queries of N_GRAM tokens: 90% windows of the corpus, 10% random ids."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, tokens.shape[0] - N_GRAM, size=q)
    out = tokens[starts[:, None] + np.arange(N_GRAM)]
    k = q // 10
    out[:k] = rng.integers(0, VOCAB, size=(k, N_GRAM)).astype(tokens.dtype)
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------- 1. one shard, in a child
_CHILD = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
import numba, numpy as np
from bench_ray import zipf_tokens, make_queries, SEQ, QUERIES
from features import CorpusIndex

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
def reset():
    open("/proc/self/clear_refs", "w").write("5")

n, folder = {n}, {folder!r}
toks = zipf_tokens(n, 1)
qs = make_queries(toks, QUERIES, 2)
reset(); base = rss(); t0 = time.perf_counter()
idx = CorpusIndex.build(toks, folder, sequence_length=SEQ, progress=False)
build = time.perf_counter() - t0; build_peak = hwm() - base
del idx, toks
idx = CorpusIndex.open(folder, verify=False)
numba.set_num_threads(1)
idx.count(qs[:2000])  # compile / load the jit caches
reset(); base = rss(); t0 = time.perf_counter()
c1 = idx.count(qs)
first = time.perf_counter() - t0; count_peak = hwm() - base
t0 = time.perf_counter(); idx.count(qs); second = time.perf_counter() - t0
st = idx.stats()
print(json.dumps(dict(tokens=n, build_s=build, sa_build_s=st["sa_build_seconds"],
      build_peak_bytes=build_peak, build_bytes_per_token=build_peak / n,
      disk_bytes=st["disk_bytes"], count_first_s=first, count_warm_s=second,
      queries_per_s_1thread=QUERIES / second, count_peak_bytes_above_open=count_peak)))
"""


def scale_point(n: int, tmp: Path) -> dict:
    code = _CHILD.format(bench=str(Path(__file__).parent), n=n, folder=str(tmp / f"one-{n}"))
    load0 = _load()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["load_before_after"] = [load0, _load()]
    return out


# ----------------------------------------------------------------- 2. single vs Ray
def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def distributed(tmp: Path) -> dict:
    import numba
    import ray

    from features import CorpusIndex

    res: dict = {"shards": SHARDS, "shard_tokens": SHARD_TOKENS, "queries": QUERIES,
                 "n": N_GRAM, "load_start": _load()}
    per_shard = SHARD_TOKENS // SEQ * SEQ  # whole sequences: exactly SHARDS shards
    toks = zipf_tokens(SHARDS * per_shard, 3)
    qs = make_queries(toks, QUERIES, 4)
    t0 = time.perf_counter()
    idx = CorpusIndex.build(toks, tmp / "sharded", sequence_length=SEQ, shard_tokens=per_shard,
                            workers=2, progress=False)
    res["build_wall_s_2_workers"] = time.perf_counter() - t0
    res["sa_build_s_per_shard"] = [s.meta["sa_build_seconds"] for s in idx.shards]
    res["shards"] = len(idx.shards)
    del toks
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    idx.count(qs[:2000])  # jit caches loaded, outside the timing
    res["single_1thread_first_s"], single = _timed(lambda: idx.count(qs))
    res["single_1thread_s"], _ = _timed(lambda: idx.count(qs))
    numba.set_num_threads(threads)
    res["single_all_threads_s"], _ = _timed(lambda: idx.count(qs))
    res["load_after_single"] = _load()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res["ray_first_call_s"], _ = _timed(lambda: idx.count(qs, cluster="ray"))
        res["ray_s"], got = _timed(lambda: idx.count(qs, cluster="ray"))
        res["identical"] = bool(np.array_equal(got, single))
        blocks = -(-QUERIES // BLOCK_ROWS)
        res["ray_tasks"] = blocks * len(idx.shards)
        res["speedup_vs_single_1thread"] = res["single_1thread_s"] / res["ray_s"]
        res["speedup_vs_single_all_threads"] = res["single_all_threads_s"] / res["ray_s"]
        res["overhead_per_task_s"] = (res["ray_s"] - res["single_1thread_s"] / 2) / res["ray_tasks"]
        tiny = qs[:256]
        empty_s, _ = _timed(lambda: idx.count(tiny, cluster="ray", block_rows=16))
        res["empty_tasks"] = 16 * len(idx.shards)
        res["wall_per_empty_task_s"] = empty_s / res["empty_tasks"]
        res["load_before_features_counts"] = _load()
        res["feature_counts"] = feature_counts(idx, threads)
        res["load_before_features"] = _load()
        res["features"] = features_table(idx, threads)
        res["load_before_window_counts"] = _load()
        res["window_counts"] = window_counts(idx, threads)
    finally:
        ray.shutdown()
    res["load_end"] = _load()
    return res


def feature_counts(idx, threads: int) -> dict:
    """The features' duplicate counts (continuation, prompt, whole sample; distinct rows) of
    SAMPLES 64-token windows of the first shard: single process (`duplicate_counts`, all
    threads) against the Ray features path (`group_counts`: count tasks per (shard, block), one
    stream)."""
    import numba

    from features.distributed import group_counts
    from features.duplicates import duplicate_counts

    toks = np.asarray(idx.shards[0].tokens)
    starts = np.random.default_rng(5).integers(0, toks.shape[0] - 2 * N_GRAM, size=SAMPLES)
    samples = toks[starts[:, None] + np.arange(2 * N_GRAM)]  # windows of the corpus
    numba.set_num_threads(threads)
    out = {"samples": SAMPLES, "sample_tokens": 2 * N_GRAM}
    out["single_all_threads_s"], single = _timed(lambda: duplicate_counts(idx, samples))
    out["ray_s"], got = _timed(lambda: group_counts(idx, samples, prefix_len=N_GRAM))
    out["identical"] = all(np.array_equal(single[k], got[k]) for k in single)
    out["speedup_vs_single_all_threads"] = out["single_all_threads_s"] / out["ray_s"]
    return out


def features_table(idx, threads: int) -> dict:
    """features.compute of FEATURE_SAMPLES 64-token windows (gpt-neox tokenizer, no semantic
    matches, chunks of 2,048): single process (2 text workers, all Numba threads) against
    cluster="ray" (chunk tasks + count tasks per (shard, block))."""
    import warnings

    import numba

    import features
    from features.tokenizers import load_tokenizer

    toks = np.asarray(idx.shards[1].tokens)
    starts = np.random.default_rng(6).integers(0, toks.shape[0] - 2 * N_GRAM,
                                               size=FEATURE_SAMPLES)
    samples = toks[starts[:, None] + np.arange(2 * N_GRAM)].astype(np.int64)
    tok = load_tokenizer("gpt-neox")
    numba.set_num_threads(threads)

    def run(**kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "skipping semantic matches"
            return features.compute(None, samples, index=idx, tokenizer=tok, semantic=False,
                                    chunk_size=2048, progress=False, **kw)

    out = {"samples": FEATURE_SAMPLES, "chunk_size": 2048}
    out["single_s"], single = _timed(run)
    out["ray_s"], got = _timed(lambda: run(cluster="ray"))
    out["identical"] = bool(got.equals(single, check_metadata=True))
    out["speedup_vs_single"] = out["single_s"] / out["ray_s"]
    return out


def window_counts(idx, threads: int, n: int = N_GRAM) -> dict:
    """window_counts(n) of the whole sharded index: single process (each shard's local counts,
    then the k-way merge holding every shard, all threads) against Ray tasks per part of the
    n-gram order (`window_parts`), warm."""
    import numba

    from features import CorpusIndex

    numba.set_num_threads(threads)
    out = {"n": n, "tokens": idx.n_tokens}
    # the workers load window_parts' jit caches on a small index first (outside the timing)
    small = CorpusIndex.build(zipf_tokens(40_000, 9), Path(idx.path).parent / "warm-windows",
                              sequence_length=SEQ, shard_tokens=20_000, progress=False)
    small.window_counts(n, cluster="ray", part_rows=2_000)
    out["single_all_threads_s"], single = _timed(lambda: idx.window_counts(n))
    out["ray_s"], got = _timed(lambda: idx.window_counts(n, cluster="ray"))
    out["identical"] = bool(np.array_equal(single, got))
    out["ray_parts"] = max(4, -(-idx.n_tokens // (1 << 21)))
    out["speedup_vs_single_all_threads"] = out["single_all_threads_s"] / out["ray_s"]
    return out


# ----------------------------------------------------------------- 3. the Pile, from the above
PILE = {"tokens": 207e9, "sequences": 146e6, "queries": 440e6, "shard_tokens": 1e9,
        "node_cores": 32, "node_ram_gb": 256, "text_feature_core_s_per_sample": 138e-6,
        "block_rows": BLOCK_ROWS}


def pile_plan(res: dict) -> dict:
    """Shards, disk, memory, node-hours and wall time for the Pile from this run's figures.
    Assumptions (named in PILE and docs/notes/index.md): a server core does what one core of
    this machine does; build and count time grow from 1e8 to 1e9 tokens a shard by the factor
    measured from 1e7 to 1e8 (builds: at least 1, no per-token gain); builds use a node's cores with the parallel efficiency measured
    here (core-seconds = wall x 2 on this 2-core machine); text features at the measured
    138 us of CPU a sample."""
    small, big = res["scale"][str(int(1e7))], res["scale"][str(int(1e8))]
    shards = int(np.ceil(PILE["tokens"] / PILE["shard_tokens"]))
    # per-token build time never taken to fall with size (at 1e7 fixed costs weigh more)
    build_growth = max(1.0, big["build_s"] / (10 * small["build_s"]))
    build_core_s = big["build_s"] * 2 * 10 * build_growth  # one 1e9 shard, in core-seconds
    rate_growth = big["queries_per_s_1thread"] / small["queries_per_s_1thread"]
    rate_1e9 = big["queries_per_s_1thread"] * rate_growth  # one thread, one 1e9 shard
    tasks = int(np.ceil(PILE["queries"] / PILE["block_rows"])) * shards
    overhead = max(0.0, res["distributed"]["overhead_per_task_s"])
    count_core_s = PILE["queries"] * shards / rate_1e9 + tasks * overhead
    text_core_s = PILE["sequences"] * PILE["text_feature_core_s_per_sample"]
    cores = PILE["node_cores"]
    stages = {"build": build_core_s * shards, "count": count_core_s, "text features": text_core_s}
    windows = res["distributed"].get("window_counts")
    if windows:  # Ray parts: 2 workers' seconds per token, at 1e8-1e9 tokens as measured
        stages["window counts (parts)"] = PILE["tokens"] * windows["ray_s"] * 2 / windows["tokens"]
    plan = {"assumptions": PILE, "shards": shards,
            "disk_tb": PILE["tokens"] * big["disk_bytes"] / big["tokens"] / 1e12,
            "build_peak_gb_per_shard": big["build_bytes_per_token"] * PILE["shard_tokens"] / 1e9,
            # a count's scratch grows with its queries (1e6 in part 1), not with the shard; a
            # worker also keeps 2 shards' sampled keys (every 32nd position, 8 bytes)
            "count_peak_gb_per_worker_above_maps": (
                big["count_peak_bytes_above_open"] * PILE["block_rows"] / QUERIES
                + 2 * PILE["shard_tokens"] / 32 * 8) / 1e9,
            "shard_map_gb": big["disk_bytes"] / big["tokens"] * PILE["shard_tokens"] / 1e9,
            "build_core_s_per_shard": build_core_s, "count_q_per_s_1thread_1e9": rate_1e9,
            "count_tasks": tasks, "node_hours": {}, "wall_h": {}}
    for stage, core_s in stages.items():
        plan["node_hours"][stage] = core_s / cores / 3600
        for nodes in (8, 64):
            # builds: whole shards per node, one after another, on all its cores
            wall = (np.ceil(shards / nodes) * build_core_s / cores if stage == "build"
                    else core_s / (cores * nodes))
            plan["wall_h"][f"{stage}@{nodes}"] = wall / 3600
    return plan


def main() -> dict:
    RESULTS["load_start"] = _load()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        for n in SCALE:
            RESULTS["scale"][str(n)] = scale_point(n, Path(tmp))
            _save()
            print(json.dumps(RESULTS["scale"][str(n)]), flush=True)
        RESULTS["distributed"] = distributed(Path(tmp))
    RESULTS["load_end"] = _load()
    if {str(int(1e7)), str(int(1e8))} <= set(RESULTS["scale"]):
        RESULTS["pile_plan"] = pile_plan(RESULTS)
    _save()
    print(json.dumps(RESULTS["distributed"], indent=1), flush=True)
    return RESULTS


def test_bench_ray():
    out = main()
    assert out["distributed"]["identical"]
    assert out["distributed"]["feature_counts"]["identical"]
    assert out["distributed"]["features"]["identical"]
    assert out["distributed"]["window_counts"]["identical"]


if __name__ == "__main__":
    main()
