"""The demo pipeline on a tiny random model and a generated corpus, through the same code path as
`memtax demo` (model, tokenizer and documents injected), with the network forbidden.

Oracles: HF `generate` (greedy, EOS forbidden as Pythia's min_length did) for which windows are
memorized and for Pythia's free-running score; brute-force sliding-window counts for the
duplicates; the taxonomy rules written out by hand; the corpus tokens for every sample.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from engine.output import read_scores
from memtax import demo, demo_corpus

VOCAB = 301
EOS = 0
PREFIX = CONT = 32


# ---------------------------------------------------------------------------- network guard


class NetworkAttempt(RuntimeError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """HF_HUB_OFFLINE=1 and every socket connection attempt fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise NetworkAttempt(f"network access attempted: {args[1:]!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert attempts == [], f"the demo tried to open network connections: {attempts}"


def test_network_guard_fires(no_network):
    with pytest.raises(NetworkAttempt):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(NetworkAttempt):
        socket.socket().connect(("127.0.0.1", 9))
    no_network.clear()  # the guard worked; nothing else may connect


# ---------------------------------------------------------------------------- tiny world


def word_tokenizer():
    """A word-level tokenizer whose decode/encode round-trips any id sequence exactly, so text
    documents made from planted token sequences tokenize back to those sequences."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"[EOS]": EOS, "[UNK]": 1}
    for i in range(100):
        vocab[str(i)] = len(vocab)
    for w in ("item", "Chapter"):
        vocab[w] = len(vocab)
    while len(vocab) < VOCAB:
        vocab[f"w{len(vocab)}"] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="[EOS]",
                                                unk_token="[UNK]"), vocab


def greedy(model, prompts: np.ndarray) -> np.ndarray:
    """HF greedy continuation of CONT tokens, EOS forbidden at every step (min_new_tokens)."""
    with torch.no_grad():
        out = model.generate(torch.as_tensor(prompts, dtype=torch.long), do_sample=False,
                             max_new_tokens=CONT, min_new_tokens=CONT, eos_token_id=EOS,
                             pad_token_id=EOS, attention_mask=torch.ones(prompts.shape,
                                                                         dtype=torch.long))
    return out[:, prompts.shape[1]:].numpy()


@pytest.fixture(scope="module")
def world():
    from memtax.testing import tiny_model

    model = tiny_model("llama", vocab_size=VOCAB)
    tok, vocab = word_tokenizer()
    rng = np.random.default_rng(7)
    words = np.array([v for k, v in vocab.items() if k.startswith("w")])
    planted_prompts = rng.choice(words, size=(14, PREFIX))
    passages = np.concatenate([planted_prompts, greedy(model, planted_prompts)], axis=1)
    docs: list[np.ndarray] = []
    # 2 passages recur in 7 documents each (duplicates 7 > 5: recitation), 12 occur once.
    for k in range(2):
        docs += [passages[k]] * 7
    docs += list(passages[2:])
    # plain random documents and templated ones ("item 1 item 2 ...": reconstruction candidates)
    docs += [rng.choice(words, size=int(rng.integers(80, 260))) for _ in range(30)]
    for start in (1, 20, 40):
        docs.append(np.array([t for i in range(start, start + 40)
                              for t in (vocab["item"], vocab[str(i)])]))
    docs.append(rng.choice(words, size=40))  # too short for any window
    order = rng.permutation(len(docs))
    docs = [docs[i] for i in order]
    texts = [demo.TextDocument(f"doc{k:03d}", "planted" if k % 2 else "random",
                               tok.decode(d.tolist())) for k, d in enumerate(docs)]
    return {"model": model, "tok": tok, "docs": docs, "texts": texts, "passages": passages}


def brute_count(docs: list[np.ndarray], query: np.ndarray) -> int:
    n = query.size
    total = 0
    for d in docs:
        if d.size >= n:
            w = np.lib.stride_tricks.sliding_window_view(d, n)
            total += int((w == query).all(axis=1).sum())
    return total


# ---------------------------------------------------------------------------- the pipeline


def test_pipeline_end_to_end_on_tiny_model(world, tmp_path, no_network):
    out = tmp_path / "demo"
    n = 100
    res = demo.run_pipeline(world["model"], world["tok"], world["texts"], out, samples=n,
                            seed=3, start_share=0.7, n_boot=30, label="tiny-llama",
                            progress=False)
    docs = world["docs"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers

    # corpus documents: tokenized back exactly, one document per text
    doc_t = pq.read_table(out / "documents.parquet").to_pandas()
    assert doc_t["n_tokens"].tolist() == [d.size for d in docs]
    assert res.corpus["tokens"] == sum(d.size for d in docs)
    assert res.corpus["files"] == len(docs)

    # samples: the corpus tokens at (doc, offset); ids = global token positions; every document
    # start that has a window is sampled (start_share * n exceeds the number of documents)
    s = pq.read_table(out / "samples.parquet").to_pandas()
    assert len(s) == n and s["sample_id"].is_unique
    starts = doc_t["token_start"].to_numpy()
    rows = np.stack(s["tokens"].to_numpy()).astype(np.int64)
    for (d, o, sid), row in zip(s[["doc_id", "offset", "sample_id"]].to_numpy(), rows):
        assert sid == starts[d] + o
        np.testing.assert_array_equal(row, docs[d][o:o + PREFIX + CONT])
    long_enough = {k for k, d in enumerate(docs) if d.size >= PREFIX + CONT}
    assert set(s.loc[s["offset"] == 0, "doc_id"]) == long_enough

    # exact scores against HF greedy generation of every sampled row
    scores = read_scores(out / "scores").to_pandas()
    assert scores["sample_id"].tolist() == s["sample_id"].tolist()
    cont_greedy = greedy(world["model"], rows[:, :PREFIX])
    truth = rows[:, PREFIX:]
    expect_exact = (cont_greedy == truth).all(axis=1)
    assert expect_exact.sum() >= 20  # the planted passages
    np.testing.assert_array_equal(scores["exact_match"].to_numpy(), expect_exact)
    mismatch = cont_greedy != truth
    expect_len = np.where(mismatch.any(1), mismatch.argmax(1), CONT)
    np.testing.assert_array_equal(scores["match_len"].to_numpy(), expect_len)
    assert res.n_memorized == int(expect_exact.sum()) and res.n_samples == n

    # generate mode: memorized rows and near misses, Pythia's score from HF greedy
    gen = pq.read_table(out / "generate.parquet").to_pandas()
    picked = (expect_exact | (expect_len >= CONT // 2))
    assert gen["sample_id"].tolist() == s["sample_id"][picked].tolist()
    expect_gen = (cont_greedy == truth).mean(axis=1)[picked]
    np.testing.assert_allclose(gen["gen_score"].to_numpy(), expect_gen, rtol=0, atol=1e-6)
    assert res.checks["generate_agrees_on_exact_match"]

    # features: same rows; duplicates by brute force over the documents
    f = pq.read_table(out / "features.parquet").to_pandas()
    assert f["sample_id"].tolist() == scores["sample_id"].tolist()
    expect_dup = np.array([brute_count(docs, r[PREFIX:]) for r in rows])
    np.testing.assert_array_equal(f["duplicates"].to_numpy(), expect_dup)
    for col in ("token_freq_max", "huffman_code_length", "is_templating", "semantic_matches",
                "textual_matches", "code_score", "cont_ppl"):
        assert col in f.columns and f[col].notna().all(), col

    # taxonomy by the rules, written out
    cats = pq.read_table(out / "categories.parquet").to_pandas()
    assert cats["sample_id"].tolist() == f["sample_id"].tolist()
    expect_cat = np.where(expect_dup > 5, "recitation",
                          np.where(f["is_templating"].to_numpy(), "reconstruction",
                                   "recollection"))
    np.testing.assert_array_equal(cats["category"].to_numpy(), expect_cat)
    assert (cats["category"] == "reconstruction").any()  # the "item 1 item 2" documents
    mem_by_cat = {r["category"]: r["memorized"] for r in res.categories}
    for c in ("recitation", "reconstruction", "recollection"):
        assert mem_by_cat[c] == int((expect_exact & (expect_cat == c)).sum())

    # report: every figure the page shows exists
    page = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert len(imgs) >= 6 and all((out / "report" / p).is_file() for p in imgs)
    assert res.report == out / "report" / "index.html"

    # summary: examples are decoded windows of their category, memorized ones first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["memorized"] == res.n_memorized and summary["produced_by"] == demo.MARKER
    text = (out / "summary.txt").read_text()
    assert f"{res.n_memorized:,} ({res.memorized_share:.2%})" in text
    assert str(res.report) in text
    by_id = dict(zip(s["sample_id"], range(len(s))))
    for c, exs in res.examples.items():
        assert 1 <= len(exs) <= 2
        for ex in exs:
            k = by_id[ex["sample_id"]]
            assert expect_cat[k] == c and bool(expect_exact[k]) == ex["memorized"]
            assert ex["prompt"] == world["tok"].decode(rows[k, :PREFIX].tolist())
        if mem_by_cat[c] >= 2:
            assert all(ex["memorized"] for ex in exs)
    print({st.name: round(st.seconds, 2) for st in res.stages})
    names = [st.name for st in res.stages]
    for stage in ("corpus", "tokenize", "index", "sample", "score (exact)", "generate",
                  "features", "models + report"):
        assert stage in names and stage in text


def test_rerun_replaces_demo_output_and_refuses_foreign_folder(world, tmp_path, no_network):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        demo.run_pipeline(world["model"], world["tok"], world["texts"], foreign, samples=10,
                          progress=False)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    # an earlier demo output is replaced; a failing run leaves it untouched and no temp folder
    out = tmp_path / "demo"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"produced_by": demo.MARKER}))
    with pytest.raises(ValueError, match="distinct windows"):
        demo.run_pipeline(world["model"], world["tok"], world["texts"], out, samples=10**6,
                          progress=False)
    assert [p.name for p in out.iterdir()] == ["summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "foreign"]


def test_nothing_memorized_still_reports_with_counts(world, tmp_path, no_network):
    # only the random documents: the random model reproduces none of their continuations (HF
    # greedy decoding checks that below), so every section that needs memorized rows must say
    # how many there were instead of the report being skipped
    texts = [t for t, d in zip(world["texts"], world["docs"]) if d.size > 64 + 1]
    out = tmp_path / "demo"
    with pytest.warns(UserWarning, match="semantic=False: skipping semantic_matches"):
        res = demo.run_pipeline(world["model"], world["tok"], texts, out, samples=12, seed=1,
                                n_boot=10, semantic=False, progress=False)
    rows = np.stack(pq.read_table(out / "samples.parquet").column("tokens").to_numpy(
        zero_copy_only=False)).astype(np.int64)
    greedy_exact = (greedy(world["model"], rows[:, :PREFIX]) == rows[:, PREFIX:]).all(axis=1)
    assert greedy_exact.sum() == 0
    assert res.n_memorized == 0
    assert res.report == out / "report" / "index.html" and res.report.is_file()
    page = res.report.read_text()
    assert page.count("has 0 memorized and 12 other samples") == 3  # models, dependencies, KL
    assert "No memorized samples in" in page
    run = json.loads((out / "report" / "tables" / "run.json").read_text())
    assert run["notes"] == res.report_notes and len(res.report_notes) == 4
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert imgs and all((out / "report" / p).is_file() for p in imgs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["report"] == "report/index.html" and summary["memorized"] == 0
    assert summary["report_notes"] == res.report_notes
    assert "has 0 memorized and 12 other samples" in demo.format_summary(res)


# ---------------------------------------------------------------------------- windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_windows_properties(seed):
    rng = np.random.default_rng(100 + seed)
    lengths = rng.integers(0, 400, size=60)
    lengths[:5] = [64, 63, 0, 65, 64]
    n = 300
    doc, off = demo.choose_windows(lengths, n, seed=seed, seq_len=64, start_share=0.25)
    assert doc.shape == off.shape == (n,)
    assert np.all(off >= 0) and np.all(off + 64 <= lengths[doc])  # inside one document
    pos = np.cumsum(np.r_[0, lengths])[doc] + off
    assert np.all(np.diff(pos) > 0)  # distinct and in corpus order
    eligible = int((lengths >= 64).sum())
    assert (off == 0).sum() >= min(round(n * 0.25), eligible)
    again = demo.choose_windows(lengths, n, seed=seed, seq_len=64, start_share=0.25)
    np.testing.assert_array_equal(again[0], doc)
    np.testing.assert_array_equal(again[1], off)
    other = demo.choose_windows(lengths, n, seed=seed + 10, seq_len=64, start_share=0.25)
    assert not np.array_equal(other[1], off)


def test_choose_windows_all_and_errors():
    lengths = np.array([70, 64, 10, 66])
    total = 7 + 1 + 0 + 3
    doc, off = demo.choose_windows(lengths, total, seed=0, seq_len=64, start_share=0.5)
    assert list(zip(doc.tolist(), off.tolist())) == (
        [(0, k) for k in range(7)] + [(1, 0)] + [(3, k) for k in range(3)])
    with pytest.raises(ValueError, match="only 11 distinct windows"):
        demo.choose_windows(lengths, total + 1, seq_len=64)
    with pytest.raises(ValueError, match="positive integer"):
        demo.choose_windows(lengths, 0)
    with pytest.raises(ValueError, match="start_share"):
        demo.choose_windows(lengths, 2, start_share=1.5)


def test_uniform_part_is_uniform():
    # one long document: the non-start windows are uniform over positions 1..N-64
    lengths = np.array([10_063])
    hits = np.zeros(10_000)
    for seed in range(40):
        _, off = demo.choose_windows(lengths, 500, seed=seed, seq_len=64, start_share=0.0)
        np.add.at(hits, off, 1)
    counts = hits.reshape(10, -1).sum(1)
    expected = 40 * 500 / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


# ---------------------------------------------------------------------------- corpus


def _fake_dist(site: Path, name: str, files: dict[str, str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = [f"{info.name}/METADATA,,"]
    for rel, text in files.items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        record.append(f"{rel},,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_corpus_order_and_selection(tmp_path):
    std = tmp_path / "std"
    for rel in ("b.py", "a.py", "pkg/z.py", "pkg/__init__.py", "test/t.py", "tests/u.py",
                "site-packages/x.py", "idlelib/i.py", "notes.txt"):
        (std / rel).parent.mkdir(parents=True, exist_ok=True)
        (std / rel).write_text("x = 1\n")
    got = demo_corpus.stdlib_sources(std)
    assert [f.name for f in got] == ["a.py", "b.py", "pkg/__init__.py", "pkg/z.py"]
    assert {f.part for f in got} == {"stdlib"}

    site = tmp_path / "site"
    _fake_dist(site, "Zeta", {"Zeta-1.0.dist-info/LICENSE": "MIT", "zeta/__init__.py": ""})
    _fake_dist(site, "alpha", {"alpha-1.0.dist-info/licenses/COPYING": "GPL",
                               "alpha/README.md": "hi", "alpha/core.py": ""})
    _fake_dist(site, "memtax", {"memtax-1.0.dist-info/LICENSE": "ours"})
    docs = demo_corpus.package_documents([str(site)])
    assert [d.name for d in docs] == [
        "alpha/alpha-1.0.dist-info/METADATA", "alpha/alpha-1.0.dist-info/licenses/COPYING",
        "alpha/alpha/README.md", "zeta/Zeta-1.0.dist-info/LICENSE",
        "zeta/Zeta-1.0.dist-info/METADATA"]
    assert demo_corpus.read_text(docs[1].path) == "GPL"
    with pytest.raises(FileNotFoundError):
        demo_corpus.stdlib_sources(tmp_path / "missing")


def test_real_corpus_is_deterministic_and_venv_only():
    a, b = demo_corpus.gather_files(), demo_corpus.gather_files()
    assert a == b and len(a) > 500
    assert {f.part for f in a} == {"stdlib", "package-docs"}
    site = Path(sys.prefix).resolve()
    pkg = [f for f in a if f.part == "package-docs"]
    assert pkg and all(str(f.path).startswith(str(site)) for f in pkg)
    assert not any(f.name.startswith("memtax/") for f in pkg)
    assert any(os.path.basename(f.path).upper().startswith("LICEN") for f in pkg)


def test_smollm2_gguf_found_without_importing_it():
    path = demo.smollm2_gguf()
    assert path.name == demo.SMOLLM2_FILE and path.stat().st_size > 50_000_000
    assert demo.SMOLLM2_PACKAGE not in sys.modules
