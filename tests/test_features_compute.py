"""features.compute and `memtax features` end to end, each column against an independent oracle."""

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import features
from features import CorpusIndex
from features.compression import huffman_code_length, zlib_ratio
from features.templating import classify
from features.tokenizers import load_tokenizer
from memtax.cli import main

# Expected skip warnings (asserted where they matter, in test_missing_inputs_skip_with_warning).
pytestmark = pytest.mark.filterwarnings("ignore:features:UserWarning")

P, C = 8, 8  # short samples keep the brute-force oracles fast

TEXT = (
    "The committee met on Tuesday to discuss the budget for the next year. Members raised "
    "concerns about the rising cost of housing and asked for a detailed report by March. "
    "Chapter 1 Chapter 2 Chapter 3 Chapter 4 Chapter 5 Chapter 6 Chapter 7 Chapter 8 "
    "def forward(self, x):\n    h = self.embed(x)\n    return self.head(h)\n"
    + "ab " * 40 +
    "The committee met on Tuesday to discuss the budget for the next year. Café crème brûlée."
)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("gpt-neox")


@pytest.fixture(scope="module")
def setup(tok, tmp_path_factory):
    ids = np.array(tok.encode(TEXT).ids, dtype=np.int64)
    docs = [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
    root = tmp_path_factory.mktemp("feat")
    idx = CorpusIndex.build(docs, root / "index", vocab_size=tok.get_vocab_size(), progress=False)
    windows = np.lib.stride_tricks.sliding_window_view(ids, P + C)[::5].copy()
    # a sample holding one byte of a two-byte UTF-8 character: decodes to U+FFFD
    lone = tok.token_to_id("Ã")
    assert lone is not None and tok.decode([lone]) == "\ufffd"
    odd = windows[0].copy()
    odd[3] = lone
    samples = np.vstack([windows, odd[None]])
    n = samples.shape[0]
    rng = np.random.default_rng(0)
    sel = rng.permutation(n)[: n - 3]  # the table covers a shuffled subset of the samples
    sel = np.r_[sel, n - 1] if n - 1 not in sel else sel
    table = pa.table({
        "sample_id": pa.array(sel, pa.int64()),
        "exact_match": pa.array(rng.random(sel.size) < 0.5),
        "prompt_ppl": pa.array(rng.random(sel.size) * 10, pa.float32()),
        "cont_ppl": pa.array(rng.random(sel.size) * 10, pa.float32()),
        "seq_ppl": pa.array(rng.random(sel.size) * 10, pa.float32()),
        "seq_ppl_paper": pa.array(rng.random(sel.size) * 10, pa.float32()),
    }).replace_schema_metadata({b"prefix_len": b"8", b"cont_len": b"8", b"model": b"tiny"})
    return docs, idx, samples, table, root


def brute_count(docs, q):
    n = len(q)
    return sum(
        int(np.array_equal(d[i : i + n], q)) for d in docs for i in range(len(d) - n + 1)
    )


def test_compute_columns_match_oracles(setup, tok):
    docs, idx, samples, table, _ = setup
    feats = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                             chunk_size=7, workers=2, progress=False)
    assert feats.column("sample_id").to_pylist() == table.column("sample_id").to_pylist()
    for c in table.column_names:  # score columns carried unchanged
        assert feats.column(c).equals(table.column(c))
    unigrams = np.bincount(np.concatenate(docs), minlength=tok.get_vocab_size())
    cols = feats.to_pydict()
    for k, sid in enumerate(cols["sample_id"]):
        row = samples[sid]
        assert cols["duplicates"][k] == brute_count(docs, row[P:])
        assert cols["prompt_duplicates"][k] == brute_count(docs, row[:P])
        assert cols["sample_duplicates"][k] == brute_count(docs, row)
        f = unigrams[row].astype(float)
        assert cols["token_freq_max"][k] == f.max()
        assert cols["token_freq_min"][k] == f.min()
        assert cols["token_freq_mean"][k] == pytest.approx(f.mean())
        assert cols["token_freq_median"][k] == pytest.approx(np.median(f))
        assert cols["token_freq_p25"][k] == pytest.approx(np.percentile(f, 25))
        assert cols["token_freq_p75"][k] == pytest.approx(np.percentile(f, 75))
        text = tok.decode(row.tolist(), skip_special_tokens=False)
        assert cols["huffman_code_length"][k] == pytest.approx(huffman_code_length(text))
        assert cols["zlib_ratio"][k] == pytest.approx(zlib_ratio(text))
        inc, rep = classify(text)
        assert (cols["is_incrementing"][k], cols["is_repeating"][k]) == (inc, rep)
        assert cols["is_templating"][k] == (inc or rep)
        assert 0.0 <= cols["code_score"][k] <= 1.0
    # the corpus holds a templated run and a repeated sample: both kinds occur
    assert any(cols["is_incrementing"]) and any(cols["is_repeating"])
    assert max(cols["duplicates"]) >= 2
    meta = feats.schema.metadata
    assert meta[b"model"] == b"tiny"  # the score table's metadata is kept
    import json

    info = json.loads(meta[b"memtax.features"])
    assert info["features"]["duplicates"]["version"] == 1
    assert "Shannon" in info["features"]["huffman_code_length"]["definition"]
    assert set(info["skipped"]) == {"semantic_matches", "textual_matches"}


