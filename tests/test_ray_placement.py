"""Count tasks placed near their shard on a local two-node Ray cluster: a node that declares
`shard:NAME` runs that shard's tasks, a shard -> node mapping does the same, a mapping that names
what the cluster or the index lacks is refused, and a node that leaves mid-run hands its shard's
remaining tasks to the other node (the counts stay the single-process ones)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import sample_queries

from features import CorpusIndex

ray = pytest.importorskip("ray")
SHARD = "shard-00001"  # the shard the second node declares


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (1 CPU) and a node B (1 CPU) that declares resource shard:shard-00001."""
    from ray.cluster_utils import Cluster

    cl = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    node_b = cl.add_node(num_cpus=1, resources={f"shard:{SHARD}": 1})
    ray.init(address=cl.address, log_to_driver=False)
    cl.wait_for_nodes()
    yield cl, cl.head_node.node_id, node_b
    ray.shutdown()
    cl.shutdown()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 5, size=int(rng.integers(50, 300))).astype(np.uint16)
            for _ in range(30)]
    idx = CorpusIndex.build(docs, tmp_path_factory.mktemp("place") / "idx", shard_tokens=1500,
                            progress=False)
    assert len(idx.shards) >= 3 and idx.shards[1].folder.name == SHARD
    qs = idx._queries(sample_queries(docs, 4, 200, 5, rng), None)
    return idx, qs


def _recorder(log: str, slow_node: str | None = None):
    """A count task that appends 'shard node' to `log` when it finishes (and sleeps 0.3 s first
    on `slow_node`, so a run lasts long enough to lose that node midway)."""
    def task(folder, digest, queries, threads):
        import os
        import time
        from pathlib import Path

        import ray as ray_

        from features.index.distributed import count_task

        node = ray_.get_runtime_context().get_node_id()
        if node == slow_node:
            time.sleep(0.3)
        out = count_task(folder, digest, queries, threads)
        fd = os.open(log, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
        os.write(fd, f"{Path(folder).name} {node}\n".encode())
        os.close(fd)
        return out

    return task


def _ran_on(log) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in log.read_text().splitlines():
        shard, node = line.split()
        out.setdefault(shard, set()).add(node)
    return out


def test_declared_shard_runs_on_its_node(two_nodes, index, tmp_path):
    from features.index.distributed import count_on_ray, shard_nodes

    cl, head, node_b = two_nodes
    idx, qs = index
    assert shard_nodes(ray, idx) == [[node_b.node_id] if s.folder.name == SHARD else []
                                     for s in idx.shards]
    log = tmp_path / "log"
    got = count_on_ray(idx, qs, block_rows=40, task_fn=_recorder(str(log)))
    np.testing.assert_array_equal(got, idx.count(qs))
    ran = _ran_on(log)
    assert ran[SHARD] == {node_b.node_id}
    assert set(ran) == {s.folder.name for s in idx.shards}  # the others ran too, anywhere
    # and the same placement for window counts
    assert idx.window_counts(4, cluster="ray").tolist() == idx.window_counts(4).tolist()


def test_mapping_places_and_bad_mappings_are_refused(two_nodes, index, tmp_path):
    from features.index.distributed import count_on_ray

    cl, head, node_b = two_nodes
    idx, qs = index
    log = tmp_path / "log"
    got = count_on_ray(idx, qs, block_rows=40, placement={0: node_b.node_id, SHARD: head},
                       task_fn=_recorder(str(log)))
    np.testing.assert_array_equal(got, idx.count(qs))
    ran = _ran_on(log)
    assert ran[idx.shards[0].folder.name] == {node_b.node_id}
    assert ran[SHARD] == {head}
    with pytest.raises(ValueError, match="placement names node 'ffff'"):
        count_on_ray(idx, qs, placement={0: "ffff"})
    with pytest.raises(ValueError, match="placement names shard 'shard-99999'"):
        count_on_ray(idx, qs, placement={"shard-99999": head})
    with pytest.raises(ValueError, match="placement must be None, False or a dict"):
        idx.count(qs, cluster="ray", placement="near")


def test_node_leaving_midway_hands_its_shard_on(two_nodes, index, tmp_path):
    """Runs last: node B is removed while its shard's tasks wait for it."""
    from features.index.distributed import count_on_ray

    cl, head, node_b = two_nodes
    idx, qs = index
    log = tmp_path / "log"
    timer = threading.Timer(1.0, cl.remove_node, args=(node_b,))
    timer.start()
    try:
        got = count_on_ray(idx, qs, block_rows=10, max_retries=3,
                           task_fn=_recorder(str(log), slow_node=node_b.node_id))
    finally:
        timer.join()
    np.testing.assert_array_equal(got, idx.count(qs))
    ran = _ran_on(log)
    assert head in ran[SHARD]  # the rest of shard 1 ran on the head once B was gone
