"""The real demo end to end (SmolLM2-135M GGUF over the stdlib + package docs), small --samples,
run in-process through the `memtax` CLI with the network forbidden. Slow: minutes on 2 cores.

Checks every output's schema and that each stage's rows join up on sample_id.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_demo import no_network  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

N = 64


def test_real_demo_small(tmp_path, no_network, capsys):  # noqa: F811
    from engine.output import read_scores
    from memtax import cli, demo

    out = tmp_path / "demo"
    rc = cli.main(["demo", "--samples", str(N), "--out", str(out), "--seed", "5",
                   "--n-boot", "50", "--quiet"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    # exit 0 with a report, or 1 without one when too few samples were memorized to fit models
    assert rc == (0 if summary["report"] else 1)
    assert summary["produced_by"] == demo.MARKER and summary["model"] == demo.SMOLLM2_LABEL

    docs = pq.read_table(out / "documents.parquet")
    assert docs.schema.names == ["doc_id", "name", "part", "n_chars", "n_tokens", "token_start"]
    assert set(docs.column("part").to_pylist()) == {"stdlib", "package-docs"}
    n_tok = docs.column("n_tokens").to_numpy()
    assert summary["corpus"]["tokens"] == int(n_tok.sum()) > 1_000_000

    s = pq.read_table(out / "samples.parquet")
    assert s.schema.field("sample_id").type == pa.int64()
    assert s.schema.field("tokens").type == pa.list_(pa.int32())
    assert s.num_rows == N and (s.column("offset").to_numpy() == 0).sum() >= N // 4
    ids = s.column("sample_id").to_numpy()
    starts = docs.column("token_start").to_numpy()
    np.testing.assert_array_equal(ids, starts[s.column("doc_id").to_numpy()]
                                  + s.column("offset").to_numpy())

    scores = read_scores(out / "scores")
    for name, typ in (("sample_id", pa.int64()), ("exact_match", pa.bool_()),
                      ("match_len", pa.int16()), ("cont_ppl", pa.float32())):
        assert scores.schema.field(name).type == typ
    np.testing.assert_array_equal(scores.column("sample_id").to_numpy(), ids)
    exact = scores.column("exact_match").to_numpy(zero_copy_only=False)
    ml = scores.column("match_len").to_numpy()

    gen = pq.read_table(out / "generate.parquet")
    assert gen.schema.names[:3] == ["sample_id", "match_len", "exact_match"]
    assert "gen_score" in gen.schema.names
    np.testing.assert_array_equal(gen.column("sample_id").to_numpy(), ids[exact | (ml >= 16)])

    feats = pq.read_table(out / "features.parquet")
    np.testing.assert_array_equal(feats.column("sample_id").to_numpy(), ids)
    for col in ("duplicates", "prompt_duplicates", "token_freq_mean", "huffman_code_length",
                "zlib_ratio", "is_templating", "semantic_matches", "textual_matches",
                "code_score"):
        assert col in feats.schema.names, col
    assert (feats.column("duplicates").to_numpy() >= 1).all()  # each window is in the corpus

    cats = pq.read_table(out / "categories.parquet")
    np.testing.assert_array_equal(cats.column("sample_id").to_numpy(), ids)
    assert set(cats.column("category").to_pylist()) <= {"recitation", "reconstruction",
                                                          "recollection"}
    assert f"{summary['memorized']:,} (" in printed and "stage" in printed
    if summary["report"]:
        page = (out / "report" / "index.html").read_text()
        imgs = re.findall(r"<img src='([^']+)'", page)
        assert imgs and all((out / "report" / p).is_file() for p in imgs)
    else:
        assert "not written" in printed and not (out / "report").exists()
