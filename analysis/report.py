"""One HTML page with PNG figures and the same numbers as CSV and markdown tables.

Layout of the output folder::

    index.html
    figures/*.png
    tables/*.csv, tables/*.md

Category shares are computed for every run given; the predictive models, dependencies and the
threshold curve for the *primary* run (the last one unless named). The folder is written under a
temporary name beside `out` and renamed at the end, so a failure leaves nothing partial.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import dependencies, plots, predict, scaling, taxonomy, thresholds


def to_markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-style markdown table (no tabulate dependency)."""

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}g}"
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


class _Writer:
    def __init__(self, root: Path):
        self.root = root
        (root / "figures").mkdir(parents=True)
        (root / "tables").mkdir()
        self.sections: list[str] = []

    def table(self, name: str, df: pd.DataFrame, title: str) -> None:
        df.to_csv(self.root / "tables" / f"{name}.csv", index=False)
        (self.root / "tables" / f"{name}.md").write_text(to_markdown(df))
        body = df.to_html(
            index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, classes="t"
        )
        self.sections.append(
            f"<h3>{html.escape(title)}</h3>{body}<p class='files'>"
            f"<a href='tables/{name}.csv'>CSV</a> · <a href='tables/{name}.md'>markdown</a></p>"
        )

    def figure(self, name: str, draw, title: str) -> None:
        draw(self.root / "figures" / f"{name}.png")
        self.sections.append(
            f"<figure><img src='figures/{name}.png' alt='{html.escape(title)}'>"
            f"<figcaption>{html.escape(title)}</figcaption></figure>"
        )

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.sections.append(f"<p>{html.escape(text)}</p>")

    def write(self, title: str) -> None:
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table.t{border-collapse:collapse;font-size:12px;margin-bottom:.3em}"
            "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
            "img{max-width:100%}p.files{font-size:12px}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>" + "\n".join(self.sections) + "</body></html>"
        )
        (self.root / "index.html").write_text(page, encoding="utf-8")


def build(
    tables: Mapping[str, object],
    out,
    *,
    primary: str | None = None,
    recitation_threshold: float = 5,
    n_boot: int = 1000,
    seed: int = 0,
    search: bool = False,
    paper: bool = False,
    nan_policy: str = "raise",
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Analyse feature tables and write the report folder `out`; returns the index.html path.

    Args:
        tables: run label -> feature table; order is kept (sizes/steps in the shares figure).
        primary: the run whose models, dependencies and threshold curve are reported
            (default: the last).
        force: replace an existing `out`.
    """
    if not tables:
        raise ValueError("no feature tables given")
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"report folder {out} already exists (use force=True / --force)")
    primary = list(tables)[-1] if primary is None else primary
    if primary not in tables:
        raise ValueError(f"primary run {primary!r} is not among {list(tables)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _build_into(
            _Writer(tmp / "r"),
            tables,
            primary,
            recitation_threshold,
            n_boot,
            seed,
            search,
            paper,
            nan_policy,
            progress,
        )
        if out.exists():
            old = tmp / "old"
            os.replace(out, old)
        os.replace(tmp / "r", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


def available_features(table) -> tuple[list[str], list[str]]:
    """(model features present with at least one value, missing ones) of a feature table.

    `features.compute` skips columns whose inputs were not given (no corpus index, no embedder);
    the report then fits on the rest and says so.
    """
    have = set(taxonomy.column_names(table))
    present, missing = [], []
    for f in predict.FEATURES:
        ok = f in have
        if ok:
            col = taxonomy.column(table, f)
            ok = col.size > 0 and not np.all(pd.isna(col))
        (present if ok else missing).append(f)
    return present, missing


def _build_into(
    w: _Writer, tables, primary, thr, n_boot, seed, search, paper, nan_policy, progress
) -> None:
    table = tables[primary]
    feats, missing = available_features(table)
    taxonomy.require_columns(table, ["duplicates", taxonomy.LABEL], f"feature table {primary!r}")
    w.heading("Taxonomy")
    w.text(
        f"Recitation: duplicates > {thr}; reconstruction: templated (repeating or "
        "incrementing); recollection: the rest. Shares are of memorized samples, computed "
        "per run."
    )
    shares = scaling.shares_across(tables, thr)
    w.figure("shares", lambda p: plots.shares(shares, p), "Category shares per run")
    w.table("shares", shares, "Category shares and counts")

    w.heading(f"Predictive models ({primary})")
    if missing:
        w.text(f"Features absent from this table, left out of the models: {', '.join(missing)}")
    res = predict.fit(
        table,
        features=feats,
        recitation_threshold=thr,
        n_boot=n_boot,
        seed=seed,
        search=search,
        paper=paper,
        nan_policy=nan_policy,
        progress=progress,
    )
    for note in res.notes:
        w.text(note)
    w.table("metrics", res.metrics, "Test-set metrics with 95% bootstrap intervals")
    w.table(
        "metric_differences", res.differences, "Differences against the baseline (paired bootstrap)"
    )
    lrt = pd.DataFrame([{k: v for k, v in res.lrt.items()}])
    w.table("lrt", lrt, "Likelihood-ratio test: taxonomic vs baseline")
    if len(res.skipped):
        w.table("skipped", res.skipped, "Groups too small to fit")
    if res.partition is not None:
        w.table("partition", pd.DataFrame([res.partition]), "Optimal partition (winner)")
        w.table(
            "partition_search",
            res.search.sort_values("f1", ascending=False),
            "Partition search (validation F1)",
        )
    w.figure(
        "coefficients",
        lambda p: plots.coefficients(res.coefficients, p),
        "Coefficients per model and category (symlog axis, 95% CI)",
    )
    w.table("coefficients", res.coefficients, "Coefficients, standard errors, Wald tests")
    w.figure(
        "pr_curves",
        lambda p: plots.pr_curves(res.test_labels, res.test_probs, p),
        "Precision-recall curves",
    )
    w.figure(
        "calibration",
        lambda p: plots.calibration(res.test_labels, res.test_probs, p),
        "Calibration curves",
    )

    w.heading(f"Dependencies ({primary})")
    dep = dependencies.correlations(table, features=feats, recitation_threshold=thr, seed=seed)
    w.figure(
        "dependencies",
        lambda p: plots.dependencies(dep, p),
        "Pearson, Spearman and xi correlation with memorization",
    )
    w.table("dependencies", dep, "Correlations with p-values")

    w.heading(f"Recitation threshold ({primary})")
    kl, suggested = thresholds.kl_by_duplicates(table, seed=seed)
    w.figure(
        "threshold",
        lambda p: plots.threshold_curve(kl, suggested, p),
        "Symmetric KL of continuation perplexity, memorized vs not, by duplicates",
    )
    w.text(
        f"Suggested threshold: duplicates > {suggested}"
        if suggested is not None
        else "Too few rows per duplicate count to suggest a threshold."
    )
    w.table("threshold", kl, "Symmetric KL by duplicate count")
    meta = {
        "runs": list(tables),
        "primary": primary,
        "recitation_threshold": thr,
        "n_boot": n_boot,
        "seed": seed,
        "search": search,
        "paper": paper,
        "features": feats,
        "missing_features": missing,
        "categories": list(taxonomy.CATEGORIES),
    }
    (w.root / "tables" / "run.json").write_text(json.dumps(meta, indent=1))
    w.write("memtax analysis report")