def test_workers_one_equals_two(setup, tok):
    _, idx, samples, table, _ = setup
    a = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False, workers=1,
                         progress=False)
    b = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False, workers=2,
                         chunk_size=5, progress=False)
    assert a.equals(b)


def test_semantic_columns_match_brute_force(setup, tok):
    from features import semantic

    _, idx, samples, _, _ = setup
    few = samples[:10]
    feats = features.compute(None, few, tokenizer=tok, workers=1, prefix_len=P, cont_len=C,
                             progress=False)
    texts = [tok.decode(r.tolist(), skip_special_tokens=False) for r in few]
    prompts = [tok.decode(r[:P].tolist(), skip_special_tokens=False) for r in few]
    emb = semantic.embed(texts, progress=False)
    sims = emb.astype(np.float64) @ emb.T.astype(np.float64)
    want = [(sum(1 for j in range(10) if j != i and sims[i, j] >= 0.8)) for i in range(10)]
    assert feats.column("semantic_matches").to_pylist() == want
    assert sum(want) > 0  # the corpus repeats its first sentence
    from rapidfuzz.distance import Levenshtein

    want_t = [sum(1 for j in range(10) if j != i and sims[i, j] >= 0.8
                  and 0 < Levenshtein.distance(prompts[i], prompts[j]) < 20) for i in range(10)]
    assert feats.column("textual_matches").to_pylist() == want_t
    # no index: those columns are skipped, with a warning naming them
    assert "duplicates" not in feats.column_names
    # a separate reference set: every reference row counts, no self-exclusion
    ref = samples[8:14]  # overlaps `few` in rows 8 and 9: those match themselves
    feats = features.compute(None, few, tokenizer=tok, workers=1, prefix_len=P, cont_len=C,
                             reference=ref, progress=False)
    ref_emb = semantic.embed([tok.decode(r.tolist(), skip_special_tokens=False) for r in ref],
                             progress=False)
    sims = emb.astype(np.float64) @ ref_emb.T.astype(np.float64)
    want = (sims >= 0.8).sum(1)
    assert feats.column("semantic_matches").to_pylist() == want.tolist()
    assert want[8] >= 1 and want[9] >= 1


