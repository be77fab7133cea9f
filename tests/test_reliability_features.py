"""`memtax features` checks scores, samples and index against each other, and finds the scored
samples from any working directory: the README's Pythia workflow (score, index build, features
as written) for .bin/.idx, .npy and .jsonl runs, run from another folder; refusals of another
vocabulary, other samples, another stride and another tokenizer, each naming both values."""

import json
import os
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import brute_count, save_tiny

from engine.indexed_dataset import write_indexed_dataset
from engine.tokenizers import encode_text, load_tokenizer
from memtax.cli import main
from memtax.testing import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore:features:UserWarning")

V = 301
P = C = 8
L = 20  # training sequence length of the .bin/.idx corpus
TEXT = ("The committee met on Tuesday to discuss the budget for the next year. Members raised "
        "concerns about the rising cost of housing and asked for a detailed report by March. ")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder A: a model, a .bin/.idx corpus (row 5 repeats row 3), its .npy twin,
    scored (README step 1) and indexed (step 2) from inside A with relative paths."""
    root = tmp_path_factory.mktemp("workflow")
    a = root / "A"
    (a / "data").mkdir(parents=True)
    (root / "B").mkdir()
    save_tiny(tiny_model("gpt_neox", seed=3), a / "model")
    rows = np.random.default_rng(0).integers(1, V, size=(30, L))
    rows[5] = rows[3]
    write_indexed_dataset(a / "data" / "document", rows, dtype=np.uint16)
    np.save(a / "data" / "rows.npy", rows)
    cwd = os.getcwd()
    os.chdir(a)
    try:
        common = ["--model", "model", "--prefix-len", str(P), "--cont-len", str(C), "--quiet"]
        assert main(["score", *common, "--data", "data/document", "--range", "2:22",
                     "--out", "runs/bin/scores"]) == 0
        assert main(["score", *common, "--data", "data/rows.npy", "--range", "4:16",
                     "--out", "runs/npy/scores"]) == 0
        assert main(["index", "build", "--corpus", "data/document", "--out", "idx",
                     "--sequence-length", str(L), "--tokenizer", "gpt-neox"]) == 0
    finally:
        os.chdir(cwd)
    return root, rows


def _features(args):
    return main(["features", *args, "--quiet", "--no-semantic"])


@pytest.mark.parametrize("run, ids", [("bin", np.arange(2, 22)), ("npy", np.arange(4, 16))])
def test_readme_step_3_from_another_folder(project, monkeypatch, run, ids):
    root, rows = project
    monkeypatch.chdir(root / "B")
    assert main(["features", "--scores", f"../A/runs/{run}/scores", "--index", "../A/idx",
                 "--tokenizer", "gpt-neox", "--out", f"{run}-features", "--quiet"]) == 0
    feats = pq.read_table(root / "B" / f"{run}-features" / "features.parquet")
    np.testing.assert_array_equal(feats.column("sample_id").to_numpy(), ids)
    docs = list(rows)
    want = [brute_count(docs, rows[i, P:P + C]) for i in ids]  # inside each training sequence
    np.testing.assert_array_equal(feats.column("duplicates").to_numpy(), want)
    assert want[list(ids).index(5)] == 2  # the repeated row is found twice
    man = json.loads((root / "A" / "runs" / run / "scores" / "manifest.json").read_text())
    rec = json.loads(man["run"]["sample_source"])
    data = "document" if run == "bin" else "rows.npy"
    assert os.path.isabs(rec["path"]) and rec["path"] == str(root / "A" / "data" / data)
    assert rec["range"] == [int(ids[0]), int(ids[-1]) + 1]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A .jsonl run scored with --stride 10 by a model with the gpt-neox vocabulary."""
    root = tmp_path_factory.mktemp("text")
    save_tiny(tiny_model("gpt_neox", seed=1, vocab_size=50304, hidden=16, layers=1),
              root / "model")
    docs = [TEXT * 2, "Chapter 1 Chapter 2 Chapter 3 " * 6]
    (root / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    ids = np.concatenate([np.array(encode_text(load_tokenizer("gpt-neox"), t)) for t in docs])
    np.save(root / "corpus.npy", ids)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["score", "--model", "model", "--data", "d.jsonl", "--tokenizer", "gpt-neox",
                     "--stride", "10", "--prefix-len", str(P), "--cont-len", str(C),
                     "--out", "scores", "--quiet"]) == 0
        assert main(["index", "build", "--corpus", "corpus.npy", "--out", "idx",
                     "--tokenizer", "gpt-neox"]) == 0
    finally:
        os.chdir(cwd)
    return root, docs


