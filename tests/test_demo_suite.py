"""The default demo route on a micro suite: a suite trained in seconds on a generated corpus, then
the whole study on every checkpoint of both sizes, through `run_suite_study` (what `memtax demo`
runs with `suite.DEMO_CONFIG` on this machine's text).

Oracles: the stream's own bytes (numpy over document.bin) for the samples; brute-force window
counts over the stream's sequences for the duplicates; each checkpoint's score folder for the
per-checkpoint tables; the taxonomy rules written out by hand; the construction of the corpus
(long runs of one letter are learned within a few steps, random words are not, a randomly
initialised step 0 memorizes nothing).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine.output import read_scores
from memtax import demo, suite

PREFIX = CONT = 32
CONFIG = suite.SuiteConfig(sizes={"a": "micro", "b": "tiny"}, vocab_size=300, seq_len=65,
                           batch_size=16, epochs=4.0, lr=5e-3, warmup=0.1, checkpoints=1,
                           log_checkpoints=False)
NEW_FIGURES = ("memorization_vs_duplicates", "memorized_by_checkpoint", "shares_by_checkpoint")


def corpus() -> list[demo.TextDocument]:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    texts = [" ".join(rng.choice(words, int(rng.integers(20, 60)))) for _ in range(60)]
    texts += [" ".join([c] * 400) for c in "qxzjkv"]  # templated: learned within a few steps
    return [demo.TextDocument(f"doc{i:02d}", "random" if i < 60 else "runs", t)
            for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite_demo") / "demo"
    with pytest.warns(UserWarning, match="semantic=False"):
        res = demo.run_suite_study(corpus(), out, config=CONFIG, n_boot=10, semantic=False,
                                   progress=False)
    return out, res


def stream_sequences(out) -> np.ndarray:
    return np.fromfile(out / "suite" / "stream" / "document.bin", dtype=np.uint16).reshape(
        -1, CONFIG.seq_len)


def brute_duplicates(seqs: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Occurrences of each query among all windows inside each training sequence."""
    n = queries.shape[1]
    windows = np.lib.stride_tricks.sliding_window_view(seqs, n, axis=1).reshape(-1, n)
    counts = Counter(w.tobytes() for w in windows.astype(np.int64))
    return np.array([counts[q.tobytes()] for q in queries.astype(np.int64)])


def test_samples_scores_and_duplicates(study):
    out, res = study
    seqs = stream_sequences(out)
    s = pq.read_table(out / "samples.parquet").to_pandas()
    np.testing.assert_array_equal(s["sample_id"], np.arange(len(seqs)))
    rows = np.stack(s["tokens"].to_numpy()).astype(np.int64)
    np.testing.assert_array_equal(rows, seqs[:, :PREFIX + CONT])
    assert res.n_samples == len(seqs) == res.suite["sequences"]

    opened = suite.open_suite(out / "suite")
    for model, steps in opened.models.items():
        for step in steps:
            scores = read_scores(out / "scores" / f"{model}@step{step}")
            np.testing.assert_array_equal(scores.column("sample_id").to_numpy(), s["sample_id"])

    f = pq.read_table(out / "features.parquet").to_pandas()
    np.testing.assert_array_equal(f["duplicates"], brute_duplicates(seqs, rows[:, PREFIX:]))
    np.testing.assert_array_equal(f["prompt_duplicates"],
                                  brute_duplicates(seqs, rows[:, :PREFIX]))


def test_per_checkpoint_counts_and_memorization_rises(study):
    out, res = study
    opened = suite.open_suite(out / "suite")
    ckpt = pq.read_table(out / "checkpoints.parquet").to_pandas()
    table = pd.read_csv(out / "report" / "tables" / "memorized_by_checkpoint.csv")
    expect = []
    for model in ("a", "b"):
        for step in opened.models[model]:
            exact = read_scores(out / "scores" / f"{model}@step{step}").column(
                "exact_match").to_numpy(zero_copy_only=False)
            expect.append([model, step, int(exact.sum())])
            part = ckpt[(ckpt.model == model) & (ckpt.step == step)]
            np.testing.assert_array_equal(part["exact_match"].to_numpy(), exact)
    assert table[["model", "step", "memorized"]].values.tolist() == expect
    assert [[c["model"], c["step"], c["memorized"]] for c in res.checkpoints] == expect
    for c in res.checkpoints:
        assert c["seen"] == c["step"] * CONFIG.batch_size
    # by construction: step 0 (random weights) memorizes nothing, the final step the letter runs
    for model in ("a", "b"):
        counts = {c["step"]: c["memorized"] for c in res.checkpoints if c["model"] == model}
        steps = sorted(counts)
        assert counts[steps[0]] == 0 and counts[steps[-1]] >= 20


