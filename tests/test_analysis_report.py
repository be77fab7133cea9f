"""The report: `memtax analyze` end to end, every figure a valid PNG, rendering in Chromium."""

import html
import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
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


# ------------------------------------------------------------------ sections that degrade


def test_report_with_nothing_memorized_says_how_many(tmp_path):
    """A model that memorized nothing still gets a report: the shares, models, dependencies and
    threshold sections each say how many memorized rows there were and what they need."""
    from analysis import report as report_mod

    df, _ = predict.synthetic_table(400, seed=8)
    df = df.assign(exact_match=False)
    index = report_mod.build({"none": df}, tmp_path / "rep", n_boot=5, progress=False)
    page = index.read_text()
    assert page.count("has 0 memorized and 400 other samples") == 3  # models, deps, threshold
    assert "No memorized samples in none" in page
    run = json.loads((index.parent / "tables" / "run.json").read_text())
    assert len(run["notes"]) == 4 and all(html.escape(n, quote=False) in page
                                           for n in run["notes"])
    srcs = re.findall(r"<img[^>]*src='([^']+)'", page)
    assert sorted(srcs) == ["figures/shares.png", "figures/threshold.png"]
    assert all((index.parent / s).is_file() for s in srcs)
    assert not (index.parent / "tables" / "metrics.csv").exists()


def test_report_with_one_memorized_row_skips_only_the_models(tmp_path):
    from analysis import report as report_mod

    df, _ = predict.synthetic_table(400, seed=9)
    df = df.assign(exact_match=[True] + [False] * 399)
    index = report_mod.build({"one": df}, tmp_path / "rep", n_boot=5, progress=False)
    page = index.read_text()
    assert "Not fitted: one has 1 memorized and 399 other samples" in page
    assert "figures/dependencies.png" in page  # both kinds present: correlations computed
    run = json.loads((index.parent / "tables" / "run.json").read_text())
    assert sum(n.startswith("Not fitted") for n in run["notes"]) == 1


# ------------------------------------------------------------------ scaling tables


def _table(dups, mem, templ=None):
    import pandas as pd

    n = len(dups)
    return pd.DataFrame({"duplicates": dups, "exact_match": mem,
                         "is_templating": templ if templ is not None else [False] * n})


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    from analysis import scaling

    k = [0, 1, 5, 17, 40, 3]
    n = [10, 1, 9, 40, 40, 0]
    lo, hi = scaling.wilson_interval(k, n, alpha=0.05)
    for ki, ni, a, b in zip(k, n, lo, hi):
        if ni == 0:
            assert np.isnan(a) and np.isnan(b)
            continue
        ci = binomtest(ki, ni).proportion_ci(confidence_level=0.95, method="wilson")
        assert a == pytest.approx(ci.low, abs=1e-9) and b == pytest.approx(ci.high, abs=1e-9)


def test_memorization_by_duplicates_by_brute_force():
    from analysis import scaling

    rng = np.random.default_rng(3)
    tables = {}
    for run in ("small@step10", "large@step10"):
        dups = rng.integers(0, 70, size=300)
        mem = rng.random(300) < np.minimum(1.0, dups / 60)
        tables[run] = _table(dups, mem)
    df = scaling.memorization_by_duplicates(tables)
    # log-spaced bins by hand: 0 | 1 | 2-3 | 4-7 | 8-15 | 16-31 | 32-63 | 64-127
    bins = [(0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 31), (32, 63), (64, 127)]
    assert list(zip(df.bin_lo, df.bin_hi))[: len(bins)] == bins
    for run, t in tables.items():
        sub = df[df.run == run]
        for lo, hi, n, k, rate in zip(sub.bin_lo, sub.bin_hi, sub.n, sub.memorized, sub.rate):
            sel = [(lo <= d <= hi) for d in t.duplicates]
            assert n == sum(sel) and k == sum(m for m, s in zip(t.exact_match, sel) if s)
            assert rate == pytest.approx(k / n)
        assert sub.n.sum() == len(t)  # every row in one bin, empty bins left out
    assert (df.lo <= df.rate + 1e-12).all() and (df.rate <= df.hi + 1e-12).all()


def test_checkpoint_tables_count_each_model_on_its_own():
    from analysis import scaling

    # model a: duplicates 9 (recitation) / templated (reconstruction) / plain (recollection)
    dups = [9, 9, 0, 0, 1, 1]
    templ = [False, False, True, True, False, False]
    ckpts = {
        "a": {100: _table(dups, [True, True, True, False, False, False], templ),
              0: _table(dups, [False] * 6, templ)},
        "b": {100: _table(dups, [True, False, False, False, True, True], templ)},
    }
    counts = scaling.memorized_by_checkpoint(ckpts)
    assert counts[["model", "step", "memorized", "samples"]].values.tolist() == [
        ["a", 0, 0, 6], ["a", 100, 3, 6], ["b", 100, 3, 6]]
    shares = scaling.shares_by_checkpoint(ckpts)
    got = {(r.model, r.step, r.category): (r.memorized, r.share) for r in shares.itertuples()}
    assert got[("a", 100, "recitation")] == (2, pytest.approx(2 / 3))
    assert got[("a", 100, "reconstruction")] == (1, pytest.approx(1 / 3))
    assert got[("b", 100, "recollection")] == (2, pytest.approx(2 / 3))
    assert np.isnan(got[("a", 0, "recitation")][1])  # nothing memorized: no share
    with pytest.raises(ValueError, match="no checkpoints"):
        scaling.memorized_by_checkpoint({"a": {}})


def test_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """Drawing every figure neither needs nor switches the process's backend (run in a fresh
    interpreter whose backend is set to something other than Agg)."""
    import os
    import sys

    code = (
        "import matplotlib, pandas as pd\n"
        "before = matplotlib.get_backend()\n"
        "from analysis import plots, scaling\n"
        "t = pd.DataFrame({'duplicates': [1, 2, 9], 'exact_match': [False, True, True],"
        " 'is_templating': [False] * 3})\n"
        f"plots.memorization_vs_duplicates(scaling.memorization_by_duplicates({{'r': t}}),"
        f" {str(tmp_path / 'a.png')!r})\n"
        f"plots.shares(scaling.shares_across({{'r': t}}), {str(tmp_path / 'b.png')!r})\n"
        "import sys; print(before, matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {**os.environ, "MPLBACKEND": "pdf"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["pdf", "pdf", "False"]
    assert _png_size(tmp_path / "a.png")[0] > 100 and _png_size(tmp_path / "b.png")[0] > 100