def test_missing_inputs_skip_with_warning(setup):
    _, idx, samples, table, _ = setup
    with pytest.warns(UserWarning, match="no tokenizer: skipping huffman_code_length"):
        feats = features.compute(table, samples, index=idx, progress=False)
    assert "duplicates" in feats.column_names and "zlib_ratio" not in feats.column_names
    with pytest.warns(UserWarning, match="no corpus index: skipping duplicates"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*no tokenizer.*")
            feats = features.compute(table, samples, progress=False)
    assert feats.column_names == table.column_names


def test_bad_inputs(setup, tok, tmp_path):
    docs, idx, samples, table, _ = setup
    # sample ids missing from the samples
    bad = table.set_column(0, "sample_id", pa.array(
        np.r_[table.column("sample_id").to_numpy()[:-1], 10_000], pa.int64()))
    with pytest.raises(ValueError, match=r"missing from the samples.*10000"):
        features.compute(bad, samples, index=idx, progress=False)
    # an empty table
    with pytest.raises(ValueError, match="empty"):
        features.compute(table.slice(0, 0), samples, index=idx, progress=False)
    # repeated ids
    rep = pa.concat_tables([table.slice(0, 2), table.slice(0, 1)])
    with pytest.raises(ValueError, match="repeats sample_id"):
        features.compute(rep, samples, index=idx, progress=False)
    # an index built for a smaller (declared) vocabulary than the tokenizer's
    small = CorpusIndex.build(docs, tmp_path / "small", vocab_size=int(max(map(max, docs))) + 1,
                              progress=False)
    with pytest.raises(ValueError, match="different tokenizers"):
        features.compute(table, samples, index=small, tokenizer=tok, semantic=False,
                         progress=False)
    # samples holding ids the tokenizer cannot decode (GPT-2 has 50257 ids)
    wide = samples.copy()
    wide[0, 0] = 50270
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary"):
        features.compute(None, wide, tokenizer="gpt2", semantic=False, workers=1,
                         prefix_len=P, cont_len=C, progress=False)
    # lengths that disagree with the score table's
    with pytest.raises(ValueError, match="prefix_len=16"):
        features.compute(table, samples, prefix_len=16, progress=False)
    with pytest.raises(ValueError, match="sample_id"):
        features.compute(table.drop(["sample_id"]), samples, progress=False)


def test_non_utf8_decode_uses_replacement_character(setup, tok):
    _, idx, samples, table, _ = setup
    sid = samples.shape[0] - 1
    feats = features.compute(None, samples[sid:], tokenizer=tok, semantic=False, workers=1,
                             prefix_len=P, cont_len=C, progress=False)
    text = tok.decode(samples[sid].tolist())
    assert "\ufffd" in text
    assert feats.column("huffman_code_length")[0].as_py() == pytest.approx(
        huffman_code_length(text))


def test_cli_writes_parquet_and_refuses_overwrite(setup, tok, tmp_path, capsys):
    _, idx, samples, table, root = setup
    np.save(tmp_path / "samples.npy", samples)
    pq.write_table(table, tmp_path / "scores.parquet")
    argv = ["features", "--scores", str(tmp_path / "scores.parquet"), "--samples",
            str(tmp_path / "samples.npy"), "--index", str(root / "index"), "--tokenizer",
            "gpt-neox", "--out", str(tmp_path / "out"), "--no-semantic", "--quiet",
            "--workers", "1"]
    assert main(argv) == 0
    got = pq.read_table(tmp_path / "out" / "features.parquet")
    want = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                            workers=1, progress=False)
    assert got.select(want.column_names).equals(want)
    assert main(argv) == 2
    assert "exists" in capsys.readouterr().err
    missing = argv[:4] + [str(tmp_path / "nope.npy")] + argv[5:]
    missing[missing.index("--out") + 1] = str(tmp_path / "out2")
    assert main(missing) == 2
    assert not (tmp_path / "out2" / "features.parquet").exists()


def test_text_file_samples(tok, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(TEXT, encoding="utf-8")
    feats = features.compute(None, path, tokenizer="gpt-neox", semantic=False, workers=1,
                             prefix_len=P, cont_len=C, progress=False)
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    rows = np.array(ids[: len(ids) // (P + C) * (P + C)]).reshape(-1, P + C)
    assert feats.num_rows == rows.shape[0]
    want = [huffman_code_length(tok.decode(r.tolist(), skip_special_tokens=False)) for r in rows]
    assert feats.column("huffman_code_length").to_pylist() == pytest.approx(want)


def test_cli_on_a_real_score_folder(setup, tok, tmp_path):
    """engine.score -> score folder -> `memtax features` with the samples path the run recorded."""
    import engine
    from memtax.testing import tiny_model

    _, idx, samples, _, root = setup
    np.save(tmp_path / "samples.npy", samples)
    model = tiny_model("gpt_neox", vocab_size=tok.get_vocab_size())
    scores = engine.score(model, str(tmp_path / "samples.npy"), prefix_len=P, cont_len=C,
                          out=tmp_path / "scores", progress=False, device="cpu")
    argv = ["features", "--scores", str(tmp_path / "scores"), "--index", str(root / "index"),
            "--tokenizer", "gpt-neox", "--out", str(tmp_path / "feats"), "--no-semantic",
            "--quiet", "--workers", "1"]
    assert main(argv) == 0
    got = pq.read_table(tmp_path / "feats" / "features.parquet")
    assert got.column("sample_id").to_pylist() == list(range(samples.shape[0]))
    for c in ("exact_match", "prompt_ppl", "cont_ppl", "seq_ppl", "seq_ppl_paper"):
        assert got.column(c).equals(scores.column(c))
    want = [brute_count(setup[0], r[P:]) for r in samples]
    assert got.column("duplicates").to_pylist() == want


def test_undeclared_vocab_treats_unseen_ids_as_zero(tmp_path):
    docs = [np.array([1, 2, 3, 1, 2, 3, 1, 2], np.int64)]
    idx = CorpusIndex.build(docs, tmp_path / "i", progress=False)  # no vocab_size: ids 0..3
    samples = np.array([[1, 2, 3, 7], [3, 1, 2, 3]])
    feats = features.compute(None, samples, index=idx, prefix_len=2, cont_len=2, progress=False)
    # token 7 never occurs in the corpus: its frequency is 0, not an error
    assert feats.column("token_freq_min").to_pylist() == [0.0, 2.0]
    assert feats.column("duplicates").to_pylist() == [0, 2]
