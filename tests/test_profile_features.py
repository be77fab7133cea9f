"""The paper profile of the per-sample features: each switch on a hand-made input, with the value
the paper's code gives, against an independent oracle (a line-by-line transcription of the paper's
function, Hugging Face's own decode, brute-force counting by the paper's loop, hand-computed
order statistics); the default profile unchanged; bad profile names and mismatched inputs refused.
"""

import json
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import features
from engine.profiles import profile_of
from features import CorpusIndex
from features.code_score import code_score, paper_band
from features.duplicates import duplicate_counts
from features.feature_stream import text_features
from features.semantic import matches
from features.templating import classify, paper_classify, paper_split_items
from features.token_stats import token_frequency_stats
from features.tokenizers import clean_up_tokenization, decode_batch, load_tokenizer
from memtax.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:features:UserWarning")


# ---------------------------------------------------------------- the paper's pattern.py
# Oracle: semantic-memorization filters/pattern.py (`find_if_incrementing_or_repeating`,
# `split_text`, `is_pattern`) transcribed statement by statement, Spark decorators left out.

def oracle_find_if_incrementing_or_repeating(splits, test_repeating=False):
    if len(splits) < 3 and not test_repeating:
        return False, 0
    elif len(splits) == 3 and not test_repeating:
        if not all([type(i) in [float, int] for i in splits]):
            return False, 0
        return (splits[2] - 2 * splits[1] + splits[0]) < 1e-5, splits[2] - splits[1]
    if len(splits) > 4 and not test_repeating:
        splits = splits[1:-1]
    diff = None
    for temp_len in range(1, len(splits) // 2 + 1):
        is_inc = True
        diff_valid = False
        for every_i in range(temp_len):
            curr_diff = None
            for i in range(every_i + temp_len, len(splits), temp_len):
                if type(splits[i]) != type(splits[i - temp_len]):  # noqa: E721 (as written)
                    is_inc = False
                    break
                if curr_diff is None and type(splits[i]) in [int, float]:
                    curr_diff = splits[i] - splits[i - temp_len]
                elif type(splits[i]) in [int, float]:
                    is_curr_inc = abs(splits[i] - splits[i - temp_len] - curr_diff) < 1e-10
                    if not is_curr_inc:
                        is_inc = False
                        break
                    else:
                        diff_valid = True
                elif type(splits[i]) == str and splits[i] != splits[i - temp_len]:  # noqa: E721
                    is_inc = False
                    break
            if not is_inc:
                break
            if diff is None and curr_diff is not None and curr_diff != 0:
                diff = curr_diff
        if is_inc:
            if diff is not None and diff_valid:
                return True, diff
            elif diff is None:
                return True, None
    return False, 0


def oracle_split_text(text, split_type="incrementing"):
    if split_type == "repeating":
        return list(text)
    text = re.sub(r"\s+", " ", text)
    splits = []
    text_recon = ""
    for word in text.split(" "):
        try:
            text_recon += str(int(word, 0)) + " "
        except ValueError:
            text_recon += word + " "
    text_recon = repr(text_recon.strip())
    for word in text_recon.split(" "):
        word = word.replace("\\n", "")
        word = word.replace("\\x", "")
        word = word.replace("\\", "")
        word = word.replace("'", "")
        word = word.replace('"', "")
        word = re.split("([0-9]+)", word)
        splits.extend(word)
    splits_new = []
    for word in splits:
        word = word.strip("'")
        if word.strip(" ") == "":
            continue
        if word == "":
            continue
        try:
            splits_new.append(int(word))
        except ValueError:
            splits_new.append(word)
    return splits_new


def oracle_is_pattern(text):
    splits = oracle_split_text(text)
    is_inc, diff = oracle_find_if_incrementing_or_repeating(splits)
    if is_inc and diff is not None and diff != 0:
        return True, False
    splits = oracle_split_text(text, split_type="repeating")
    is_inc, diff = oracle_find_if_incrementing_or_repeating(splits, test_repeating=True)
    if is_inc:
        return False, True
    return False, False


HAND_CASES = [
    # (text, paper's (is_incrementing, is_repeating), memtax default's)
    ("\n" * 64, (False, True), (False, False)),  # raw characters: 64 newlines repeat
    ("10 7 1", (True, False), (False, False)),  # the signed three-item check: 1 - 14 + 10 < 1e-5
    ("1 2 3", (True, False), (True, False)),
    ("5 5 5", (False, True), (False, False)),  # step 0: not incrementing; raw "5 " repeats
    ("1, 2, 3, 4, 5, 6", (True, False), (True, False)),  # "," is an item in the paper's split
    ("a , b", (False, False), (False, False)),
    ("x  x  x  x", (False, True), (False, True)),
    ("ab ab ab ab\n", (False, False), (False, True)),  # raw: the trailing newline breaks the period
]


@pytest.mark.parametrize("text,paper,default", HAND_CASES)
def test_paper_templating_hand_cases(text, paper, default):
    assert oracle_is_pattern(text) == paper  # the hand value is what the paper's code gives
    assert paper_classify(text) == paper
    assert classify(text, profile="paper") == paper
    assert classify(text) == default  # the default profile is unchanged


def test_paper_items_hand_case():
    # int(word, 0) reads hex and signs; repr() escapes are stripped; digits split off words
    assert paper_split_items("0x10 -3 v1.2, 'q'") == [16, "-", 3, "v", 1, ".", 2, ",", "q"]
    assert paper_split_items("0x10 -3 v1.2, 'q'") == oracle_split_text("0x10 -3 v1.2, 'q'")


def _random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["Chapter", "a", "id", "x", ",", ".", ";", "-", "(", ")", "'", '"', "\\", "é", "0x1F",
             "0b11", "007", "-4", "+2", "1_000", "v2", "3.5", "\t", "\n", " ", "ab", "ab", "--"]
    texts = []
    for _ in range(n):
        kind = rng.integers(4)
        if kind == 0:  # arithmetic runs with a separator, some with a start/step/noise
            start, step = rng.integers(-5, 50), rng.integers(-3, 4)
            sep = rng.choice([" ", ", ", "\n", " item ", "; "])
            vals = [start + step * i for i in range(rng.integers(2, 9))]
            if rng.random() < 0.3:
                vals[rng.integers(len(vals))] += 1
            texts.append(sep.join(map(str, vals)))
        elif kind == 1:  # repeated units, raw whitespace included
            unit = "".join(rng.choice(words, size=rng.integers(1, 4)))
            texts.append(unit * int(rng.integers(1, 6)) + rng.choice(["", "\n", " ", unit[:1]]))
        elif kind == 2:  # three numbers (the paper's special case)
            texts.append(" ".join(str(v) for v in rng.integers(-20, 20, size=3)))
        else:  # word soup
            texts.append(" ".join(rng.choice(words, size=rng.integers(0, 12))))
    return texts


def test_paper_templating_equals_the_papers_code_on_generated_texts():
    texts = _random_texts(3000, seed=1)
    got = [paper_classify(t) for t in texts]
    want = [oracle_is_pattern(t) for t in texts]
    assert got == want
    # both outcomes of both tests occur, and the profiles disagree somewhere
    assert {g[0] for g in got} == {True, False} and {g[1] for g in got} == {True, False}
    assert any(classify(t) != g for t, g in zip(texts, got))


# ---------------------------------------------------------------- decoding
@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("gpt-neox")


def test_paper_decoding_cleans_tokenization_spaces(tok):
    from transformers import PreTrainedTokenizerFast

    # Hugging Face's decode as the paper's transformers ran it (cleanup on; transformers 5 keeps
    # it off for BPE unless forced)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, clean_up_tokenization_spaces=True,
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)
    text = "a , b . Is it ? I ca n't , it 's ok ! they 're , we 've , I 'm"
    ids = np.array([tok.encode(text).ids])
    assert decode_batch(tok, ids) == [text]  # default: what the tokens spell
    got = decode_batch(tok, ids, clean_up_spaces=True)
    assert got == [hf.decode(ids[0].tolist())]
    assert got[0].startswith("a, b. Is it? I can't, it's ok!")
    assert clean_up_tokenization("a , b") == "a, b"


