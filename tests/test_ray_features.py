"""features.compute(cluster="ray") on a local Ray cluster (2 worker processes): the same table
as the single-process run, and a rerun after a crash reuses the finished blocks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import features
from features import CorpusIndex
from features.tokenizers import load_tokenizer

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore:features:UserWarning")

P, C = 8, 8
TEXT = (
    "The committee met on Tuesday to discuss the budget for the next year. Members raised "
    "concerns about the rising cost of housing and asked for a detailed report by March. "
    "Chapter 1 Chapter 2 Chapter 3 Chapter 4 Chapter 5 Chapter 6 Chapter 7 Chapter 8 "
    "def forward(self, x):\n    h = self.embed(x)\n    return self.head(h)\n"
    + "ab " * 40 +
    "The committee met on Tuesday to discuss the budget for the next year."
)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = load_tokenizer("gpt-neox")
    ids = np.array(tok.encode(TEXT).ids, dtype=np.int64)
    docs = [ids[i : i + 40] for i in range(0, len(ids), 40)] * 2  # repeats: counts above 1
    root = tmp_path_factory.mktemp("ray-feat")
    idx = CorpusIndex.build(docs, root / "index", vocab_size=tok.get_vocab_size(),
                            shard_tokens=60, progress=False)
    assert len(idx.shards) >= 3
    samples = np.lib.stride_tricks.sliding_window_view(ids, P + C)[::3].copy()
    rng = np.random.default_rng(1)
    sel = rng.permutation(samples.shape[0])[:-4]  # a shuffled subset of the samples
    table = pa.table({
        "sample_id": pa.array(sel, pa.int64()),
        "exact_match": pa.array(rng.random(sel.size) < 0.5),
        "cont_ppl": pa.array(rng.random(sel.size) * 10, pa.float32()),
    }).replace_schema_metadata({b"prefix_len": b"8", b"cont_len": b"8", b"model": b"tiny"})
    return tok, idx, samples, table


def _compute(setup, **kw):
    tok, idx, samples, table = setup
    return features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                            chunk_size=5, workers=1, progress=False, **kw)


def test_ray_features_equal_single_process(cluster, setup):
    single = _compute(setup)
    distributed = _compute(setup, cluster="ray")
    assert distributed.equals(single, check_metadata=True)
    assert int(np.max(single.column("duplicates").to_numpy())) > 1  # counts over shards


def test_ray_features_equal_single_process_paper_profile(cluster, setup):
    """profile='paper' through Ray (the paper's decode cleanup, templating, code band,
    percentiles, and counts without the occurrences that end a document, by the count tasks)
    equals the single-process paper table."""
    single = _compute(setup, profile="paper")
    distributed = _compute(setup, cluster="ray", profile="paper",
                           cluster_options={"block_rows": 7})
    # equal schemas (metadata included) and columns; the paper's code band leaves NaN, which
    # Table.equals never finds equal to itself
    assert distributed.schema.equals(single.schema, check_metadata=True)
    for name in single.column_names:
        np.testing.assert_array_equal(distributed.column(name).to_numpy(),
                                      single.column(name).to_numpy(), err_msg=name)
    assert np.isnan(single.column("code_score").to_numpy()).any()
    default = _compute(setup)
    # some prompts end a document: the paper's counts leave those occurrences out
    fewer = [default.column(c).to_numpy() - single.column(c).to_numpy()
             for c in ("duplicates", "prompt_duplicates", "sample_duplicates")]
    assert min(int(d.min()) for d in fewer) == 0 and max(int(d.max()) for d in fewer) > 0


def test_ray_features_resume_after_a_crash(cluster, setup, tmp_path):
    parts = tmp_path / "parts"
    first = _compute(setup, cluster="ray", cluster_options={"parts_dir": str(parts)})
    files = sorted(parts.glob("part-*.parquet"))
    assert len(files) >= 4
    # a crash after some blocks: two parts missing, one half-written temporary file
    lost = [files[1], files[-1]]
    for f in lost:
        f.unlink()
    (parts / (files[1].name + ".tmp")).write_bytes(b"half a parquet file")
    kept = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files if f not in lost}
    second = _compute(setup, cluster="ray", cluster_options={"parts_dir": str(parts)})
    assert second.equals(first, check_metadata=True)
    assert all(f.is_file() for f in lost)  # recomputed
    # finished blocks were read, not recomputed: the same files, untouched
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in kept} == kept
    with pytest.raises(ValueError, match="holds parts of another run"):
        tok, idx, samples, table = setup
        features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                         chunk_size=6, progress=False, cluster="ray",
                         cluster_options={"parts_dir": str(parts)})


@pytest.mark.slow  # two whole feature runs; the module's other tests cover the same path
def test_cli_features_ray(cluster, setup, tmp_path, capsys):
    import pyarrow.parquet as pq

    from memtax.cli import main

    tok, idx, samples, table = setup
    np.save(tmp_path / "samples.npy", samples)
    pq.write_table(table, tmp_path / "scores.parquet")
    args = ["features", "--scores", str(tmp_path / "scores.parquet"), "--samples",
            str(tmp_path / "samples.npy"), "--index", str(idx.path), "--tokenizer", "gpt-neox",
            "--no-semantic", "--chunk-size", "5", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    assert main(args + ["--out", str(tmp_path / "ray"), "--ray"]) == 0
    one = pq.read_table(tmp_path / "one" / "features.parquet")
    assert pq.read_table(tmp_path / "ray" / "features.parquet").equals(one, check_metadata=True)
    assert [p.name for p in (tmp_path / "ray").iterdir()] == ["features.parquet"]  # parts gone


def test_ray_feature_counts_go_through_the_shard_tasks(cluster, setup, monkeypatch, tmp_path):
    """Groups of >= 12 samples (three chunks of 5): each group's distinct continuations,
    prompts and samples go to count_arrays_on_ray in blocks of 4 queries, and the table is the
    single-process one; a rerun after a lost part recounts only that part's group."""
    import features.index.distributed as dist

    tok, idx, samples, table = setup
    calls = []
    real = dist.count_arrays_on_ray

    def spy(index, arrays, **kw):
        calls.append(([np.array(a) for a in arrays], kw))
        return real(index, arrays, **kw)

    monkeypatch.setattr(dist, "count_arrays_on_ray", spy)
    single = _compute(setup)
    options = {"group_samples": 12, "block_rows": 4, "parts_dir": str(tmp_path / "parts")}
    distributed = _compute(setup, cluster="ray", cluster_options=options)
    assert distributed.equals(single, check_metadata=True)
    # the groups an independent walk over the chunks makes
    wanted = set(table.column("sample_id").to_pylist())
    chunks = [sorted(wanted & set(range(a, min(a + 5, len(samples)))))
              for a in range(0, len(samples), 5)]
    sizes = [len(c) for c in chunks]
    groups, run = [], []
    for size in filter(None, sizes):
        run.append(size)
        if sum(run) >= 12:
            groups.append(run)
            run = []
    groups += [run] if run else []
    assert len(calls) == len(groups) >= 3
    rows = sorted(wanted)
    seen = {"cont": set(), "prompt": set(), "sample": set()}
    for arrays, kw in calls:
        assert kw["block_rows"] == 4
        assert [a.shape[1] for a in arrays] == [C, P, P + C]
        for a, kind in zip(arrays, seen):
            assert len({r.tobytes() for r in a}) == len(a)  # each distinct row once
            seen[kind] |= {tuple(r) for r in a}
    assert seen["sample"] == {tuple(samples[i]) for i in rows}
    assert seen["cont"] == {tuple(samples[i, P:]) for i in rows}
    # a lost part: only its group is recounted
    calls.clear()
    (tmp_path / "parts" / "part-000004.parquet").unlink()
    again = _compute(setup, cluster="ray", cluster_options=options)
    assert again.equals(single, check_metadata=True)
    lost = [c for c in chunks if c][4]
    assert len(calls) == 1
    assert {tuple(r) for r in calls[0][0][2]} == {tuple(samples[i]) for i in lost}
