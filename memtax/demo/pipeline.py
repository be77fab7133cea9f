"""The study on one model over text documents (the SmolLM2 route, or any model and corpus).

    result = run_pipeline(model, tokenizer, documents, "out/", samples=300)

Stages (each timed; each shows a progress bar): load tokenizer, corpus, tokenize (one document
per file), index (`features.CorpusIndex` over the documents: matches never cross a file
boundary), sample (`choose_windows`: a `start_share` of the windows at document starts, the rest
uniform), load model, score (exact), generate (Pythia's free-running score on the memorized rows
and near misses, match_len >= cont_len / 2: a memorized row scores 1.0 by definition and
generate mode must agree), features, classify, models + report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.profiles import check_profile
from memtax.demo.corpus import (
    DEFAULT_SEED,
    DEFAULT_START_SHARE,
    choose_windows,
    corpus_summary,
    documents_table,
    read_documents,
    tokenize_documents,
)
from memtax.demo.stages import StageClock, staging, write_parquet
from memtax.demo.study import classify_and_report, report_notes
from memtax.demo.summary import DemoResult, category_examples, write_summary

DEFAULT_SAMPLES = 2000


@dataclass
class _Corpus:
    docs: list[np.ndarray]   # token ids per document
    starts: np.ndarray       # (D+1,) global token offset of each document
    names: list[str]
    summary: dict


@dataclass
class _Samples:
    rows: np.ndarray         # (N, prefix_len + cont_len) tokens
    ids: np.ndarray          # sample_id = global token position
    doc: np.ndarray
    offset: np.ndarray
    source: object           # engine.data.ArraySource over rows


def _tokenized_corpus(tok, documents, root: Path, clock: StageClock, progress) -> _Corpus:
    with clock("corpus", "files") as t:
        docs = read_documents(documents, progress)
        t.amount = len(docs)
    with clock("tokenize", "tokens") as t:
        token_docs = tokenize_documents(tok, [d.text for d in docs], progress=progress)
        lengths = np.array([a.size for a in token_docs], dtype=np.int64)
        t.amount = int(lengths.sum())
    starts = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    write_parquet(documents_table(docs, lengths, starts), root / "documents.parquet")
    return _Corpus(token_docs, starts, [d.name for d in docs], corpus_summary(docs, lengths))


def _draw_samples(corpus: _Corpus, tok, n: int, seed, seq_len, start_share, root, clock
                  ) -> _Samples:
    import pyarrow as pa

    from engine.data import ArraySource
    from features.tokenizers import decode_batch

    with clock("sample", "samples") as t:
        lengths = np.diff(corpus.starts)
        doc, off = choose_windows(lengths, int(n), seed=seed, seq_len=seq_len,
                                  start_share=start_share)
        rows = np.stack([corpus.docs[d][o:o + seq_len] for d, o in zip(doc, off)])
        ids = corpus.starts[doc] + off
        t.amount = len(ids)
    write_parquet(pa.table({
        "sample_id": pa.array(ids, pa.int64()),
        "doc_id": pa.array(doc, pa.int64()),
        "offset": pa.array(off, pa.int64()),
        "is_doc_start": pa.array(off == 0),
        "tokens": pa.array(list(rows.astype(np.int32)), pa.list_(pa.int32())),
        "text": decode_batch(tok, rows),
    }), root / "samples.parquet")
    source = ArraySource(rows, seq_len, sample_ids=ids, description="memtax demo windows")
    return _Samples(rows, ids, doc, off, source)


def generate_check(sm, rows: np.ndarray, ids: np.ndarray, scores, prefix_len, cont_len,
                   batch_size, root: Path, clock: StageClock, progress,
                   profile: str = "default") -> dict:
    """Generate mode on the memorized rows and near misses of `scores` (samples `rows` with
    sample ids `ids`); whether it agrees with the one-pass labels (written to
    generate.parquet)."""
    exact = scores.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
    match_len = scores.column("match_len").to_numpy().astype(np.int64)
    pick = np.flatnonzero(exact | (match_len >= (cont_len + 1) // 2))
    with clock("generate", "samples") as t:
        gen = _generate(sm, rows, ids, scores.column("sample_id").to_numpy()[pick],
                        prefix_len, cont_len, batch_size, progress, profile)
        t.amount = len(pick)
    write_parquet(gen, root / "generate.parquet")
    gen_exact = gen.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
    gen_score = gen.column("gen_score").to_numpy()
    return {
        "generate_rows": int(gen.num_rows),
        "generate_agrees_on_exact_match": bool(np.array_equal(gen_exact, exact[pick])),
        "memorized_rows_gen_score_1": bool(np.all(gen_score[gen_exact] == 1.0)),
    }


def _generate(sm, rows, ids, want: np.ndarray, prefix_len, cont_len, batch_size, progress,
              profile: str = "default"):
    """Generate-mode columns for the samples `want` (sample ids)."""
    import pyarrow as pa

    import engine
    from engine.data import ArraySource
    from engine.generate import GEN_FIELDS

    fields = [pa.field("sample_id", pa.int64()), pa.field("match_len", pa.int16()),
              pa.field("exact_match", pa.bool_()), *GEN_FIELDS]
    if want.size == 0:
        return pa.Table.from_pylist([], schema=pa.schema(fields))
    pos = {int(i): k for k, i in enumerate(ids)}
    sub = rows[[pos[int(i)] for i in want]]
    table = engine.score(sm, ArraySource(sub, sub.shape[1], sample_ids=want,
                                         description="memtax demo: memorized and near misses"),
                         prefix_len=prefix_len, cont_len=cont_len, mode="generate",
                         batch_size=batch_size, profile=profile, progress=progress)
    return table.select([f.name for f in fields])


def _model_label(sm) -> str:
    name = Path(sm.name).name if sm.name else sm.arch
    return f"{name}@{sm.revision}" if sm.revision else name


def _check_counts(samples, n_boot) -> None:
    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")


def run_pipeline(
    model,
    tokenizer,
    documents: Sequence,
    out,
    *,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    prefix_len: int = 32,
    cont_len: int = 32,
    start_share: float = DEFAULT_START_SHARE,
    batch_size: int | str = "auto",
    dtype: str = "auto",
    n_boot: int = 1000,
    label: str | None = None,
    semantic: bool = True,
    profile: str = "default",
    progress: bool = True,
) -> DemoResult:
    """Run the whole study on one model (see the module docstring) and write it to `out`.

    model: anything `engine.load_model` takes (a `ScoringModel`, a loaded `PreTrainedModel`, a
        folder, a `.gguf` file, a Hugging Face id). tokenizer: a transformers/`tokenizers`
        tokenizer object or anything `engine.models.load_tokenizer` takes; it must be the model's.
    documents: corpus documents in order, each with `.name` and `.part` and either `.text`
        (`TextDocument`) or `.path` (`demo_corpus.CorpusFile`).
    n_boot: bootstrap resamples behind the report's intervals.
    profile: "default" or "paper" for scoring, features, models and report (`engine.profiles`).
    dtype: the scoring dtype, as for `engine.load_model` ('auto' is fp32 on CPU).
    The report is written whatever the scores hold: sections that need memorized rows say how
    many there were (`DemoResult.report_notes`). Raises ValueError/FileNotFoundError for bad
    input, FileExistsError for an output folder that is neither empty nor an earlier demo
    output; on any failure nothing is left at `out`.
    """
    import engine
    from engine.models import load_tokenizer

    _check_counts(samples, n_boot)
    check_profile(profile)
    out = Path(out)
    clock = StageClock()
    seq_len = prefix_len + cont_len
    with staging(out) as root:
        with clock("load tokenizer", "tokenizer") as t:
            tok = load_tokenizer(tokenizer)
            t.amount = 1
        corpus = _tokenized_corpus(tok, documents, root, clock, progress)
        with clock("index", "tokens") as t:
            idx = _build_index(corpus, tok, root / "index", progress)
            t.amount = int(corpus.starts[-1])
        drawn = _draw_samples(corpus, tok, samples, seed, seq_len, start_share, root, clock)
        with clock("load model", "models") as t:
            sm = engine.load_model(model, dtype=dtype, profile=profile)
            t.amount = 1
        with clock("score (exact)", "samples") as t:
            scores = engine.score(sm, drawn.source, prefix_len=prefix_len, cont_len=cont_len,
                                  mode="exact", batch_size=batch_size, out=root / "scores",
                                  resume=False, profile=profile, progress=progress)
            t.amount = scores.num_rows
        checks = generate_check(sm, drawn.rows, drawn.ids, scores, prefix_len, cont_len,
                                batch_size, root, clock, progress, profile)
        label = label or _model_label(sm)
        study = classify_and_report(
            {label: scores}, drawn.source, idx, tok, root, clock, label=label, seed=seed,
            n_boot=n_boot, semantic=semantic, profile=profile, progress=progress)
        result = DemoResult(
            out=out, report=out / "report" / "index.html", n_samples=int(scores.num_rows),
            n_memorized=study.n_memorized, corpus=corpus.summary,
            categories=study.categories,
            examples=category_examples(study.cats, study.memorized, study.sample_ids,
                                       _describer(drawn, corpus, tok, prefix_len)),
            stages=clock.stages, checks=checks, lengths=(prefix_len, cont_len), model=label,
            report_notes=report_notes(root / "report"),
        )
        write_summary(result, root, {
            "seed": seed, "samples": int(samples), "prefix_len": prefix_len,
            "cont_len": cont_len, "start_share": start_share, "n_boot": n_boot,
            "profile": profile, "samples_at_document_starts": int((drawn.offset == 0).sum())})
    return result


def _build_index(corpus: _Corpus, tok, path: Path, progress):
    import features
    from features.tokenizers import vocab_size

    nonempty = [a for a in corpus.docs if a.size]
    return features.CorpusIndex.build(nonempty, path, tokenizer=tok, vocab_size=vocab_size(tok),
                                      progress=progress)


def _describer(drawn: _Samples, corpus: _Corpus, tok, prefix_len: int):
    from features.tokenizers import decode_batch

    by_id = {int(i): k for k, i in enumerate(drawn.ids)}

    def describe(sample_id: int) -> dict:
        k = by_id[sample_id]
        row = drawn.rows[k:k + 1]
        return {"document": corpus.names[int(drawn.doc[k])],
                "prompt": decode_batch(tok, row[:, :prefix_len])[0],
                "continuation": decode_batch(tok, row[:, prefix_len:])[0]}

    return describe
