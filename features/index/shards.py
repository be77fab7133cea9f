"""Split a corpus into shards at document boundaries and build them: in this process, in a local
process pool, or on a Ray cluster (optional extra `memtax[ray]`).

Each shard is a complete single index in its own folder; the shard inputs (tokens, offsets) are
written by the caller, so a worker only needs the folder path (a shared file system on a
cluster) and returns the shard's header.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from features.index.suffix_array import KEY_BATCHES, consecutive_ranges

__all__ = ["plan_shards", "run_builds"]


def plan_shards(doc_offsets: np.ndarray, shard_tokens: int) -> list[tuple[int, int]]:
    """Consecutive document ranges [d0, d1) of about `shard_tokens` tokens each (at least one
    document per shard; a document longer than shard_tokens gets a shard of its own)."""
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be a positive integer, got {shard_tokens}")
    return consecutive_ranges(np.asarray(doc_offsets, dtype=np.int64), shard_tokens)


def _worker(folder: str, meta: dict, threads: int, key_batches: int = KEY_BATCHES) -> dict:
    import numba

    from features.index.single import build_folder

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return build_folder(folder, meta, key_batches=key_batches)


def run_builds(
    folders: list[str],
    meta: dict,
    *,
    workers: int = 1,
    use_ray: bool = False,
    on_done: Callable[[int, dict], None] | None = None,
    key_batches: int = KEY_BATCHES,
) -> list[dict]:
    """Build every folder's suffix array; returns their headers in order. `workers` processes
    share the CPUs (Numba threads split between them). With `use_ray`, tasks go to the Ray
    cluster `ray.init()` connects to (a local one when none is running). `key_batches`: see
    `features.index.suffix_array.build_suffix_array`."""
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}")
    headers: list[dict | None] = [None] * len(folders)
    if use_ray:
        try:
            import ray
        except ImportError as exc:
            raise ValueError("use_ray=True needs Ray: pip install 'memtax[ray]'") from exc
        if not ray.is_initialized():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_worker)
        refs = [remote.remote(f, meta, 1, key_batches) for f in folders]
        pending = {r: i for i, r in enumerate(refs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            headers[i] = ray.get(done[0])
            if on_done:
                on_done(i, headers[i])
        return headers
    if workers == 1 or len(folders) == 1:
        for i, f in enumerate(folders):
            headers[i] = _worker(f, meta, os.cpu_count() or 1, key_batches)
            if on_done:
                on_done(i, headers[i])
        return headers
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn: Numba's thread pool and fork do not mix
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futs = {pool.submit(_worker, f, meta, threads, key_batches): i
                for i, f in enumerate(folders)}
        from concurrent.futures import as_completed

        for fut in as_completed(futs):
            i = futs[fut]
            headers[i] = fut.result()
            if on_done:
                on_done(i, headers[i])
    return headers