# ---------------------------------------------------------------- token frequency percentiles
def spark_percentile_approx(values, p):
    """Oracle: the smallest value v with #{x <= v} >= p * n (Spark's percentile_approx when
    its summary keeps every value)."""
    return min(v for v in values if sum(x <= v for x in values) >= p * len(values))


def test_paper_percentiles_are_order_statistics():
    counts = np.array([10, 20, 30, 40, 50, 1, 7])
    tokens = np.array([[0, 1, 2, 3], [3, 1, 0, 2]])  # f = 10, 20, 30, 40 in two orders
    five = np.array([[5, 0, 1, 2, 3]])  # f = 1, 10, 20, 30, 40
    paper = token_frequency_stats(tokens, counts, profile="paper")
    default = token_frequency_stats(tokens, counts)
    # hand values: ranks ceil(0.25 * 4) = 1 and ceil(0.75 * 4) = 3
    assert paper["token_freq_p25"].tolist() == [10.0, 10.0]
    assert paper["token_freq_p75"].tolist() == [30.0, 30.0]
    assert default["token_freq_p25"].tolist() == [17.5, 17.5]  # numpy's linear interpolation
    assert default["token_freq_p75"].tolist() == [32.5, 32.5]
    # five values: ranks ceil(1.25) = 2, ceil(3.75) = 4
    p5 = token_frequency_stats(five, counts, profile="paper")
    assert (p5["token_freq_p25"][0], p5["token_freq_p75"][0]) == (10.0, 30.0)
    # the other statistics are the same in both profiles (the median interpolates in both)
    for c in ("token_freq_max", "token_freq_mean", "token_freq_min", "token_freq_median"):
        assert np.array_equal(paper[c], default[c])
    rng = np.random.default_rng(3)
    for t in (1, 2, 3, 7, 64):
        toks = rng.integers(0, counts.size, size=(20, t))
        got = token_frequency_stats(toks, counts, profile="paper")
        for row, p25, p75 in zip(toks, got["token_freq_p25"], got["token_freq_p75"]):
            f = counts[row].tolist()
            assert (p25, p75) == (spark_percentile_approx(f, 0.25),
                                  spark_percentile_approx(f, 0.75))


