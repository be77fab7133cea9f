"""One HTML page with PNG figures and the same numbers as CSV and markdown tables.

Layout of the output folder::

    index.html
    figures/*.png
    tables/*.csv, tables/*.md

Category shares are computed for every run given; the predictive models, dependencies and the
threshold curve for the *primary* run (the last one unless named). On request the report also
shows memorization against duplicate count for every run, and, given the checkpoints of each
model, memorized counts and category shares along training (per model, never pooled, in the
default profile).

The profile (``profile="default" | "paper"``, `engine.profiles`) selects the definitions of every
study (the paper profile reproduces the paper's code: pooled shares, its KL study, its
dependency subsets and xi; `analysis.predict` for the models); it is shown in the report's
settings table and run.json, and every input table that records a profile must record this one
(tables made under different profiles are refused before anything is written, naming both).
`extra_memorized`, a feature table of memorized samples drawn beside the random sample (the
paper's memorized split), feeds the models' training rows, the threshold study's memorized group
and, in the paper profile only, the dependencies (the paper computed them on its sample plus
those rows; the default profile keeps the random sample's prior there).

Every section stands on its own: one that needs memorized rows the data does not have (a model
that memorized nothing) says how many there were and what it needs, and the rest of the report
is written; those notes are also listed in tables/run.json ("notes"). The folder is written
under a temporary name beside `out` and renamed at the end, so a failure leaves nothing partial.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import dependencies, plots, predict, scaling, taxonomy, thresholds
from engine.profiles import check_profile, same_profile

# predict.fit's own minimum of each class (it may still find too few to split, and says so).
MIN_CLASS_ROWS = 2
# thresholds.kl_by_duplicates's default rows per group and duplicate count, and the counts the
# report's curve covers.
KL_MIN_ROWS = 20
KL_MAX_DUPLICATES = 20


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


PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table.t{border-collapse:collapse;font-size:12px;margin-bottom:.3em}"
    "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "img{max-width:100%}p.files{font-size:12px}p.note{color:#8a5a00}"
)


def page_html(title: str, body: str, *, heading: bool = True) -> str:
    """A whole report page: `body` under the report's style, after an <h1> of the title."""
    h1 = f"<h1>{html.escape(title)}</h1>" if heading else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{PAGE_STYLE}</style></head><body>{h1}{body}</body></html>")


def publish(out: Path, fill) -> None:
    """`fill(folder)` writes a report into a new temporary folder beside `out`, which then
    replaces `out` in one rename (a failed build leaves `out` as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fill(tmp / "r")
        if out.exists():
            os.replace(out, tmp / "old")
        os.replace(tmp / "r", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ReportWriter:
    """A report folder's figures/ and tables/, and its page's sections in order."""

    def __init__(self, root: Path, *, exist_ok: bool = False):
        self.root = root
        (root / "figures").mkdir(parents=True, exist_ok=exist_ok)
        (root / "tables").mkdir(exist_ok=exist_ok)
        self.sections: list[str] = []
        self.notes: list[str] = []

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

    def note(self, text: str) -> None:
        """A paragraph saying what a section could not show and why (kept in run.json)."""
        self.notes.append(text)
        self.sections.append(f"<p class='note'>{html.escape(text)}</p>")

    def write(self, title: str) -> None:
        page = page_html(title, "\n".join(self.sections))
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
    profile: str = "default",
    extra_memorized=None,
    nan_policy: str = "raise",
    force: bool = False,
    progress: bool = True,
    by_duplicates: bool = False,
    checkpoints: Mapping[str, Mapping[int, object]] | None = None,
) -> Path:
    """Analyse feature tables and write the report folder `out`; returns the index.html path.

    Args:
        tables: run label -> feature table; order is kept (sizes/steps in the shares figure).
        primary: the run whose models, dependencies and threshold curve are reported
            (default: the last).
        profile: "default" or "paper" (module docstring).
        extra_memorized: a feature table of further memorized samples of the primary run
            (module docstring), or None.
        force: replace an existing `out`.
        by_duplicates: add memorization rate against duplicate count, one line per run.
        checkpoints: model -> training step -> feature table: adds memorized counts and
            category shares per checkpoint (each model on its own; pooled per step in the paper
            profile).
    """
    if not tables:
        raise ValueError("no feature tables given")
    check_profile(profile)
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"report folder {out} already exists (use force=True / --force)")
    primary = list(tables)[-1] if primary is None else primary
    if primary not in tables:
        raise ValueError(f"primary run {primary!r} is not among {list(tables)}")
    same_profile(_inputs(tables, checkpoints, extra_memorized), expected=profile)
    settings = _Settings(primary, recitation_threshold, n_boot, seed, search, profile,
                         nan_policy, progress, extra_memorized)
    publish(out, lambda folder: _build_into(ReportWriter(folder), tables, settings,
                                            by_duplicates, checkpoints))
    return out / "index.html"


def _inputs(tables, checkpoints, extra_memorized) -> dict[str, object]:
    """Every input table by a name for `same_profile`'s messages."""
    named = {f"feature table {label!r}": t for label, t in tables.items()}
    for model, steps in (checkpoints or {}).items():
        named.update({f"checkpoint table {model!r} step {s}": t for s, t in steps.items()})
    if extra_memorized is not None:
        named["the extra memorized table"] = extra_memorized
    return named


