"""engine.sweep on a micro suite trained here (seconds): the sweep's tables equal separate
engine.score runs per checkpoint row for row, unseen samples are marked from the stream
definition, samples are read once, a killed sweep resumes without a row twice, and bad input
(missing revisions, mixed vocabularies, another sweep's folder) is refused with nothing written.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_same_scores, make_hf_cache, save_tiny

import engine
from engine.data import ArraySource, SampleSource
from engine.output import ScoreFolder
from engine.revisions import find_revision, list_revisions, revision_step
from memtax import suite
from memtax.testing import tiny_model

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
CONFIG = suite.SuiteConfig(sizes={"a": (2, 32, 2), "b": (2, 64, 2)}, vocab_size=257, seq_len=65,
                           batch_size=8, epochs=6, lr=1e-2, seed=3, checkpoints=3,
                           log_checkpoints=False)


def _corpus() -> list[str]:
    """Random-word documents of 64 characters (one 65-token sequence each at 257 tokens),
    some repeated 8 times so that the larger model memorizes a few."""
    rng = np.random.default_rng(1)

    def doc() -> str:
        text = ""
        while len(text) < 64:
            text += WORDS[rng.integers(len(WORDS))] + " "
        return text[:64]

    docs = [doc() for _ in range(24)] + [d for d in [doc() for _ in range(6)] for _ in range(8)]
    return [docs[i] for i in rng.permutation(len(docs))]


@pytest.fixture(scope="module")
def micro(tmp_path_factory, one_torch_thread):
    root = tmp_path_factory.mktemp("suite") / "s"
    s = suite.build_suite(_corpus(), root, config=CONFIG, progress=False)
    ids, rows = s.training_samples(64)
    return s, ids[::3], rows[::3]  # every third training sequence: ids spread over the stream


def _models(s):
    return [str(s.root / "models" / m) for m in ("a", "b")]


class CountingSource(SampleSource):
    """A source (not memory-mapped) that counts the rows read from it."""

    def __init__(self, ids, rows):
        self.ids, self.rows, self.seq_len, self.read_rows = ids, rows, rows.shape[1], 0
        self.description = "counting"

    def __len__(self):
        return len(self.ids)

    def _read(self, start, stop):
        self.read_rows += stop - start
        return self.ids[start:stop], self.rows[start:stop]


def test_sweep_equals_separate_scores_and_marks_unseen(micro, tmp_path):
    s, ids, rows = micro
    steps = s.models["a"]
    mid = steps[1]
    source = CountingSource(ids, rows)
    sw = engine.sweep(_models(s), source, revisions=[f"step{mid}", f"step{steps[-1]}"],
                      out=tmp_path / "sw", sequences_per_step=s.batch_size,
                      ids_are_positions=True, progress=False, batch_size=32)
    assert source.read_rows == len(ids)  # read once for four checkpoints
    assert sw.complete and sw.models == ["a", "b"]
    labels = sw.labels().to_pandas()
    for m in ("a", "b"):
        for step in (mid, steps[-1]):
            alone = engine.score(s.spec(m, step), ArraySource(rows, 64, sample_ids=ids),
                                 progress=False, batch_size=7)
            assert_same_scores(sw.scores(m, f"step{step}"), alone)
            got = labels[(labels.model == m) & (labels.step == step)]
            np.testing.assert_array_equal(got.sample_id, ids)
            np.testing.assert_array_equal(got.exact_match, alone.column("exact_match"))
            # step c has seen training sequences [0, c * batch): the ids are sequence indices
            np.testing.assert_array_equal(got.seen, ids < step * CONFIG.batch_size)
            assert (got.sequences_seen == step * CONFIG.batch_size).all()
    assert not labels[labels.step == mid].seen.all() and labels[labels.step == mid].seen.any()


def test_resume_after_a_kill_gives_the_same_tables(micro, tmp_path, monkeypatch):
    s, ids, rows = micro
    revs = [f"step{k}" for k in s.models["a"][-2:]]
    kw = dict(revisions=revs, sequences_per_step=8, ids_are_positions=True, progress=False,
              batch_size=16, shard_size=16)
    whole = engine.sweep(_models(s)[:1], rows, out=tmp_path / "whole", **kw).labels()
    shards_per = -(-len(ids) // 16)
    written = []
    real = ScoreFolder.write_shard

    def dying(self, k, table, *args, **kwargs):
        if len(written) == shards_per + 3:  # first checkpoint done, 3 shards into the second
            raise KeyboardInterrupt
        written.append(k)
        return real(self, k, table, *args, **kwargs)

    def counting(self, k, table, *args, **kwargs):
        written.append(k)
        return real(self, k, table, *args, **kwargs)

    monkeypatch.setattr(ScoreFolder, "write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        engine.sweep(_models(s)[:1], rows, out=tmp_path / "killed", **kw)
    man = json.loads((tmp_path / "killed" / "sweep.json").read_text())
    assert [e["complete"] for e in man["checkpoints"]] == [True, False] and not man["complete"]
    written.clear()
    monkeypatch.setattr(ScoreFolder, "write_shard", counting)
    resumed = engine.sweep(_models(s)[:1], rows, out=tmp_path / "killed", **kw).labels()
    assert written == list(range(3, shards_per))  # only the rest of the second checkpoint
    assert resumed.num_rows == 2 * len(ids)
    keys = resumed.select(["step", "sample_id"]).to_pandas()
    assert not keys.duplicated().any()
    for col in ("step", "sample_id", "exact_match", "match_len", "seen"):
        assert resumed.column(col).equals(whole.column(col)), col


def test_missing_revisions_are_named_and_nothing_is_written(micro, tmp_path):
    s, ids, rows = micro
    out = tmp_path / "sw"
    with pytest.raises(FileNotFoundError, match=r"a@step999, .*a@step7777") as err:
        engine.sweep(_models(s)[:1], rows, revisions=["step0", "step999", "step7777"], out=out,
                     progress=False)
    assert "step0," not in str(err.value)
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="no revisions of model"):
        engine.sweep(str(tmp_path / "nothing"), rows, revisions="all", out=out, progress=False)
    assert not out.exists()


def test_mixed_vocabularies_are_refused(micro, tmp_path):
    s, ids, rows = micro
    # same architecture, other tokenizer: two token ids swapped in tokenizer.json
    other = tmp_path / "other"
    shutil.copytree(s.checkpoint("a", 0), other / "step0")
    tj = other / "step0" / "tokenizer.json"
    data = json.loads(tj.read_text())
    vocab = data["model"]["vocab"]
    a, b = list(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tj.write_text(json.dumps(data))
    out = tmp_path / "sw"
    with pytest.raises(ValueError, match="different tokenizers"):
        engine.sweep([_models(s)[0], str(other)], rows, revisions=["step0"], out=out,
                     progress=False)
    # no tokenizer files and different vocabulary sizes
    save_tiny(tiny_model(vocab_size=301), tmp_path / "m301" / "step1")
    save_tiny(tiny_model(vocab_size=257), tmp_path / "m257" / "step1")
    with pytest.raises(ValueError, match="different vocabulary sizes.*301.*257"):
        engine.sweep([str(tmp_path / "m301"), str(tmp_path / "m257")], rows[:, :64] % 200,
                     revisions="step1", out=out, progress=False)
    assert not out.exists()


def test_another_sweep_in_the_folder_is_refused(micro, tmp_path):
    s, ids, rows = micro
    kw = dict(revisions=["step0"], out=tmp_path / "sw", progress=False)
    engine.sweep(_models(s)[:1], rows[:40], **kw)
    before = (tmp_path / "sw" / "sweep.json").read_bytes()
    with pytest.raises(ValueError, match="holds another sweep.*n_samples 40 != 30"):
        engine.sweep(_models(s)[:1], rows[:30], **kw)
    assert (tmp_path / "sw" / "sweep.json").read_bytes() == before
    (tmp_path / "junk" / "scores").mkdir(parents=True)
    with pytest.raises(ValueError, match="not a sweep folder.*holds scores/"):
        engine.sweep(_models(s)[:1], rows[:40], revisions=["step0"], out=tmp_path / "junk",
                     progress=False)
    # other files may share the folder: a study's output keeps its sweep beside them
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "samples.parquet").write_text("x")
    sw = engine.sweep(_models(s)[:1], rows[:40], revisions=["step0"], out=tmp_path / "study",
                      progress=False)
    assert sw.complete and (tmp_path / "study" / "scores" / "a@step0").is_dir()
    assert (tmp_path / "study" / "samples.parquet").read_text() == "x"


def test_hub_ids_come_from_the_local_cache(tmp_path, one_torch_thread):
    model = tiny_model(seed=2)
    make_hf_cache(model, tmp_path / "hub", "Org/tiny", {"step10": "a" * 40, "step2": "b" * 40,
                                                         "main": "a" * 40})
    assert list_revisions("Org/tiny", cache_dir=tmp_path / "hub") == ["step2", "step10"]
    assert find_revision("Org/tiny", "step3", cache_dir=tmp_path / "hub") is None
    assert revision_step("step10") == 10 and revision_step("main") is None
    rows = np.random.default_rng(0).integers(1, 301, size=(12, 64))
    sw = engine.sweep("Org/tiny", rows, revisions="all", cache_dir=tmp_path / "hub",
                      out=tmp_path / "sw", progress=False, sequences_per_step=4)
    labels = sw.labels()
    assert sw.models == ["Org--tiny"]
    assert labels.column("step").unique().to_pylist() == [2, 10]
    assert labels.column("seen").null_count == labels.num_rows  # ids are not stream positions
    alone = engine.score(model, rows, progress=False)
    assert_same_scores(sw.scores("Org--tiny", "step2"), alone)
    with pytest.raises(FileNotFoundError, match="Org/tiny@step3"):
        engine.sweep("Org/tiny", rows, revisions=["step3"], cache_dir=tmp_path / "hub",
                     out=tmp_path / "sw2", progress=False)


def test_labels_need_a_finished_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a memtax sweep folder"):
        engine.open_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({
        "format": "memtax-sweep", "version": 1, "run": {}, "checkpoints": [], "complete": False}))
    with pytest.raises(ValueError, match="no finished checkpoint"):
        engine.open_sweep(tmp_path).labels()


def test_cli_sweep_then_analyze(micro, tmp_path, capsys):
    from analysis import dynamics
    from memtax.cli import main

    s, ids, rows = micro
    data = str(tmp_path / "rows.parquet")
    pq.write_table(pa.table({"sample_id": ids, "tokens": list(rows)}), data)
    steps = s.models["a"]
    revs = ",".join(f"step{k}" for k in steps[1:])
    out = tmp_path / "sw"
    args = ["sweep", "--model", *_models(s), "--revisions", revs, "--data", data,
            "--out", str(out), "--sequences-per-step", "8",
            "--ids-are-positions", "--quiet", "--batch-size", "64"]
    assert main(args) == 0
    assert f"{2 * (len(steps) - 1)} checkpoints x {len(ids)} samples" in capsys.readouterr().out
    labels = engine.open_sweep(out).labels().to_pandas()
    np.testing.assert_array_equal(labels.seen, labels.sample_id < labels.step * 8)
    assert main(["analyze", "--sweep", str(out), "--out", str(tmp_path / "rep"),
                 "--n-boot", "20"]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Memorization dynamics" in page and "dynamics_transitions.png" in page
    tr = pd.read_csv(tmp_path / "rep" / "tables" / "dynamics_transitions.csv")
    # the first pair of model a by hand from the sweep's labels: not -> memorized among samples
    # seen at both checkpoints
    a = labels[labels.model == "a"]
    x, y = (a[a.step == k].set_index("sample_id") for k in steps[1:3])
    both = x.seen & y.seen
    row = tr[(tr.model == "a") & (tr.step_from == steps[1])].iloc[0]
    assert row.samples == both.sum()
    assert row.not_to_mem == (both & ~x.exact_match & y.exact_match).sum()
    assert row.mem_to_not == (both & x.exact_match & ~y.exact_match).sum()
    assert len(dynamics.from_sweep(out)) == len(labels)
    # with a feature table of the same samples: its report gains the section and the
    # categories over steps (every sample categorised: rows seen per step by category)
    from analysis.synthetic import synthetic_table
    from analysis.taxonomy import classify

    feats, _ = synthetic_table(len(ids), seed=1)
    feats["sample_id"] = ids
    pq.write_table(pa.Table.from_pandas(feats, preserve_index=False), tmp_path / "f.parquet")
    assert main(["analyze", "--features", str(tmp_path / "f.parquet"), "--sweep", str(out),
                 "--out", str(tmp_path / "rep2"), "--n-boot", "20", "--no-progress"]) == 0
    page = (tmp_path / "rep2" / "index.html").read_text()
    assert page.index("Taxonomy") < page.index("Memorization dynamics")
    cats = pd.read_csv(tmp_path / "rep2" / "tables" / "dynamics_categories.csv")
    seen = labels[(labels.model == "b") & (labels.step == steps[-1])].set_index("sample_id").seen
    by_hand = pd.Series(classify(feats), index=ids)[seen[ids].to_numpy()].value_counts()
    got = cats[(cats.model == "b") & (cats.step == steps[-1])].set_index("category")
    assert got["candidates"][by_hand.index].tolist() == by_hand.tolist()
    # bad revisions: exit 2, one line naming them, nothing written
    assert main(["sweep", "--model", _models(s)[0], "--revisions", "step5,step123456",
                 "--data", data, "--out", str(tmp_path / "bad"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "step123456" in err and "step5" in err and not (tmp_path / "bad").exists()


def test_workers_score_checkpoints_in_parallel_processes(micro, tmp_path):
    s, ids, rows = micro
    final = s.models["a"][-1]
    sw = engine.sweep(_models(s), rows, revisions=[f"step{final}", "step0"], out=tmp_path / "sw",
                      workers=2, progress=False, batch_size=64)
    assert sw.complete and len(sw.checkpoints) == 4
    for m in ("a", "b"):
        for step in (0, final):
            alone = engine.score(s.spec(m, step), rows, progress=False)
            assert_same_scores(sw.scores(m, f"step{step}"), alone)
    assert all(e["parameters"] > 0 and e["elapsed_s"] > 0 for e in sw.checkpoints)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        engine.sweep(_models(s), rows, revisions="step0", out=tmp_path / "x", workers=0)