# ---------------------------------------------------------------- code vs natural language
def test_paper_code_band():
    # natural language when 1 - s >= 0.525, code when 1 - s <= 0.4 (model_parameters.py)
    for s in (0.0, 0.3, 0.475, 0.6, 0.61, 1.0):
        assert paper_band(s) == s
    for s in (0.476, 0.5, 0.55, 0.599):
        assert math.isnan(paper_band(s))
    prose = "The committee met on Tuesday to discuss the budget for the next year."
    code = "for (int i = 0; i < n; i++) { x[i] = y[i] * 2; }"
    for text in (prose, code):
        assert text_features(text, "paper")[4] == code_score(text)  # outside the band
        assert text_features(text)[4] == code_score(text)


# ---------------------------------------------------------------- semantic and textual matches
def test_paper_semantic_counts_itself_and_textual_skips_non_ascii_prompts():
    e = np.zeros((4, 3), np.float32)
    e[0] = e[1] = e[3] = [1, 0, 0]  # three identical embeddings
    e[2] = [0, 1, 0]
    prompts = ["abc", "abé", "xyz", "abd"]  # sample 1's prompt is non-ASCII
    sem, txt = matches(e, prompts, e, prompts, exclude_self=True, progress=False)
    assert sem.tolist() == [2, 2, 0, 2]
    assert txt.tolist() == [2, 2, 0, 2]  # abc-abé 1, abc-abd 1, abé-abd 2 edits
    # the paper's code: every row with cosine >= 0.8 counts, the sample's own row too; a prompt
    # with a character of ord > 127 gets 0 textual matches (its neighbours' prompts may have one)
    sem, txt = matches(e, prompts, e, prompts, exclude_self=False, ascii_prompts_only=True,
                       progress=False)
    assert sem.tolist() == [3, 3, 1, 3]
    assert txt.tolist() == [2, 0, 0, 2]


# ---------------------------------------------------------------- the last window
L, N = 2049, 32


def paper_window_count(seqs, query):
    """Oracle: the paper's save_sequence_hashes.py loop, windows at range(2049 - ngrams) of each
    sequence, compared exactly."""
    n = len(query)
    return sum(int(np.array_equal(s[i : i + n], query)) for s in seqs for i in range(L - n))


@pytest.fixture(scope="module")
def pile(tmp_path_factory):
    """Three 2049-token sequences with a 32-gram planted at the last window of sequences 0 and 2
    and inside sequence 1."""
    rng = np.random.default_rng(7)
    seqs = rng.integers(1, 60, size=(3, L)).astype(np.int64)
    q = rng.integers(1, 60, size=N)
    seqs[0, L - N :] = q
    seqs[1, 500 : 500 + N] = q
    seqs[2, L - N :] = q
    root = tmp_path_factory.mktemp("pile")
    idx = CorpusIndex.build(seqs.reshape(-1), root / "index", sequence_length=L, vocab_size=64,
                            progress=False)
    return seqs, q, idx, root