@dataclass(frozen=True)
class _Settings:
    primary: str
    thr: float
    n_boot: int
    seed: int
    search: bool
    profile: str
    nan_policy: str
    progress: bool
    extra: object = None


def available_features(table, profile: str = "default") -> tuple[list[str], list[str]]:
    """(model features of the profile present with at least one value, missing ones) of a
    feature table (`predict.profile_features`: the paper profile's perplexities are the
    `*_ppl_paper` columns).

    `features.compute` skips columns whose inputs were not given (no corpus index, no embedder);
    the report then fits on the rest and says so.
    """
    have = set(taxonomy.column_names(table))
    present, missing = [], []
    for f in predict.profile_features(profile):
        ok = f in have
        if ok:
            col = taxonomy.column(table, f)
            ok = col.size > 0 and not np.all(pd.isna(col))
        (present if ok else missing).append(f)
    return present, missing


def _counts(table) -> tuple[int, int]:
    """(memorized, other) rows of a feature table."""
    y = taxonomy.labels(table)
    return int(y.sum()), int(y.size - y.sum())


def _build_into(w: ReportWriter, tables, st: _Settings, by_duplicates: bool, checkpoints) -> None:
    table = tables[st.primary]
    feats, missing = available_features(table, st.profile)
    taxonomy.require_columns(table, ["duplicates", taxonomy.LABEL], f"feature table {st.primary!r}")
    _settings_section(w, st)
    _taxonomy_section(w, tables, st)
    if by_duplicates:
        _duplicates_section(w, tables, st)
    if checkpoints is not None:
        _checkpoints_section(w, checkpoints, st)
    _models_section(w, table, feats, missing, st)
    _dependencies_section(w, table, feats, st)
    _threshold_section(w, table, st)
    meta = {
        "runs": list(tables),
        "primary": st.primary,
        "recitation_threshold": st.thr,
        "n_boot": st.n_boot,
        "seed": st.seed,
        "search": st.search,
        "profile": st.profile,
        "extra_memorized_rows": _extra_rows(st),
        "features": feats,
        "missing_features": missing,
        "categories": list(taxonomy.CATEGORIES),
        "checkpoints": None if checkpoints is None else {
            str(m): sorted(int(s) for s in steps) for m, steps in checkpoints.items()},
        "notes": w.notes,
    }
    (w.root / "tables" / "run.json").write_text(json.dumps(meta, indent=1))
    w.write("memtax analysis report")


def _extra_rows(st: _Settings) -> int:
    return 0 if st.extra is None else int(len(taxonomy.labels(st.extra)))


def _settings_section(w: ReportWriter, st: _Settings) -> None:
    w.heading("Settings")
    rows = [("profile", st.profile), ("primary run", st.primary),
            ("recitation threshold", f"duplicates > {st.thr}"), ("bootstrap resamples", st.n_boot),
            ("seed", st.seed), ("partition search", st.search),
            ("extra memorized rows", _extra_rows(st))]
    w.table("settings", pd.DataFrame(rows, columns=["setting", "value"]).astype(str),
            "Settings of this report")


