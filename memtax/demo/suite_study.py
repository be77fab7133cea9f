"""The study on a miniature Pythia suite trained on the demo's text (the default `memtax demo`).

    result = run_suite_study(documents, "demo_out", config=suite.DEMO_CONFIG)

Stages: corpus (read the documents, one per file), suite (build it into `out/suite` with
`memtax.suite`, or reuse a finished one there: nothing is retrained), sample (Pythia's samples:
the first prefix_len + cont_len tokens of each training sequence the final checkpoints have
seen; sample_id = the sequence's index in the stream), index (the exact training stream, each
sequence its own document: Pythia's semantics), score (exact mode, every checkpoint of every
size, one score folder each), generate (the largest model's final checkpoint: Pythia's
free-running score on its memorized rows and near misses), features, classify, models + report
(on the largest model's final checkpoint; category shares and memorization against duplicates
for every size's final checkpoint; memorized counts and shares per checkpoint, per model).

Output folder, beside what `run_pipeline` writes (minus documents.parquet):

    suite/              the suite (memtax.suite.open_suite)
    scores/<model>@step<N>/   one engine score folder per checkpoint
    checkpoints.parquet model, step, sample_id, exact_match, match_len (every checkpoint)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from memtax.demo.corpus import DEFAULT_SEED, corpus_summary, read_documents
from memtax.demo.pipeline import generate_check
from memtax.demo.stages import StageClock, bar, staging, write_parquet
from memtax.demo.study import classify_and_report, report_notes
from memtax.demo.summary import DemoResult, category_examples, write_summary

SUITE_DIR = "suite"


def _suite(texts: list[str], root: Path, config, clock: StageClock, progress):
    """A finished suite at `root` with this config, or one built (resumed) there."""
    from memtax import suite

    try:
        s = suite.open_suite(root)
    except (FileNotFoundError, ValueError):
        s = None
    if s is not None and s.config == config:
        with clock("suite (reused)", "models") as t:
            t.amount = len(s.models)
        return s
    with clock("suite (train)", "tokens") as t:
        s = suite.build_suite(texts, root, config=config, progress=progress)
        t.amount = _trained_tokens(s)
    return s


def _trained_tokens(s) -> int:
    return sum(s.sequences_seen(max(steps)) * s.seq_len for steps in s.models.values())


def _ordered_models(s) -> list[str]:
    """Model names, smallest first (by parameter count where the manifest records it)."""
    params = {m["name"]: m.get("parameters", 0) for m in _model_entries(s)}
    return sorted(s.models, key=lambda name: (params.get(name, 0), name))


def _model_entries(s) -> list[dict]:
    """Per model: name, parameters, steps, tokens_per_s, final_loss (from the manifest)."""
    out = []
    for name, steps in s.models.items():
        m = s.manifest.get("models", {}).get(name, {})
        out.append({"name": name, "parameters": int(m.get("parameters", 0)),
                    "steps": list(steps), "tokens_per_s": m.get("tokens_per_s"),
                    "final_loss": m.get("final_loss")})
    return out


def suite_info(s, n_sequences: int) -> dict:
    """What the summary says about a suite: its folder, stream, and each model."""
    return {"root": str(s.root), "sequences": int(n_sequences), "seq_len": s.seq_len,
            "batch_size": s.batch_size, "vocab_size": s.vocab_size,
            "models": sorted(_model_entries(s), key=lambda m: (m["parameters"], m["name"]))}


def _pythia_samples(s, n: int | None, seed: int, seq_len: int):
    """(ids, rows): the first `seq_len` tokens of the sequences the final checkpoints have seen
    (all of them, or a seeded sorted draw of `n`)."""
    from engine.indexed_dataset import IndexedDataset

    ds = IndexedDataset(s.stream_prefix)
    seen = min(len(ds), max(s.sequences_seen(max(steps)) for steps in s.models.values()))
    ids = np.arange(seen, dtype=np.int64)
    if n is not None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"samples must be a positive integer or None, got {n!r}")
        if n > seen:
            raise ValueError(f"samples={n} but the suite's models have seen only {seen} "
                             "training sequences")
        ids = np.sort(np.random.default_rng(seed).choice(seen, n, replace=False))
    if s.seq_len < seq_len:
        raise ValueError(f"prefix_len + cont_len = {seq_len} exceeds the suite's sequences of "
                         f"{s.seq_len} tokens")
    rows = np.stack([ds.get(int(i), 0, seq_len) for i in ids]).astype(np.int64)
    return ids, rows, len(ds)


def _write_samples(ids, rows, tok, path: Path) -> None:
    import pyarrow as pa

    from features.tokenizers import decode_batch

    write_parquet(pa.table({
        "sample_id": pa.array(ids, pa.int64()),
        "tokens": pa.array(list(rows.astype(np.int32)), pa.list_(pa.int32())),
        "text": decode_batch(tok, rows),
    }), path)


def _score_all(s, models: list[str], source, root: Path, clock: StageClock, *, prefix_len,
               cont_len, batch_size, dtype, progress) -> dict[str, dict[int, object]]:
    """model -> step -> score table, every checkpoint of every model (one folder each)."""
    import engine

    jobs = [(m, step) for m in models for step in s.models[m]]
    tables: dict[str, dict[int, object]] = {m: {} for m in models}
    with clock("score (exact)", "samples") as t, \
            bar(len(jobs), "score: checkpoints", "ckpt", progress) as b:
        for m, step in jobs:
            tables[m][step] = engine.score(
                s.spec(m, step), source, prefix_len=prefix_len, cont_len=cont_len,
                mode="exact", batch_size=batch_size, dtype=dtype,
                out=root / "scores" / f"{m}@step{step}", resume=False, progress=False)
            t.amount += tables[m][step].num_rows
            b.update(1)
    return tables


def _checkpoint_rows(s, tables) -> tuple[list[dict], object]:
    """Per-checkpoint counts for the summary, and checkpoints.parquet."""
    import pyarrow as pa

    params = {m["name"]: m["parameters"] for m in _model_entries(s)}
    counts, parts = [], []
    for m, steps in tables.items():
        for step, t in steps.items():
            exact = t.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
            counts.append({"model": m, "parameters": params.get(m, 0), "step": int(step),
                           "samples": int(exact.size), "memorized": int(exact.sum()),
                           "seen": int(s.sequences_seen(step))})
            parts.append(pa.table({
                "model": pa.array([m] * t.num_rows, pa.string()),
                "step": pa.array(np.full(t.num_rows, step), pa.int64()),
                "sample_id": t.column("sample_id"), "exact_match": t.column("exact_match"),
                "match_len": t.column("match_len")}))
    return counts, pa.concat_tables(parts)


def run_suite_study(documents: Sequence, out, *, config, samples: int | None = None,
                    seed: int = DEFAULT_SEED, prefix_len: int = 32, cont_len: int = 32,
                    batch_size: int | str = "auto", dtype: str = "fp32", n_boot: int = 1000,
                    semantic: bool = True, progress: bool = True) -> DemoResult:
    """Build (or reuse) a suite from `documents` in `out/suite` and run the whole study on it
    (see the module docstring). documents: as for `run_pipeline` (`.name`, `.part`, and `.text`
    or `.path`). config: a `memtax.suite.SuiteConfig`. Raises as `run_pipeline` does; a failed
    run leaves an earlier output as it was, and a suite being built stays resumable."""
    import engine
    from engine.data import ArraySource
    from engine.models import load_tokenizer

    out = Path(out)
    clock = StageClock()
    with staging(out, keep=(SUITE_DIR,)) as root:
        with clock("corpus", "files") as t:
            docs = read_documents(documents, progress)
            t.amount = len(docs)
        s = _suite([d.text for d in docs], out / SUITE_DIR, config, clock, progress)
        tok = load_tokenizer(str(s.tokenizer_dir))
        models = _ordered_models(s)
        with clock("sample", "samples") as t:
            ids, rows, n_stream = _pythia_samples(s, samples, seed, prefix_len + cont_len)
            t.amount = len(ids)
        _write_samples(ids, rows, tok, root / "samples.parquet")
        source = ArraySource(rows, rows.shape[1], sample_ids=ids,
                             description="memtax demo: training sequences")
        with clock("index", "tokens") as t:
            import features

            idx = features.CorpusIndex.build(s.stream_prefix, root / "index",
                                             sequence_length=s.seq_len, tokenizer=tok,
                                             vocab_size=s.vocab_size, progress=progress)
            t.amount = n_stream * s.seq_len
        tables = _score_all(s, models, source, root, clock, prefix_len=prefix_len,
                            cont_len=cont_len, batch_size=batch_size, dtype=dtype,
                            progress=progress)
        big, final = models[-1], max(s.models[models[-1]])
        checks = generate_check(engine.load_model(s.spec(big, final), dtype=dtype), rows, ids,
                                tables[big][final], prefix_len, cont_len, batch_size, root,
                                clock, progress)
        label = f"{big}@step{final}"
        study = classify_and_report(
            {f"{m}@step{max(s.models[m])}": tables[m][max(s.models[m])] for m in models},
            source, idx, tok, root, clock, label=label, seed=seed, n_boot=n_boot,
            semantic=semantic, progress=progress, checkpoints=tables, by_duplicates=True)
        counts, per_ckpt = _checkpoint_rows(s, tables)
        write_parquet(per_ckpt, root / "checkpoints.parquet")
        corpus = corpus_summary(docs, None)
        result = DemoResult(
            out=out, report=out / "report" / "index.html", n_samples=len(ids),
            n_memorized=study.n_memorized, corpus=corpus, categories=study.categories,
            examples=category_examples(study.cats, study.memorized, study.sample_ids,
                                       _describer(ids, rows, tok, prefix_len)),
            stages=clock.stages, checks=checks, lengths=(prefix_len, cont_len), model=label,
            suite=suite_info(s, n_stream), checkpoints=counts,
            report_notes=report_notes(root / "report"))
        write_summary(result, root, {"seed": seed, "samples": samples,
                                     "prefix_len": prefix_len, "cont_len": cont_len,
                                     "n_boot": n_boot})
    return result


def _describer(ids, rows, tok, prefix_len: int):
    from features.tokenizers import decode_batch

    by_id = {int(i): k for k, i in enumerate(ids)}

    def describe(sample_id: int) -> dict:
        row = rows[by_id[sample_id]][None]
        return {"document": f"training sequence {sample_id}",
                "prompt": decode_batch(tok, row[:, :prefix_len])[0],
                "continuation": decode_batch(tok, row[:, prefix_len:])[0]}

    return describe
