"""Corpus counts on a Ray cluster: one task per (shard, block of queries).

    counts = idx.count(queries, cluster="ray")    # the cluster this process joined, else a local one
    counts = idx.count(queries, cluster="ray", ray_address="auto")   # a running cluster
    wc = idx.window_counts(32, cluster="ray")

Each count task opens its shard where it lies (the index folder must be on a file system every
worker mounts at the same path), counts one block of queries in it and returns the block's
partial counts; the driver adds the partials of a block in shard order, so the result is the
single-process one exactly. A task holds one shard (memory-mapped) and one block (`block_rows`
queries) at a time; at most `in_flight` tasks are queued and about one group of blocks
(`group_rows` queries) is in the object store, so the driver's and the object store's memory
stay bounded too. A task whose worker process dies is retried by Ray (`max_retries`); a worker
that cannot see a shard's files fails the run with FileNotFoundError naming the path.

Placement: a shard's count tasks prefer the node the cluster says holds it (`shard_nodes`: a
node that declares the custom resource `shard:NAME`, or a `placement` mapping shard -> node).
They ask for it by soft node affinity, not by requesting the resource: a task that requested a
resource no alive node has would wait forever, while a soft affinity to a node that is gone
falls back to any node. Without a declaration or mapping, tasks run anywhere.

Window counts: cut n-grams split every shard's suffix array into parts of the n-gram order
(`window_parts`); one task per part counts the equal windows of its part over every shard (a
part holds every occurrence of its n-grams), and the driver writes them at their positions.

Ray starts only when a function here is called (`connect`): never at import.
"""

from __future__ import annotations

import functools
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["connect", "count_on_ray", "count_arrays_on_ray", "window_counts_on_ray", "run_tasks",
           "shard_nodes", "checked_queries", "get_result", "BLOCK_ROWS", "GROUP_ROWS"]

BLOCK_ROWS = 1 << 18  # queries per task: (262,144 x n) tokens in, 2 MiB of counts out
GROUP_ROWS = 1 << 22  # queries in the object store at once (256 MiB at n = 32, uint16)


def connect(address: str | None = None, num_cpus: int | None = None):
    """The `ray` module, joined to a cluster: the one this process already joined, else the
    cluster at `address` ("auto", "ray://host:10001", "host:6379"), else a new local one with
    `num_cpus` CPUs (all when None). A local cluster stays up for later calls; `ray.shutdown()`
    ends it."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("cluster='ray' needs Ray: pip install 'memtax[ray]'") from exc
    if ray.is_initialized():
        return ray
    if address is not None:
        ray.init(address=address, log_to_driver=False)
    else:
        if num_cpus is not None and (not isinstance(num_cpus, int) or num_cpus < 1):
            raise ValueError(f"num_cpus must be a positive integer or None, got {num_cpus!r}")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray


def run_tasks(ray, submit: Iterator, on_result: Callable, *, total: int, in_flight: int,
              desc: str, progress: bool) -> None:
    """Submit the (key, ObjectRef) pairs `submit` yields, at most `in_flight` unfinished at a
    time, and call `on_result(key, value)` as each finishes (in completion order), with a tqdm
    bar over the `total` tasks. A task's exception is raised here (the rest are cancelled)."""
    from tqdm.auto import tqdm

    pending: dict = {}
    bar = tqdm(total=total, desc=desc, unit="task", disable=not progress, leave=False)
    try:
        for key, ref in submit:
            pending[ref] = key
            while len(pending) >= in_flight:
                _finish_one(ray, pending, on_result, bar)
        while pending:
            _finish_one(ray, pending, on_result, bar)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=False)


def _finish_one(ray, pending: dict, on_result: Callable, bar) -> None:
    done, _ = ray.wait(list(pending), num_returns=1)
    key = pending.pop(done[0])
    on_result(key, get_result(ray, done[0]))
    bar.update(1)


