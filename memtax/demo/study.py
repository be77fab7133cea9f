"""The stages both demo routes end with: features, taxonomy, models and the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memtax.demo.stages import StageClock, write_parquet


@dataclass
class Study:
    """The primary run's features and categories (rows in score-table order)."""

    feats: object            # pyarrow.Table: score columns + feature columns
    cats: np.ndarray         # category of every row
    memorized: np.ndarray    # bool, exact_match of every row
    sample_ids: np.ndarray
    categories: list[dict]   # analysis.taxonomy.shares rows

    @property
    def n_memorized(self) -> int:
        return int(self.memorized.sum())


def with_scores(feats, scores):
    """The feature table `feats` with its score columns replaced by those of `scores` (another
    model or checkpoint scored on the same samples): the sample features (duplicates,
    templating, ...) do not depend on the model, the score columns do."""
    import pyarrow as pa

    from features.pipeline import FEATURES

    ids = scores.column("sample_id").to_numpy()
    feat_ids = feats.column("sample_id").to_numpy()
    if not np.array_equal(ids, feat_ids):
        order = {int(i): k for k, i in enumerate(feat_ids)}
        try:
            take = np.array([order[int(i)] for i in ids], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"sample_id {exc.args[0]} of the scores has no features") from None
        feats = feats.take(pa.array(take))
    sample_cols = [c for c in feats.column_names if c in FEATURES]
    table = scores
    for c in sample_cols:
        table = table.append_column(feats.schema.field(c), feats.column(c))
    return table.replace_schema_metadata(feats.schema.metadata)


def classify_and_report(
    runs: Mapping[str, object],
    source,
    index,
    tok,
    root: Path,
    clock: StageClock,
    *,
    label: str,
    seed: int,
    n_boot: int,
    semantic: bool,
    progress: bool,
    checkpoints: Mapping[str, Mapping[int, object]] | None = None,
    by_duplicates: bool = False,
    profile: str = "default",
) -> Study:
    """Features of the run `label` (one of `runs`, label -> score table), its categories, and the
    report over every run (features joined onto each run's scores).

    Writes features.parquet and categories.parquet (the primary run) and report/. checkpoints:
    model -> step -> score table, for the report's per-checkpoint sections.
    """
    import pyarrow as pa

    import analysis
    import features

    with clock("features", "samples") as t:
        feats = features.compute(runs[label], source, index=index, tokenizer=tok,
                                 semantic=semantic, profile=profile, progress=progress)
        t.amount = feats.num_rows
    write_parquet(feats, root / "features.parquet")
    with clock("classify", "samples") as t:
        cats = analysis.taxonomy.classify(feats)
        shares = analysis.taxonomy.shares(feats)
        t.amount = len(cats)
    write_parquet(pa.table({
        "sample_id": feats.column("sample_id"),
        "exact_match": feats.column("exact_match"),
        "category": pa.array(cats.tolist(), pa.string()),
    }), root / "categories.parquet")
    tables = {name: feats if name == label else with_scores(feats, s) for name, s in runs.items()}
    per_checkpoint = None
    if checkpoints is not None:
        per_checkpoint = {m: {step: with_scores(feats, s) for step, s in steps.items()}
                          for m, steps in checkpoints.items()}
    with clock("models + report", "samples") as t:
        analysis.report.build(tables, root / "report", primary=label, search=True,
                              n_boot=n_boot, seed=seed, nan_policy="drop", progress=progress,
                              by_duplicates=by_duplicates, checkpoints=per_checkpoint,
                              profile=profile)
        t.amount = feats.num_rows
    return Study(feats, cats, feats.column("exact_match").to_numpy(zero_copy_only=False)
                 .astype(bool), feats.column("sample_id").to_numpy(),
                 shares.to_dict("records"))


def report_notes(report: Path) -> list[str]:
    """What the report written to `report` could not show, and why (its run.json notes)."""
    try:
        return list(json.loads((report / "tables" / "run.json").read_text()).get("notes", []))
    except (OSError, ValueError):
        return []
