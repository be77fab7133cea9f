"""The real demo end to end, run in-process through the `memtax` CLI with the network forbidden.
Slow: minutes on 2 cores.

1. `memtax demo --model smollm2` (SmolLM2-135M GGUF over the stdlib + package docs), small
   --samples: every output's schema, each stage's rows joining up on sample_id, exit 0 and a
   report whose sections that need memorized rows say how many there were.
2. `memtax demo` (the default: a suite trained with `suite.DEMO_CONFIG` on the same text): exit 0,
   the report with every figure, and what the demo is tuned to show.
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


def test_real_demo_smollm2_small(tmp_path, no_network, capsys):  # noqa: F811
    from engine.output import read_scores
    from memtax import cli, demo

    out = tmp_path / "demo"
    rc = cli.main(["demo", "--model", "smollm2", "--samples", str(N), "--out", str(out),
                   "--seed", "5", "--n-boot", "50", "--quiet"])
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 0 and summary["report"] == "report/index.html"
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
    # The 4-bit 135M model reproduces none of these windows (0 of the 2,000 of a full run; HF's
    # own generate diverges within a few tokens on the license texts), so every section that
    # needs memorized rows says so, with the count, and the rest of the report is there.
    assert summary["memorized"] == int(exact.sum()) == 0
    page = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert {"figures/shares.png", "figures/threshold.png"} <= set(imgs)
    assert all((out / "report" / p).is_file() for p in imgs)
    assert page.count(f"has 0 memorized and {N} other samples") == 3
    assert len(summary["report_notes"]) == 4
    assert all(note in printed for note in summary["report_notes"])


@pytest.fixture(scope="module")
def suite_demo(tmp_path_factory):
    """`memtax demo` (the default route) run once for the tests below: (out, summary, printed)."""
    import contextlib
    import io

    from memtax import cli

    out = tmp_path_factory.mktemp("suite-demo") / "demo"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        guard = no_network.__wrapped__(mp)           # the same guard, for the module's run
        attempts = next(guard)
        with contextlib.redirect_stdout(printed):
            rc = cli.main(["demo", "--out", str(out), "--n-boot", "200", "--quiet"])
        assert attempts == [], f"the demo tried to open network connections: {attempts}"
    assert rc == 0
    return out, json.loads((out / "summary.json").read_text()), printed.getvalue()


@pytest.mark.timeout(1800)  # the module's demo run (minutes on 2 cores) is set up inside it
def test_default_demo_on_the_suite(suite_demo):
    """What `make demo` runs: exit 0, the report with every figure, at least 100 memorized
    samples in the largest model's final checkpoint with recitation holding 10 or more, and
    memorization rising with training step and with duplicates."""
    import pandas as pd

    out, summary, printed = suite_demo
    page = (out / "report" / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    for name in ("shares", "memorization_vs_duplicates", "memorized_by_checkpoint",
                 "shares_by_checkpoint", "coefficients", "pr_curves", "calibration",
                 "dependencies", "threshold"):
        assert f"figures/{name}.png" in imgs, name
    assert all((out / "report" / p).is_file() for p in imgs)
    # the one section this suite cannot fill: the threshold curve needs 20 memorized samples
    # with at most 20 duplicates, and the tiny models memorize only well-repeated text
    (note,) = summary["report_notes"]
    assert note.startswith("No curve:") and note in printed

    assert summary["memorized"] >= 100
    cats = {c["category"]: c["memorized"] for c in summary["categories"]}
    assert cats["recitation"] >= 10
    for model in {c["model"] for c in summary["checkpoints"]}:
        counts = [c["memorized"] for c in summary["checkpoints"] if c["model"] == model]
        assert counts[0] == 0 and counts[-1] == max(counts) > 0  # step 0 .. final
    dup = pd.read_csv(out / "report" / "tables" / "memorization_vs_duplicates.csv")
    final = dup[dup.run == dup.run.iloc[-1]]
    assert final["rate"].iloc[-1] > final["rate"].iloc[0]  # most duplicated bin vs least
    assert "memorized per checkpoint" in printed and summary["suite"]["models"]


@pytest.mark.xfail(strict=True, reason="the demo suite's models memorize almost only recitation: "
                   "in the fresh-clone run 600 of 602 memorized samples were recitation, 2 "
                   "recollection, 0 reconstruction; 10 of a second category is the target")
def test_default_demo_has_a_second_category(suite_demo):
    _, summary, _ = suite_demo
    cats = {c["category"]: c["memorized"] for c in summary["categories"]}
    assert max(cats["reconstruction"], cats["recollection"]) >= 10