def test_paper_duplicates_skip_the_last_window(pile):
    seqs, q, idx, _ = pile
    sample = np.r_[seqs[1, 500 - N : 500], q][None]  # continuation = the planted 32-gram
    default = duplicate_counts(idx, sample, prefix_len=N)
    paper = duplicate_counts(idx, sample, prefix_len=N, profile="paper")
    assert default["duplicates"].tolist() == [3]
    assert paper["duplicates"].tolist() == [1] == [paper_window_count(seqs, q)]
    # windows taken anywhere in the corpus, every length the three columns use
    rng = np.random.default_rng(0)
    starts = np.r_[rng.integers(0, L - 2 * N, size=6), L - 2 * N, L - 2 * N - 1]
    rows = np.vstack([seqs[s_, p : p + 2 * N] for s_ in range(3) for p in starts])
    got = duplicate_counts(idx, rows, prefix_len=N, profile="paper")
    for k, row in enumerate(rows):
        assert got["duplicates"][k] == paper_window_count(seqs, row[N:])
        assert got["prompt_duplicates"][k] == paper_window_count(seqs, row[:N])
        assert got["sample_duplicates"][k] == paper_window_count(seqs, row)
    assert idx.count_ending(q[None]).tolist() == [2]


def test_paper_duplicates_need_an_index_with_count_ending():
    class CountOnly:
        def count(self, rows, **kw):
            return np.zeros(len(rows), np.int64)

    with pytest.raises(ValueError, match="count_ending"):
        duplicate_counts(CountOnly(), np.zeros((1, 4), np.int64), prefix_len=2, profile="paper")


def test_index_count_cli_paper_profile(pile, tmp_path, capsys):
    seqs, q, _, root = pile
    np.save(tmp_path / "q.npy", np.vstack([q, seqs[0, 10 : 10 + N]]))
    argv = ["index", "count", "--index", str(root / "index"), "--queries", str(tmp_path / "q.npy")]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == ["3", "1"]
    assert main(argv + ["--profile", "paper"]) == 0
    assert capsys.readouterr().out.split() == ["1", "1"]
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--profile", "papers"])
    assert exc.value.code == 2
    assert "papers" in capsys.readouterr().err


# ---------------------------------------------------------------- features.compute end to end
TEXT = (
    "Members raised concerns , asked for a report by March . They did n't agree , it 's late . "
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 "
    + "\n" * 200 +  # 25 tokens of 8 newlines: whole windows of raw newlines
    "def f(x):\n    return x + 1\n" + "Café crème brûlée , s'il vous plaît . " * 2
)
P = C = 8


@pytest.fixture(scope="module")
def setup(tok, tmp_path_factory):
    ids = np.array(tok.encode(TEXT).ids, dtype=np.int64)
    root = tmp_path_factory.mktemp("pfeat")
    docs = [ids[: len(ids) // 2], ids[len(ids) // 2 :]]
    idx = CorpusIndex.build(docs, root / "index", vocab_size=tok.get_vocab_size(), progress=False)
    samples = np.lib.stride_tricks.sliding_window_view(ids, P + C)[::2].copy()
    table = pa.table({
        "sample_id": pa.array(np.arange(samples.shape[0]), pa.int64()),
        "exact_match": pa.array(np.arange(samples.shape[0]) % 2 == 0),
    }).replace_schema_metadata({b"prefix_len": b"8", b"cont_len": b"8"})
    return docs, idx, samples, table, root


def test_compute_paper_profile_columns(setup, tok):
    from transformers import PreTrainedTokenizerFast

    docs, idx, samples, table, _ = setup
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, clean_up_tokenization_spaces=True,
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)
    feats = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                             chunk_size=9, workers=2, progress=False, profile="paper")
    assert profile_of(feats) == "paper"
    info = json.loads(feats.schema.metadata[b"memtax.features"])
    assert "last window" in info["features"]["duplicates"]["definition"]
    default = features.compute(table, samples, index=idx, tokenizer=tok, semantic=False,
                               workers=1, progress=False)
    assert profile_of(default) == "default"
    cols, dcols = feats.to_pydict(), default.to_pydict()
    unigrams = np.bincount(np.concatenate(docs), minlength=tok.get_vocab_size())
    cleaned = 0
    for k, sid in enumerate(cols["sample_id"]):
        row = samples[sid]
        text = hf.decode(row.tolist())
        cleaned += text != tok.decode(row.tolist(), skip_special_tokens=False)
        inc, rep = oracle_is_pattern(text)
        assert (cols["is_incrementing"][k], cols["is_repeating"][k]) == (inc, rep)
        assert cols["is_templating"][k] == (inc or rep)
        band = paper_band(code_score(text))
        assert cols["code_score"][k] == band or (math.isnan(band) and
                                                 math.isnan(cols["code_score"][k]))
        f = unigrams[row].tolist()
        assert cols["token_freq_p25"][k] == spark_percentile_approx(f, 0.25)
        assert cols["token_freq_p75"][k] == spark_percentile_approx(f, 0.75)
        for c in ("token_freq_max", "token_freq_min", "token_freq_median"):
            assert cols[c][k] == dcols[c][k]
        # an index over documents: each document's last window drops out (brute force)
        for c, q in (("duplicates", row[P:]), ("prompt_duplicates", row[:P]),
                     ("sample_duplicates", row)):
            n = len(q)
            assert cols[c][k] == sum(int(np.array_equal(d[i : i + n], q))
                                     for d in docs for i in range(len(d) - n))
    assert cleaned > 0  # the text's " ," and " ." were cleaned up in some samples
    assert any(cols["is_repeating"][k] != dcols["is_repeating"][k] for k in range(len(samples)))