def _taxonomy_section(w: ReportWriter, tables, st: _Settings) -> None:
    w.heading("Taxonomy")
    pooled = ("pooled per model size across its checkpoints, as the paper's notebook did"
              if st.profile == "paper" else "computed per run")
    w.text(
        f"Recitation: duplicates > {st.thr}; reconstruction: templated (repeating or "
        f"incrementing); recollection: the rest. Shares are of memorized samples, {pooled}."
    )
    shares = scaling.shares_across(tables, st.thr, profile=st.profile)
    empty = [run for run, t in tables.items() if _counts(t)[0] == 0]
    if empty:
        w.note(f"No memorized samples in {', '.join(map(str, empty))}: category shares need "
               "memorized samples and are left blank there (the candidates per category are "
               "still counted).")
    w.figure("shares", lambda p: plots.shares(shares, p), "Category shares per run")
    w.table("shares", shares, "Category shares and counts")
    table = tables[st.primary]
    if "code_score" in taxonomy.column_names(table):
        code = taxonomy.code_shares(table, st.thr, profile=st.profile)
        band = ("the paper's band: natural language when 1 - code_score >= 0.525, code when "
                f"<= 0.4; {code.attrs['uncertain']} uncertain rows left out"
                if st.profile == "paper" else "code when code_score >= 0.5")
        w.table("code_shares", code, f"Code and natural language per category ({st.primary}; "
                f"{band})")


def _duplicates_section(w: ReportWriter, tables, st: _Settings) -> None:
    w.heading("Memorization and duplicates")
    df = scaling.memorization_by_duplicates(tables, profile=st.profile)
    w.figure("memorization_vs_duplicates", lambda p: plots.memorization_vs_duplicates(df, p),
             "Share memorized by duplicate count of the continuation (log-spaced bins, 95% "
             "Wilson intervals), one line per run")
    w.table("memorization_vs_duplicates", df, "Memorization rate per duplicate bin")


def _checkpoints_section(w: ReportWriter, checkpoints, st: _Settings) -> None:
    w.heading("Along training")
    counts = scaling.memorized_by_checkpoint(checkpoints, profile=st.profile)
    w.figure("memorized_by_checkpoint", lambda p: plots.memorized_by_checkpoint(counts, p),
             "Memorized samples per checkpoint, one line per model")
    w.table("memorized_by_checkpoint", counts, "Memorized samples per checkpoint (95% Wilson "
            "intervals of the rate)")
    shares = scaling.shares_by_checkpoint(checkpoints, st.thr, profile=st.profile)
    w.figure("shares_by_checkpoint", lambda p: plots.shares_by_checkpoint(shares, p),
             "Category shares per checkpoint, the models pooled at each step as the paper's "
             "notebook did" if st.profile == "paper" else
             "Category shares per checkpoint, each model on its own")
    w.table("shares_by_checkpoint", shares, "Category shares and counts per checkpoint")


def _models_section(w: ReportWriter, table, feats, missing, st: _Settings) -> None:
    w.heading(f"Predictive models ({st.primary})")
    if missing:
        w.text(f"Features absent from this table, left out of the models: {', '.join(missing)}")
    n_mem, n_other = _counts(table)
    need = (f"the models need at least {MIN_CLASS_ROWS} memorized and {MIN_CLASS_ROWS} other "
            "samples, and enough memorized ones to hold some out for testing")
    if min(n_mem, n_other) < MIN_CLASS_ROWS:
        w.note(f"Not fitted: {st.primary} has {n_mem} memorized and {n_other} other samples; "
               f"{need}.")
        return
    predict.design(table, feats, nan_policy=st.nan_policy)  # bad columns/values raise here
    try:
        res = predict.fit(table, features=feats, recitation_threshold=st.thr, n_boot=st.n_boot,
                          seed=st.seed, search=st.search, nan_policy=st.nan_policy,
                          progress=st.progress, profile=st.profile, extra_memorized=st.extra)
    except ValueError as exc:  # the inputs passed design(): what is left is too few rows
        w.note(f"Not fitted: {st.primary} has {n_mem} memorized and {n_other} other samples; "
               f"{need} ({exc}).")
        return
    _model_results(w, res)


