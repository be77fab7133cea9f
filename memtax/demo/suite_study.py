"""The study on a miniature Pythia suite trained on the demo's text (the default `memtax demo`).

    result = run_suite_study(documents, "demo_out", config=suite.DEMO_CONFIG)

Stages: corpus (read the documents, one per file), suite (build it into `out/suite` with
`memtax.suite`, or reuse a finished one there: nothing is retrained), sample (Pythia's samples:
the first prefix_len + cont_len tokens of each training sequence the final checkpoints have
seen; sample_id = the sequence's index in the stream), index (the exact training stream, each
sequence its own document: Pythia's semantics), score (exact mode, every checkpoint of every
size: one `engine.sweep`, a score folder each), generate (the largest model's final checkpoint: Pythia's
free-running score on its memorized rows and near misses), features, classify, models + report
(on the largest model's final checkpoint; category shares and memorization against duplicates
for every size's final checkpoint; memorized counts and shares per checkpoint, per model),
dynamics (the report's memorization-dynamics section: `analysis.dynamics` on the sweep).

Output folder, beside what `run_pipeline` writes (minus documents.parquet):

    suite/              the suite (memtax.suite.open_suite)
    sweep.json          the sweep's manifest (engine.open_sweep(out); memtax analyze --sweep out)
    scores/<model>@step<N>/   one engine score folder per checkpoint
    checkpoints.parquet model, step, sample_id, exact_match, match_len (every checkpoint)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.profiles import check_profile
from memtax.demo.corpus import DEFAULT_SEED, corpus_summary, read_documents
from memtax.demo.pipeline import generate_check
from memtax.demo.stages import StageClock, staging, write_parquet
from memtax.demo.study import classify_and_report, report_notes
from memtax.demo.summary import DemoResult, category_examples, write_summary

SUITE_DIR = "suite"


def _suite(texts: list[str], root: Path, config, clock: StageClock, progress):
    """The suite of `config` on `texts` at `root`: a finished one is reused as it is (the builder
    checks that it was built from this corpus and config and trains nothing), an unfinished one
    is resumed, a missing one built."""
    from memtax import suite

    try:
        finished = suite.open_suite(root).complete
    except (FileNotFoundError, ValueError):
        finished = False
    with clock("suite (reused)" if finished else "suite (train)",
               "models" if finished else "tokens") as t:
        s = suite.build_suite(texts, root, config=config, progress=progress)
        t.amount = len(s.models) if finished else _trained_tokens(s)
    return s


def _trained_tokens(s) -> int:
    return len(s.models) * int(s.manifest["stream"]["tokens"])


def _ordered_models(s) -> list[str]:
    """Model names, smallest first (by parameter count where the manifest records it)."""
    params = {m["name"]: m.get("parameters", 0) for m in _model_entries(s)}
    return sorted(s.models, key=lambda name: (params.get(name, 0), name))


def _model_entries(s) -> list[dict]:
    """Per model: name, parameters, steps, train_s, tokens_per_s (training), final_loss (from
    the manifest)."""
    timings = s.manifest.get("timings", {}).get("models", {})
    out = []
    for name, steps in s.models.items():
        m = s.manifest["models"][name]
        out.append({"name": name, "parameters": int(m["parameters"]), "steps": list(steps),
                    "train_s": timings.get(name, {}).get("train_s"),
                    "tokens_per_s": timings.get(name, {}).get("tokens_per_s"),
                    "final_loss": m.get("final_loss")})
    return out


def suite_info(s) -> dict:
    """What the summary says about a suite: its folder, stream, and each model."""
    stream = s.manifest["stream"]
    return {"root": str(s.root), "sequences": int(stream["sequences"]),
            "unique_sequences": int(stream["unique_sequences"]),
            "documents": int(s.manifest["tokenizer"]["documents"]),
            "corpus_share": s.config.corpus_share, "epochs": s.config.epochs,
            "seq_len": s.seq_len, "tokenizer_s": s.manifest.get("timings", {}).get("tokenizer_s"),
            "stream_s": s.manifest.get("timings", {}).get("stream_s"),
            "batch_size": s.batch_size, "vocab_size": s.vocab_size,
            "models": sorted(_model_entries(s), key=lambda m: (m["parameters"], m["name"]))}


def _pythia_samples(s, n: int | None, seed: int, length: int):
    """(ids, rows): the first `length` tokens of every training sequence (the final checkpoints
    have seen them all), or of a seeded sorted draw of `n` of them; ids = sequence indices."""
    total = int(s.manifest["stream"]["sequences"])
    if n is not None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"samples must be a positive integer or None, got {n!r}")
        if n > total:
            raise ValueError(f"samples={n} but the suite has only {total} training sequences")
    if length > s.seq_len:
        raise ValueError(f"prefix_len + cont_len = {length} exceeds the suite's sequences of "
                         f"{s.seq_len} tokens")
    return s.training_samples(length, limit=n, seed=seed)


def _sample_stage(s, samples, seed, length, tok, root: Path, clock: StageClock):
    """(ids, rows, sample source) of Pythia's samples, written to samples.parquet."""
    from engine.data import ArraySource

    with clock("sample", "samples") as t:
        ids, rows = _pythia_samples(s, samples, seed, length)
        t.amount = len(ids)
    _write_samples(ids, rows, tok, root / "samples.parquet")
    return ids, rows, ArraySource(rows, rows.shape[1], sample_ids=ids,
                                  description="memtax demo: training sequences")


