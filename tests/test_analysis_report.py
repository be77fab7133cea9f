"""The report: `memtax analyze` end to end, every figure a valid PNG, rendering in Chromium."""

import html
import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import predict
from memtax.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("analyze")
    # run 1: a folder of two parquet shards; run 2: one parquet file
    folder = root / "pythia-70m-feats"
    folder.mkdir()
    df, _ = predict.synthetic_table(3000, seed=1)
    meta = {"model": "EleutherAI/pythia-70m-deduped"}
    for k, part in enumerate((df.iloc[:1500], df.iloc[1500:])):
        t = pa.Table.from_pandas(part, preserve_index=False).replace_schema_metadata(meta)
        pq.write_table(t, folder / f"part-{k}.parquet")
    df2, _ = predict.synthetic_table(5000, seed=2)
    single = root / "pythia-160m.parquet"
    pq.write_table(pa.Table.from_pandas(df2, preserve_index=False), single)
    out = root / "report"
    rc = main(
        [
            "analyze",
            "--features",
            str(folder),
            str(single),
            "--out",
            str(out),
            "--n-boot",
            "50",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out, df, df2


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_img_is_an_existing_valid_png(report):
    out, _, _ = report
    page = (out / "index.html").read_text()
    srcs = re.findall(r"<img[^>]*src='([^']+)'", page)
    assert len(srcs) == 6
    for src in srcs:
        w, h = _png_size(out / src)
        assert w > 100 and h > 100
    for name in ("shares", "metrics", "coefficients", "dependencies", "threshold", "lrt"):
        assert (out / "tables" / f"{name}.csv").is_file()
        assert (out / "tables" / f"{name}.md").read_text().startswith("| ")


def test_tables_hold_the_numbers(report):
    import pandas as pd

    from analysis import taxonomy

    out, df, df2 = report
    shares = pd.read_csv(out / "tables" / "shares.csv")
    assert list(dict.fromkeys(shares.run)) == ["EleutherAI/pythia-70m-deduped", "pythia-160m"]
    for run, frame in (("EleutherAI/pythia-70m-deduped", df), ("pythia-160m", df2)):
        want = taxonomy.shares(frame)
        assert shares[shares.run == run]["memorized"].tolist() == want["memorized"].tolist()
    m = pd.read_csv(out / "tables" / "metrics.csv")
    assert set(m.model) == {"baseline", "taxonomic"}
    run = json.loads((out / "tables" / "run.json").read_text())
    assert run["primary"] == "pythia-160m"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report):
    out, _, _ = report
    page = (out / "index.html").read_text()
    probe = page.replace(
        "</body>",
        (
            "<script>window.addEventListener('load', () => {"
            "const r = [...document.images].map(i => [i.getAttribute('src'), i.complete,"
            " i.naturalWidth, i.naturalHeight]);"
            "const p = document.createElement('pre'); p.id = 'probe';"
            "p.textContent = 'PROBE' + JSON.stringify(r) + 'END'; document.body.appendChild(p);"
            "});</script></body>"
        ),
    )
    probe_path = out / "probe.html"
    probe_path.write_text(probe)
    try:
        with tempfile.TemporaryDirectory() as profile:
            res = subprocess.run(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--virtual-time-budget=10000",
                    "--allow-file-access-from-files",
                    "--dump-dom",
                    probe_path.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
    finally:
        probe_path.unlink()
    m = re.search(r'<pre id="probe">PROBE(.*?)END</pre>', res.stdout, re.S)
    assert m, res.stderr[-2000:]
    images = json.loads(html.unescape(m.group(1)))
    assert len(images) == 6
    for src, complete, w, h in images:
        assert complete and w > 100 and h > 100, src


def test_cli_errors(tmp_path, capsys, report):
    out, _, _ = report
    assert (
        main(["analyze", "--features", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", "--features", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no .parquet files" in capsys.readouterr().err
    # an existing report is not overwritten without --force, and nothing is left behind
    f = next(out.parent.glob("*.parquet"))
    assert main(["analyze", "--features", str(f), "--out", str(out), "--n-boot", "5"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not list(out.parent.glob(".report.tmp-*"))


def test_force_replaces_a_report(tmp_path):
    df, _ = predict.synthetic_table(2000, seed=6)
    f = tmp_path / "feats.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f)
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("stale")
    args = ["analyze", "--features", str(f), "--out", str(out), "--n-boot", "5", "--no-progress"]
    assert main(args) == 2  # not empty: refused
    assert main(args + ["--force"]) == 0
    assert (out / "index.html").is_file() and not (out / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.parquet", "rep"]


def test_failure_leaves_nothing_partial(tmp_path, capsys):
    df, _ = predict.synthetic_table(500, seed=3)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(df.drop(columns=["cont_ppl"]), preserve_index=False), bad)
    target = tmp_path / "rep"
    assert (
        main(
            [
                "analyze",
                "--features",
                str(bad),
                "--out",
                str(target),
                "--n-boot",
                "5",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "cont_ppl" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_report_without_optional_features(tmp_path):
    """Tables without semantic features (no embedder given to features.compute) still report."""
    from analysis import report as report_mod

    df, _ = predict.synthetic_table(3000, seed=5)
    df = df.drop(columns=["semantic_matches"]).assign(textual_matches=None)
    index = report_mod.build({"run": df}, tmp_path / "rep", n_boot=10, progress=False)
    run = json.loads((index.parent / "tables" / "run.json").read_text())
    assert run["missing_features"] == ["semantic_matches", "textual_matches"]
    assert "left out of the models: semantic_matches, textual_matches" in index.read_text()
    coef = __import__("pandas").read_csv(index.parent / "tables" / "coefficients.csv")
    assert "semantic_matches" not in set(coef.feature)