def test_text_run_from_another_folder_uses_the_scored_stride(text_run, tmp_path, monkeypatch):
    root, docs = text_run
    monkeypatch.chdir(tmp_path)
    assert _features(["--scores", str(root / "scores"), "--index", str(root / "idx"),
                      "--tokenizer", "gpt-neox", "--out", "f"]) == 0
    feats = pq.read_table(tmp_path / "f" / "features.parquet")
    tok = load_tokenizer("gpt-neox")
    windows = []
    for text in docs:  # the stride-10 windows of each document, by hand
        ids = encode_text(tok, text)
        windows += [ids[s:s + P + C] for s in range(0, len(ids) - (P + C) + 1, 10)]
    assert feats.num_rows == len(windows)
    for k, w in enumerate(windows):
        text = tok.decode(w)
        raw = text.encode()
        assert feats.column("zlib_ratio")[k].as_py() == pytest.approx(
            len(zlib.compress(raw)) / len(raw)), k


def test_another_stride_is_refused(text_run, tmp_path, capsys):
    root, _ = text_run
    assert _features(["--scores", str(root / "scores"), "--tokenizer", "gpt-neox",
                      "--stride", "64", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "stride=64 differs from the score run's stride=10" in err
    assert not (tmp_path / "f").exists()


def test_another_tokenizer_is_refused(text_run, tmp_path, capsys):
    root, _ = text_run
    assert _features(["--scores", str(root / "scores"), "--tokenizer", "gpt2",
                      "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "differs from the one the samples were scored with" in err
    assert not (tmp_path / "f").exists()


def test_samples_of_another_file_are_refused(project, tmp_path, capsys):
    root, rows = project
    np.save(tmp_path / "other.npy", np.random.default_rng(9).integers(1, V, size=rows.shape))
    assert _features(["--scores", str(root / "A" / "runs" / "npy" / "scores"), "--samples",
                      str(tmp_path / "other.npy"), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "are not those of the score run" in err and "differ" in err
    assert not (tmp_path / "f").exists()
    # the same rows under another name pass: identity is by content
    np.save(tmp_path / "copy.npy", rows)
    assert _features(["--scores", str(root / "A" / "runs" / "npy" / "scores"), "--samples",
                      str(tmp_path / "copy.npy"), "--out", str(tmp_path / "g")]) == 0


def test_other_lengths_are_refused(project, tmp_path, capsys):
    root, _ = project
    assert _features(["--scores", str(root / "A" / "runs" / "npy" / "scores"), "--cont-len", "6",
                      "--out", str(tmp_path / "f")]) == 2
    assert "--cont-len 6 differs from the score run's cont_len=8" in capsys.readouterr().err


@pytest.mark.parametrize("declared", [True, False])
def test_index_of_a_larger_vocabulary_is_refused(project, tmp_path, capsys, declared):
    root, _ = project
    corpus = np.random.default_rng(2).integers(1, 1000, size=500)
    np.save(tmp_path / "big.npy", corpus)
    extra = ["--vocab-size", "50000"] if declared else []
    assert main(["index", "build", "--corpus", str(tmp_path / "big.npy"), "--out",
                 str(tmp_path / "idx"), *extra]) == 0
    capsys.readouterr()
    assert _features(["--scores", str(root / "A" / "runs" / "npy" / "scores"), "--index",
                      str(tmp_path / "idx"), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    size = 50000 if declared else int(corpus.max()) + 1
    assert f"vocabulary ({size}," in err and f"than the scoring model's ({V})" in err
    assert not (tmp_path / "f").exists()


def test_compute_checks_and_finds_the_samples_itself(project):
    """The library does what the command does: samples=None opens the recorded source; other
    samples are refused."""
    import features
    from engine.output import read_scores

    root, rows = project
    table = read_scores(root / "A" / "runs" / "npy" / "scores")
    feats = features.compute(table, None, semantic=False, progress=False)
    np.testing.assert_array_equal(feats.column("sample_id").to_numpy(), np.arange(4, 16))
    other = np.random.default_rng(9).integers(1, V, size=rows.shape)
    with pytest.raises(ValueError, match="are not those of the score run"):
        features.compute(table, other, semantic=False, progress=False)


def test_an_index_that_recorded_a_tokenizer_name(project, tmp_path):
    """Indexes built when `index build --tokenizer` recorded the name: compared by the
    vocabulary the name stands for."""
    import features
    from engine.output import read_scores

    root, rows = project
    table = read_scores(root / "A" / "runs" / "bin" / "scores")
    idx = features.CorpusIndex.build(list(rows), tmp_path / "i", tokenizer="gpt-neox",
                                     progress=False)
    assert idx.tokenizer == "gpt-neox"
    feats = features.compute(table, None, index=idx, tokenizer="gpt-neox", semantic=False,
                             progress=False)
    assert feats.num_rows == 20
    with pytest.raises(ValueError, match="differs from the one the corpus index was built with"):
        features.compute(table, None, index=idx, tokenizer="gpt2", semantic=False,
                         progress=False)