def get_result(ray, ref):
    """ray.get, with a worker's FileNotFoundError raised as itself (not Ray's wrapper)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if hasattr(exc, "cause") else None
        if isinstance(cause, FileNotFoundError):
            raise FileNotFoundError(str(cause)) from None
        raise


# ------------------------------------------------------------------ worker side
def visible_folder(folder: str) -> Path:
    """`folder` as a Path when this process sees its header; FileNotFoundError naming the path
    and the host otherwise (a worker without the shared file system)."""
    from features.index import format as fmt

    path = Path(folder)
    if not (path / fmt.HEADER).is_file():
        raise FileNotFoundError(
            f"Ray worker on host {socket.gethostname()!r} (pid {os.getpid()}) cannot see the "
            f"corpus index files at {str(path / fmt.HEADER)!r}: the index must lie on a file "
            "system every worker mounts at the same path"
        )
    return path


SHARD_CACHE_BYTES = 1 << 30  # a worker's opened shards' sampled keys (8 bytes a 32 tokens)
_OPENED: OrderedDict = OrderedDict()  # (folder, digest) -> Shard, least recently used first


def _load_shard(folder: str, digest: str | None):
    """The shard at `folder`, memory-mapped; a shard rebuilt since (another header sha256) is
    refused."""
    from features.index import format as fmt
    from features.index.single import Shard

    if digest is not None and fmt.header_sha256(folder) != digest:
        raise ValueError(f"shard {folder!r} is not the one the index was built with (its "
                         "header's sha256 differs on this worker)")
    return Shard(folder, verify=False)


def _open_shard(folder: str, digest: str | None):
    """A worker's opened shard, kept for its later tasks with the sampled keys its counts
    build (every 32nd suffix, 8 bytes: 250 MB at 1e9 tokens): the most recently used shards
    whose keys fit in SHARD_CACHE_BYTES stay open (at least one)."""
    key = (folder, digest)
    if key in _OPENED:
        _OPENED.move_to_end(key)
        return _OPENED[key]
    _OPENED[key] = shard = _load_shard(folder, digest)
    while len(_OPENED) > 1 and sum(s.n_tokens // 32 * 8 for s in _OPENED.values()) > (
            SHARD_CACHE_BYTES):
        _OPENED.popitem(last=False)
    return shard


def _threads(threads: int) -> None:
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def count_task(folder: str, digest: str | None, queries: np.ndarray, threads: int = 1):
    """(Q,) int64 counts of `queries` in the shard at `folder` (run on a worker)."""
    visible_folder(folder)
    _threads(threads)
    return _open_shard(folder, digest).count(queries)


def count_not_ending_task(folder: str, digest: str | None, queries: np.ndarray,
                          threads: int = 1):
    """(Q,) int64 counts of `queries` in the shard at `folder`, less the occurrences that end
    at their document's last token (`ends.count_ending`; the paper profile's counts; run on a
    worker)."""
    from features.index.ends import count_ending

    visible_folder(folder)
    _threads(threads)
    shard = _open_shard(folder, digest)
    return shard.count(queries) - count_ending(shard, queries)


_open_mapped = functools.lru_cache(maxsize=1024)(_load_shard)  # maps only, no sampled keys


def window_part_task(shards: list, lo, hi, n: int, threads: int = 1) -> list[np.ndarray]:
    """One part's window counts (`window_parts.part_counts`) over every shard in `shards`
    ((folder, header sha256) pairs), SA indices [lo[s], hi[s]) of shard s (run on a worker)."""
    from features.index.window_parts import part_counts

    for folder, _ in shards:
        visible_folder(folder)
    _threads(threads)
    return part_counts([_open_mapped(f, d) for f, d in shards], lo, hi, int(n))


# ------------------------------------------------------------------ driver side
def _shard_refs(index) -> list[tuple[str, str | None]]:
    """(absolute folder, header sha256 or None) of every shard, in shard order."""
    digests = index.header.get("shard_headers") or [None] * len(index.shards)
    return [(str(Path(s.folder).resolve()), d) for s, d in zip(index.shards, digests)]


def shard_nodes(ray, index, placement=None) -> list[list[str]]:
    """The Ray node ids each shard's tasks prefer, in shard order ([] = anywhere).

    placement None: the nodes the cluster says hold the shard: every alive node that declares
    the custom resource `shard:NAME` (NAME: the shard's folder name, e.g. `shard-00003`;
    `ray start --resources '{"shard:shard-00003": 1}'`). A dict {shard name or index: node id
    or node IP address}: those nodes (ValueError for a shard or node the index or the cluster
    lacks). False: no preference. The resource is read as a declaration only; tasks ask for
    their node by soft affinity, so a node that leaves never strands them."""
    names = [Path(s.folder).name for s in index.shards]
    if placement is False:
        return [[] for _ in names]
    alive = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
    if placement is None:
        return [sorted(nid for nid, n in alive.items() if f"shard:{name}" in n["Resources"])
                for name in names]
    if not isinstance(placement, dict):
        raise ValueError(f"placement must be None, False or a dict {{shard: node}}, got "
                         f"{type(placement).__name__}")
    out: list[list[str]] = [[] for _ in names]
    for key, node in placement.items():
        out[_shard_position(key, names)].append(_node_id(node, alive))
    return out


def _shard_position(key, names: list[str]) -> int:
    if isinstance(key, int | np.integer) and 0 <= int(key) < len(names):
        return int(key)
    if isinstance(key, str) and key in names:
        return names.index(key)
    raise ValueError(f"placement names shard {key!r}, which the index does not have "
                     f"(shards: {names[0]!r}..{names[-1]!r} or 0..{len(names) - 1})")


def _node_id(node: str, alive: dict) -> str:
    if node in alive:
        return node
    by_address = [nid for nid, n in alive.items() if n.get("NodeManagerAddress") == node]
    if by_address:
        return sorted(by_address)[0]
    raise ValueError(f"placement names node {node!r}, but no alive node of the Ray cluster has "
                     f"that id or address (alive: {sorted(alive)})")


def _placed(ray, remote, nodes: list[str], block: int):
    """`remote` asking for one of `nodes` (by block, so replicas share the blocks) by soft
    affinity: Ray runs it there, or anywhere once that node is gone."""
    if not nodes:
        return remote
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = nodes[block % len(nodes)]
    return remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True))


def _positive(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def checked_queries(index, queries, tokenizer=None) -> np.ndarray:
    """`queries` as `CorpusIndex.count` takes them (a (Q, n) array in the index's token dtype),
    checked as it checks them (ids in range, the tokenizer the index's)."""
    return index._queries(queries, tokenizer)


def count_on_ray(index, queries: np.ndarray, **options) -> np.ndarray:
    """(Q,) int64: `index.count(queries)` computed by Ray tasks per (shard, block of
    `block_rows` queries); `queries`: (Q, n) in the index's token dtype (already checked by
    `CorpusIndex.count`). Options as for `count_arrays_on_ray`."""
    return count_arrays_on_ray(index, [queries], **options)[0]


def count_arrays_on_ray(index, arrays: list[np.ndarray], *, address: str | None = None,
                        num_cpus: int | None = None, block_rows: int = BLOCK_ROWS,
                        group_rows: int = GROUP_ROWS, threads: int = 1, max_retries: int = 3,
                        in_flight: int | None = None, placement=None, skip_ending: bool = False,
                        progress: bool = False,
                        task_fn: Callable | None = None) -> list[np.ndarray]:
    """`[index.count(q) for q in arrays]` (each (Q_i,) int64) computed by one stream of Ray tasks
    per (shard, block of `block_rows` queries of one array); the arrays may differ in n. Each
    array: (Q_i, n_i) in the index's token dtype. Blocks go out in groups of about `group_rows`
    queries (what the object store holds at once), shard by shard within a group, so a worker
    mostly meets the shard it opened last. `placement`: where each shard's tasks prefer to run
    (`shard_nodes`). `skip_ending`: leave out the occurrences that end at their document's last
    token (`index.count(q) - index.count_ending(q)`, the paper profile's duplicate counts).
    `threads`: Numba threads per task. `task_fn`: the function run per task (default
    `count_task`, or `count_not_ending_task` with skip_ending; same arguments), an
    instrumentation hook."""
    _positive(block_rows=block_rows, group_rows=group_rows, threads=threads)
    ray = connect(address, num_cpus)
    task_fn = task_fn or (count_not_ending_task if skip_ending else count_task)
    remote = ray.remote(num_cpus=1, max_retries=int(max_retries))(task_fn)
    shards = _shard_refs(index)
    nodes = shard_nodes(ray, index, placement)
    blocks = [(a, start) for a, q in enumerate(arrays)
              for start in range(0, q.shape[0], int(block_rows))]
    per_group = max(1, int(group_rows) // int(block_rows))
    summed = _ShardOrderSum([q.shape[0] for q in arrays], blocks, int(block_rows), len(shards))

    def submit():
        for g in range(0, len(blocks), per_group):
            refs = {b: ray.put(np.ascontiguousarray(arrays[a][start : start + block_rows]))
                    for b, (a, start) in enumerate(blocks[g : g + per_group], start=g)}
            for s, (folder, digest) in enumerate(shards):
                for b, ref in refs.items():
                    task = _placed(ray, remote, nodes[s], b)
                    yield (b, s), task.remote(folder, digest, ref, threads)

    limit = in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    run_tasks(ray, submit(), summed.add, total=len(blocks) * len(shards), in_flight=limit,
              desc="index count (ray)", progress=progress)
    return summed.outs


class _ShardOrderSum:
    """Partial counts added into `outs` block by block, each block's shards in shard order
    (a partial that arrives early waits for the shards before it). Block b covers rows
    [start, start + block_rows) of array a, (a, start) = blocks[b]."""

    def __init__(self, sizes: list[int], blocks: list[tuple[int, int]], block_rows: int,
                 n_shards: int):
        self.outs = [np.zeros(n, dtype=np.int64) for n in sizes]
        self.blocks, self.block_rows, self.n_shards = blocks, block_rows, n_shards
        self.next_shard = [0] * len(blocks)
        self.waiting: dict[tuple[int, int], np.ndarray] = {}

    def add(self, key: tuple[int, int], counts) -> None:
        self.waiting[key] = np.asarray(counts, dtype=np.int64)
        b = key[0]
        while (b, self.next_shard[b]) in self.waiting:
            a, start = self.blocks[b]
            self.outs[a][start : start + self.block_rows] += self.waiting.pop(
                (b, self.next_shard[b]))
            self.next_shard[b] += 1


def window_counts_on_ray(index, n: int, *, address: str | None = None,
                         num_cpus: int | None = None, part_rows: int | None = None,
                         threads: int = 1, max_retries: int = 3, in_flight: int | None = None,
                         progress: bool = False, task_fn: Callable | None = None) -> np.ndarray:
    """(N,) int64: `index.window_counts(n)` computed by Ray tasks per part of the n-gram order
    (`window_parts`): cut n-grams split every shard's suffix array into parts of about
    `part_rows` suffixes (at least two parts a CPU); a task counts the equal windows of its part
    over every shard (each part holds all occurrences of its n-grams, so its counts are the
    corpus's) and this process writes them at their positions. Memory: the output here (8
    bytes a token), a part's windows in a task; nothing holds every shard at once."""
    from features.index.window_parts import PART_ROWS, part_edges, plan_cuts

    part_rows = PART_ROWS if part_rows is None else part_rows
    _positive(part_rows=part_rows, threads=threads)
    ray = connect(address, num_cpus)
    remote = ray.remote(num_cpus=1, max_retries=int(max_retries))(task_fn or window_part_task)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    parts = max(2 * cpus, -(-index.n_tokens // int(part_rows)))
    cuts = plan_cuts(index.shards, int(n), parts)
    edges = np.stack([part_edges(s, cuts) for s in index.shards], axis=1)  # (R+1, S)
    out = np.zeros(index.n_tokens, dtype=np.int64)

    def on_result(r, counts):
        for s, (shard, c) in enumerate(zip(index.shards, counts)):
            sa = np.asarray(shard.sa[edges[r, s] : edges[r + 1, s]], dtype=np.int64)
            out[index.shard_starts[s] + sa] = c

    shards = _shard_refs(index)
    refs = ((r, remote.remote(shards, edges[r], edges[r + 1], int(n), threads))
            for r in range(edges.shape[0] - 1))
    run_tasks(ray, refs, on_result, total=edges.shape[0] - 1, in_flight=in_flight or 2 * cpus,
              desc="index window counts (ray)", progress=progress)
    return out