def _model_results(w: ReportWriter, res) -> None:
    for note in res.notes:
        w.text(note)
    if res.rows is not None:
        w.table("design_rows", res.rows, f"Rows of each part of the study ({res.design} design)")
    w.table("metrics", res.metrics, "Test-set metrics with 95% bootstrap intervals")
    w.table(
        "metric_differences", res.differences, "Differences against the baseline (paired bootstrap)"
    )
    for name, df, title in (
            ("category_metrics", res.category_metrics,
             "Test-set metrics per category and in aggregate (95% bootstrap intervals)"),
            ("category_differences", res.category_differences,
             "Differences against the baseline per category (paired bootstrap)"),
            ("kfold", res.kfold, "The paper's KFold error bars (mean and standard deviation)")):
        if df is not None and len(df):
            w.table(name, df, title)
    lrt = pd.DataFrame([{k: v for k, v in res.lrt.items()}])
    w.table("lrt", lrt, "Likelihood-ratio test: taxonomic vs baseline")
    if res.paper_lrt is not None and len(res.paper_lrt):
        w.table("paper_lrt", res.paper_lrt, "The paper's likelihood-ratio test per category "
                "(log loss of hard predictions on the category's test rows, df = 1)")
    if len(res.skipped):
        w.table("skipped", res.skipped, "Groups too small to fit")
    if res.partition is not None:
        w.table("partition", pd.DataFrame([res.partition]), "Optimal partition (winner)")
        w.table(
            "partition_search",
            res.search.sort_values("f1", ascending=False),
            "Partition search (test-set F1, as the paper selected)" if res.profile == "paper"
            else "Partition search (validation F1)",
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


def _dependencies_section(w: ReportWriter, table, feats, st: _Settings) -> None:
    w.heading(f"Dependencies ({st.primary})")
    n_mem, n_other = _counts(table)
    if min(n_mem, n_other) == 0:
        w.note(f"Not computed: {st.primary} has {n_mem} memorized and {n_other} other samples; "
               "a correlation with memorization needs samples of both kinds.")
        return
    paper = st.profile == "paper"
    dep = dependencies.correlations(table, features=feats, recitation_threshold=st.thr,
                                    seed=st.seed, profile=st.profile,
                                    extra_memorized=st.extra if paper else None)
    w.figure(
        "dependencies",
        lambda p: plots.dependencies(dep, p),
        "Pearson, Spearman and xi correlation with memorization",
    )
    w.table("dependencies", dep, "Correlations with p-values")


def _threshold_section(w: ReportWriter, table, st: _Settings) -> None:
    w.heading(f"Recitation threshold ({st.primary})")
    column = "cont_ppl_paper" if st.profile == "paper" else "cont_ppl"
    if st.profile == "paper" and column not in taxonomy.column_names(table):
        w.note(f"No curve: the paper profile's study reads {column} (the paper's divide-by-63 "
               f"continuation perplexity), which the feature table of {st.primary} lacks; score "
               "with --profile paper.")
        return
    taxonomy.require_columns(table, ["duplicates", column], f"feature table {st.primary!r}")
    dup = np.asarray(taxonomy.column(table, "duplicates"), dtype=np.float64)
    ppl = np.asarray(taxonomy.column(table, column), dtype=np.float64)
    n_low = int(((dup <= KL_MAX_DUPLICATES) & np.isfinite(ppl)).sum())
    if n_low == 0:
        w.note(f"No curve: none of the {dup.size} samples of {st.primary} occurs "
               f"{KL_MAX_DUPLICATES} times or fewer (with a finite perplexity); the curve "
               f"compares memorized and other samples at duplicate counts 0-{KL_MAX_DUPLICATES}.")
        return
    kl, suggested = thresholds.kl_by_duplicates(table, max_duplicates=KL_MAX_DUPLICATES,
                                                seed=st.seed, profile=st.profile,
                                                extra_memorized=st.extra)
    what = ("the paper's (KL + KL) / 2 of continuation perplexities, memorized vs all samples "
            "(bootstrap mean +- sd)" if st.profile == "paper" else
            "Symmetric KL of continuation perplexity, memorized vs not")
    w.figure("threshold", lambda p: plots.threshold_curve(kl, suggested, p),
             f"{what}, by duplicates")
    if not kl["kl"].notna().any():
        n_mem, n_other = _counts(table)
        w.note(f"No curve: {st.primary} has {n_mem} memorized and {n_other} other samples; the "
               f"divergence at a duplicate count needs at least {KL_MIN_ROWS} memorized and "
               f"{KL_MIN_ROWS} other samples with that count (counts "
               f"{int(kl['duplicates'].min())}-{KL_MAX_DUPLICATES}).")
    w.text(
        f"Suggested threshold: duplicates > {suggested}"
        if suggested is not None
        else "Too few rows per duplicate count to suggest a threshold."
    )
    w.table("threshold", kl, f"{what} by duplicate count")