def test_compute_paper_semantic_includes_itself(setup, tok):
    from rapidfuzz.distance import Levenshtein

    from features import semantic

    _, _, samples, _, _ = setup
    few = np.vstack([samples[:3], samples[:1], samples[-3:]])  # row 3 repeats row 0
    paper = features.compute(None, few, tokenizer=tok, workers=1, prefix_len=P, cont_len=C,
                             progress=False, profile="paper")
    # brute force on the texts as the paper decoded them: every row with cosine >= 0.8, the
    # sample's own row included; textual: 0 < distance < 20, and 0 for a non-ASCII prompt
    texts = [clean_up_tokenization(tok.decode(r.tolist())) for r in few]
    prompts = [clean_up_tokenization(tok.decode(r[:P].tolist())) for r in few]
    emb = semantic.embed(texts, progress=False)
    sims = emb.astype(np.float64) @ emb.T.astype(np.float64)
    n = len(few)
    want = [sum(1 for j in range(n) if sims[i, j] >= 0.8) for i in range(n)]
    want_t = [0 if not prompts[i].isascii() else
              sum(1 for j in range(n) if sims[i, j] >= 0.8
                  and 0 < Levenshtein.distance(prompts[i], prompts[j]) < 20) for i in range(n)]
    assert paper.column("semantic_matches").to_pylist() == want
    assert paper.column("textual_matches").to_pylist() == want_t
    assert want[0] >= 2 and want[3] >= 2  # itself and its repeat
    assert not all(p.isascii() for p in prompts)  # the non-ASCII rule is exercised


def test_profile_bad_name_and_mismatched_score_table(setup, tok, tmp_path, capsys):
    _, idx, samples, table, root = setup
    with pytest.raises(ValueError, match="'papr'"):
        features.compute(table, samples, index=idx, progress=False, profile="papr")
    paper_scores = table.replace_schema_metadata(
        {**table.schema.metadata, b"memtax.profile": b"paper"})
    with pytest.raises(ValueError, match="'paper'.*'default'|'default'.*'paper'"):
        features.compute(paper_scores, samples, index=idx, progress=False)
    # the matching profile is accepted and kept
    got = features.compute(paper_scores, samples, index=idx, progress=False, profile="paper")
    assert profile_of(got) == "paper"
    # the CLI: an unknown name exits 2 naming it; a mismatch exits non-zero, writing nothing
    np.save(tmp_path / "samples.npy", samples)
    pq.write_table(paper_scores, tmp_path / "scores.parquet")
    argv = ["features", "--scores", str(tmp_path / "scores.parquet"), "--samples",
            str(tmp_path / "samples.npy"), "--index", str(root / "index"), "--no-semantic",
            "--quiet", "--workers", "1", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--profile", "papr"])
    assert exc.value.code == 2 and "papr" in capsys.readouterr().err
    assert main(argv) != 0
    assert "profile" in capsys.readouterr().err
    assert not (tmp_path / "out" / "features.parquet").exists()
    assert main(argv + ["--profile", "paper"]) == 0
    assert profile_of(pq.read_schema(tmp_path / "out" / "features.parquet")) == "paper"
