"""Output folder: shards + manifest, resume after a killed run, refusal of another run's folder,
no partial output after bad input, and a 2-process torchrun equal to one process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import assert_same_scores

import engine
from engine.output import read_scores
from engine.scoring import SCORE_SCHEMA
from memtax.testing import tiny_model

V = 301
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt_neox", seed=7)


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(3).integers(1, V, size=(23, 12))


@pytest.fixture(scope="module")
def reference(model, rows):
    return engine.score(model, rows, prefix_len=6, cont_len=6, batch_size=4, progress=False)


def _cols(table):
    return table.select(SCORE_SCHEMA.names)


def test_shards_manifest_and_metadata(tmp_path, model, rows, reference):
    out = tmp_path / "run"
    table = engine.score(model, rows, prefix_len=6, cont_len=6, batch_size=4, out=out,
                         shard_size=5, progress=False)
    assert_same_scores(table, reference)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json"] + [f"part-{k:06d}.parquet" for k in range(5)]
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and [s["rows"] for s in man["shards"]] == [5, 5, 5, 5, 3]
    assert man["run"]["prefix_len"] == 6 and man["run"]["n_samples"] == 23
    meta = pq.read_schema(out / "part-000002.parquet").metadata
    for key in (b"model", b"revision", b"dtype", b"prefix_len", b"cont_len", b"torch_version",
                b"transformers_version", b"memtax_version"):
        assert key in meta
    assert meta[b"dtype"] == b"fp32" and meta[b"cont_len"] == b"6"
    assert _cols(read_scores(out)).equals(_cols(table))


def test_resume_after_killed_run(tmp_path, model, rows, reference):
    out = tmp_path / "run"
    seen = []

    def kill_after_three_batches(n):
        seen.append(n)
        if len(seen) == 3:
            raise KeyboardInterrupt  # what Ctrl-C / a dying job does mid-shard

    with pytest.raises(KeyboardInterrupt):
        engine.score(model, rows, prefix_len=6, cont_len=6, batch_size=3, out=out, shard_size=6,
                     progress=False, on_batch=kill_after_three_batches)
    assert sorted(p.name for p in out.glob("part-*")) == ["part-000000.parquet"]
    first_mtime = os.stat(out / "part-000000.parquet").st_mtime_ns
    (out / ".part-000001.parquet.tmp-99999").write_bytes(b"half a shard")  # killed mid-write
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    with pytest.raises(ValueError, match="incomplete"):
        read_scores(out)
    rescored = []
    table = engine.score(model, rows, prefix_len=6, cont_len=6, batch_size=3, out=out,
                         shard_size=6, progress=False, on_batch=rescored.append)
    assert sum(rescored) == 23 - 6  # the finished shard was not recomputed
    assert os.stat(out / "part-000000.parquet").st_mtime_ns == first_mtime
    assert _cols(table).equals(_cols(reference))
    ids = table.column("sample_id").to_numpy()
    np.testing.assert_array_equal(ids, np.arange(23))  # each sample exactly once
    # resume=False on the same run recomputes everything
    again = []
    engine.score(model, rows, prefix_len=6, cont_len=6, batch_size=3, out=out, shard_size=6,
                 progress=False, resume=False, on_batch=again.append)
    assert sum(again) == 23


@pytest.mark.parametrize("change", [{"cont_len": 5}, {"model": "other"}, {"shard_size": 7}])
def test_refuses_folder_of_another_run(tmp_path, model, rows, change):
    out = tmp_path / "run"
    engine.score(model, rows, prefix_len=6, cont_len=6, out=out, shard_size=6, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    kwargs = dict(prefix_len=6, cont_len=6, out=out, shard_size=6, progress=False)
    other = model
    if "model" in change:
        other = tiny_model("gpt2", seed=0)
    else:
        kwargs.update(change)
    with pytest.raises(ValueError, match="another run") as exc:
        engine.score(other, rows, **kwargs)
    key = next(iter(change))
    assert key in str(exc.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refuses_folder_with_foreign_parquet(tmp_path, model, rows):
    out = tmp_path / "run"
    out.mkdir()
    pq.write_table(_cols(engine.score(model, rows[:2], prefix_len=6, cont_len=6,
                                      progress=False)), out / "theirs.parquet")
    with pytest.raises(ValueError, match="without a memtax manifest"):
        engine.score(model, rows, prefix_len=6, cont_len=6, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["theirs.parquet"]


def test_bad_token_midway_leaves_no_output(tmp_path, model, rows):
    bad = rows.copy()
    bad[17, 3] = V + 4
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=rf"token id {V + 4} \(sample_id 17, position 3\).*\[0, {V}\)"):
        engine.score(model, bad, prefix_len=6, cont_len=6, out=out, shard_size=5, batch_size=2,
                     progress=False)
    assert not out.exists()
    # into an existing (resumed) folder: only this call's shards are removed
    engine.score(model, rows[:10], prefix_len=6, cont_len=6, out=tmp_path / "r2", shard_size=5,
                 progress=False)
    with pytest.raises(ValueError, match="another run"):
        engine.score(model, bad, prefix_len=6, cont_len=6, out=tmp_path / "r2", shard_size=5,
                     progress=False)
    assert len(list((tmp_path / "r2").glob("part-*"))) == 2


TORCHRUN_SCRIPT = textwrap.dedent("""
    import numpy as np, torch
    from memtax.testing import tiny_model
    import engine
    torch.set_num_threads(1)
    rows = np.load({rows!r})
    table = engine.score(tiny_model("gpt_neox", seed=7), rows, prefix_len=6, cont_len=6,
                         batch_size=4, out={out!r}, shard_size=4, progress=False)
    assert table.num_rows == len(rows), table.num_rows
    import torch.distributed as dist
    np.save({out!r} + f"/rank{{dist.get_rank()}}-of-{{dist.get_world_size()}}.npy",
            table.column("sample_id").to_numpy())
""")


def test_torchrun_two_processes_equal_one(tmp_path, rows, reference):
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "run"
    script = tmp_path / "job.py"
    script.write_text(TORCHRUN_SCRIPT.format(rows=str(tmp_path / "rows.npy"), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script)], capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks saw the whole table; shards were split between them
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(out / f"rank{r}-of-2.npy"), np.arange(len(rows)))
    table = read_scores(out)
    assert _cols(table).equals(_cols(reference))
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and len(man["shards"]) == 6