def _index_stage(s, tok, path: Path, clock: StageClock, progress):
    """The corpus index over the exact training stream, each sequence its own document."""
    import features

    with clock("index", "tokens") as t:
        idx = features.CorpusIndex.build(s.stream_prefix, path, sequence_length=s.seq_len,
                                         tokenizer=tok, vocab_size=s.vocab_size,
                                         progress=progress)
        t.amount = int(s.manifest["stream"]["tokens"])
    return idx


def _write_samples(ids, rows, tok, path: Path) -> None:
    import pyarrow as pa

    from features.tokenizers import decode_batch

    write_parquet(pa.table({
        "sample_id": pa.array(ids, pa.int64()),
        "tokens": pa.array(list(rows.astype(np.int32)), pa.list_(pa.int32())),
        "text": decode_batch(tok, rows),
    }), path)


def _score_all(s, models: list[str], ids, rows, root: Path, clock: StageClock, *, workers: int,
               progress: bool, **options):
    """(sweep, model -> step -> score table): every checkpoint of every model scored by one
    `engine.sweep` into `root` (sweep.json + scores/<model>@step<N>/), `workers` checkpoints
    at a time (one core each)."""
    import engine
    from engine.data import ArraySource

    source = ArraySource(rows, rows.shape[1], sample_ids=ids,
                         description="memtax demo: training sequences")
    with clock("score (exact)", "samples") as t:
        sw = engine.sweep([str(s.root / "models" / m) for m in models], source,
                          revisions="all", out=root, workers=workers, progress=progress,
                          sequences_per_step=s.batch_size, ids_are_positions=True, **options)
        t.amount = len(sw.checkpoints) * len(ids)
    return sw, {m: {step: sw.scores(m, f"step{step}") for step in s.models[m]} for m in models}


def _dynamics(sw, study, root: Path, clock: StageClock, *, n_boot: int, seed: int) -> None:
    """The report's dynamics section: every sample across checkpoints and sizes (restricted to
    the checkpoints that have seen it), categories from the primary run's features."""
    import pandas as pd

    from analysis import dynamics, dynamics_report

    with clock("dynamics", "samples") as t:
        labels = dynamics.from_sweep(sw)
        cats = pd.DataFrame({"sample_id": study.sample_ids, "category": study.cats})
        dyn = dynamics.analyze(labels, cats, n_boot=n_boot, seed=seed)
        dynamics_report.write_section(root / "report", dyn)
        t.amount = len(labels)


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
                    semantic: bool = True, workers: int = 2, profile: str = "default",
                    progress: bool = True) -> DemoResult:
    """Build (or reuse) a suite from `documents` in `out/suite` and run the whole study on it
    (see the module docstring). documents: as for `run_pipeline` (`.name`, `.part`, and `.text`
    or `.path`). config: a `memtax.suite.SuiteConfig`. workers: processes scoring checkpoints
    (one core each). profile: "default" or "paper" for scores, features, models and report
    (training and the index serve both). Raises as `run_pipeline` does; a failed run leaves an earlier output as it
    was, and a suite being built stays resumable."""
    import engine
    from engine.models import load_tokenizer

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    check_profile(profile)
    out = Path(out)
    clock = StageClock()
    with staging(out, keep=(SUITE_DIR,)) as root:
        with clock("corpus", "files") as t:
            docs = read_documents(documents, progress)
            t.amount = len(docs)
        s = _suite([d.text for d in docs], out / SUITE_DIR, config, clock, progress)
        tok = load_tokenizer(str(s.tokenizer_dir))
        models = _ordered_models(s)
        ids, rows, source = _sample_stage(s, samples, seed, prefix_len + cont_len, tok, root,
                                          clock)
        idx = _index_stage(s, tok, root / "index", clock, progress)
        sw, tables = _score_all(s, models, ids, rows, root, clock, workers=workers,
                                progress=progress, prefix_len=prefix_len, cont_len=cont_len,
                                batch_size=batch_size, dtype=dtype, profile=profile)
        big, final = models[-1], max(s.models[models[-1]])
        checks = generate_check(engine.load_model(s.spec(big, final), dtype=dtype,
                                                  profile=profile), rows, ids,
                                tables[big][final], prefix_len, cont_len, batch_size, root,
                                clock, progress, profile)
        label = f"{big}@step{final}"
        study = classify_and_report(
            {f"{m}@step{max(s.models[m])}": tables[m][max(s.models[m])] for m in models},
            source, idx, tok, root, clock, label=label, seed=seed, n_boot=n_boot,
            semantic=semantic, progress=progress, checkpoints=tables, by_duplicates=True,
            profile=profile)
        _dynamics(sw, study, root, clock, n_boot=n_boot, seed=seed)
        counts, per_ckpt = _checkpoint_rows(s, tables)
        write_parquet(per_ckpt, root / "checkpoints.parquet")
        corpus = corpus_summary(docs, None)
        result = DemoResult(
            out=out, report=out / "report" / "index.html", n_samples=len(ids),
            n_memorized=study.n_memorized, corpus=corpus, categories=study.categories,
            examples=category_examples(study.cats, study.memorized, study.sample_ids,
                                       _describer(ids, rows, tok, prefix_len)),
            stages=clock.stages, checks=checks, lengths=(prefix_len, cont_len), model=label,
            suite=suite_info(s), checkpoints=counts,
            report_notes=report_notes(root / "report"))
        write_summary(result, root, {"seed": seed, "samples": samples,
                                     "prefix_len": prefix_len, "cont_len": cont_len,
                                     "n_boot": n_boot, "profile": profile})
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