def test_report_holds_every_figure_and_the_new_tables(study):
    out, res = study
    page = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    names = {p.removeprefix("figures/").removesuffix(".png") for p in imgs}
    assert set(NEW_FIGURES) | {"shares", "coefficients", "pr_curves", "calibration",
                               "dependencies", "threshold"} <= names
    assert all((out / "report" / p).stat().st_size > 1000 for p in imgs)
    assert res.report == out / "report" / "index.html"

    # category shares per checkpoint, each model on its own, by the rules written out
    f = pq.read_table(out / "features.parquet").to_pandas()
    cat = np.where(f["duplicates"] > 5, "recitation",
                   np.where(f["is_templating"], "reconstruction", "recollection"))
    ckpt = pq.read_table(out / "checkpoints.parquet").to_pandas()
    shares = pd.read_csv(out / "report" / "tables" / "shares_by_checkpoint.csv")
    for r in shares.itertuples():
        exact = ckpt[(ckpt.model == r.model) & (ckpt.step == r.step)]["exact_match"].to_numpy()
        assert r.memorized == int((exact & (cat == r.category)).sum())
        assert r.candidates == int((cat == r.category).sum())

    # memorization against duplicates: one line per size's final checkpoint
    dup = pd.read_csv(out / "report" / "tables" / "memorization_vs_duplicates.csv")
    assert list(dict.fromkeys(dup["run"])) == [f"{m}@step{max(s)}" for m, s in
                                               suite.open_suite(out / "suite").models.items()]
    final_b = ckpt[(ckpt.model == "b") & (ckpt.step == ckpt.step.max())]["exact_match"]
    sub = dup[dup.run == dup.run.iloc[-1]]
    assert sub["memorized"].sum() == int(final_b.sum()) == res.n_memorized

    text = (out / "summary.txt").read_text()
    assert "suite" in text and "memorized per checkpoint" in text
    for m in res.suite["models"]:
        assert m["name"] in text and m["final_loss"] is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoints"] == res.checkpoints and summary["produced_by"] == demo.MARKER
    names = [st.name for st in res.stages]
    assert names[:2] == ["corpus", "suite (train)"]
    for stage in ("index", "sample", "score (exact)", "generate", "features", "models + report"):
        assert stage in names and stage in text


def test_second_run_reuses_the_finished_suite(study, tmp_path):
    out, _ = study
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)  # keeps modification times
    root = copy / "suite"
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    manifest = (root / "suite.json").read_text()
    with pytest.warns(UserWarning, match="semantic=False"):
        res = demo.run_suite_study(corpus(), copy, config=CONFIG, samples=40, seed=1,
                                   n_boot=10, semantic=False, progress=False)
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before and (root / "suite.json").read_text() == manifest
    assert [st.name for st in res.stages][:2] == ["corpus", "suite (reused)"]
    assert res.n_samples == 40
    assert pq.read_table(copy / "samples.parquet").num_rows == 40  # the study itself is redone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary leftovers


def test_another_config_is_refused_and_nothing_changes(study, tmp_path):
    out, _ = study
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    other = CONFIG.replace(lr=1e-3)
    with pytest.raises(ValueError, match="holds another suite"):
        demo.run_suite_study(corpus(), copy, config=other, n_boot=10, semantic=False,
                             progress=False)
    assert (copy / "suite" / "suite.json").is_file() and (copy / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_paper_profile_reaches_every_stage(study, tmp_path):
    """`profile="paper"` on a reused suite: every output records it, and the duplicates follow
    the paper's hashing loop (each training sequence's last window left out: brute force over
    the sequences without their last token)."""
    out, _ = study
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    with pytest.warns(UserWarning, match="semantic=False"):
        demo.run_suite_study(corpus(), copy, config=CONFIG, samples=40, seed=1, n_boot=10,
                             semantic=False, profile="paper", progress=False)
    key = b"memtax.profile"
    for folder in (copy / "scores").iterdir():
        assert read_scores(folder).schema.metadata[key] == b"paper"
    feats = pq.read_table(copy / "features.parquet")
    assert feats.schema.metadata[key] == b"paper"
    assert json.loads((copy / "summary.json").read_text())["profile"] == "paper"
    assert json.loads((copy / "report" / "tables" / "run.json").read_text())["profile"] == "paper"
    seqs = stream_sequences(copy)
    f = feats.to_pandas()
    rows = seqs[f["sample_id"].to_numpy(), :PREFIX + CONT]
    np.testing.assert_array_equal(f["duplicates"],
                                  brute_duplicates(seqs[:, :-1], rows[:, PREFIX:]))


def test_unknown_profile_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"profile 'papr'.*'default', 'paper'"):
        demo.run_suite_study(corpus(), tmp_path / "demo", config=CONFIG, profile="papr",
                             progress=False)
    assert list(tmp_path.iterdir()) == []


def test_demo_command_takes_the_profile(monkeypatch, capsys):
    """`memtax demo --profile paper` hands the profile to the demo; an unknown one exits 2 naming
    it (argparse choices), before anything runs."""
    from memtax import cli

    seen = {}

    def fake_run_demo(out, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    # the command sets these for its own process: keep them out of the test process
    monkeypatch.setattr("signal.signal", lambda *args: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--profile", "papr", "--quiet"])
    assert exc.value.code == 2 and "'papr'" in capsys.readouterr().err
    assert seen == {}
    with pytest.raises(SystemExit):
        cli.main(["demo", "--profile", "paper", "--quiet"])
    assert seen["profile"] == "paper"
