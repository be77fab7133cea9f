"""`features.compute` (defined here, in `features.pipeline`): one feature table from a score
table, its samples, the corpus index and the tokenizer.

    feats = features.compute(scores, samples, index=idx, tokenizer="gpt-neox")
    feats = features.compute(None, tokens)          # features of a bare (N, 64) token array

Output: a pyarrow.Table in the score table's row order, keyed by `sample_id`: every score column
(`exact_match`, `match_len`, `prompt_ppl`, `cont_ppl`, `seq_ppl`, `*_ppl_paper`, ...) carried
as is, then the feature columns of `FEATURES` below. The schema metadata holds, under
`memtax.features`, each feature's definition and version, which were skipped and why, and the
run's settings; the score table's own metadata is kept.

Work streams in chunks of samples: tokens are read through `engine.data.open_samples`, decoded
in Rust, text features (templating, compression, code score) run in a process pool over the two
cores while the main process queries the index (distinct rows once per chunk) and gathers token
frequencies with numpy. Semantic matches need every text, so they run last over the whole set.

Missing inputs skip what needs them, with a warning naming the columns: no index -> duplicates
and token frequencies; no tokenizer -> everything computed on text; semantic=False (or no
tokenizer) -> semantic and textual matches.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from features import code_score as _code
from features import compression as _comp
from features import duplicates as _dups
from features import semantic as _sem
from features import templating as _tmpl
from features import token_stats as _tstats
from features.provenance import check_index, scored_samples
from features.tokenizers import as_encoder, decode_batch, load_tokenizer, vocab_size

__all__ = ["compute", "FEATURES", "text_features", "read_table"]

# column -> (version, definition). Bump a version whenever its definition changes.
FEATURES: dict[str, tuple[int, str]] = {
    **{c: (1, d) for c, d in _dups.DEFINITIONS.items()},
    **{c: (1, _tstats.DEFINITION + f" [{c.removeprefix('token_freq_')}]")
       for c in _tstats.COLUMNS},
    "huffman_code_length": (1, _comp.HUFFMAN_DEFINITION),
    "zlib_ratio": (1, _comp.ZLIB_DEFINITION),
    "is_incrementing": (1, _tmpl.INCREMENTING_DEFINITION),
    "is_repeating": (1, _tmpl.REPEATING_DEFINITION),
    "is_templating": (1, "is_incrementing or is_repeating"),
    "code_score": (1, _code.DEFINITION),
    **{c: (1, d) for c, d in _sem.DEFINITIONS.items()},
}
TEXT_COLUMNS = ("huffman_code_length", "zlib_ratio", "is_incrementing", "is_repeating",
                "is_templating", "code_score")
INDEX_COLUMNS = _dups.COLUMNS + _tstats.COLUMNS
SEMANTIC_COLUMNS = ("semantic_matches", "textual_matches")
_TYPES = {c: pa.int64() for c in _dups.COLUMNS + SEMANTIC_COLUMNS}
_TYPES.update({c: pa.float64() for c in _tstats.COLUMNS})
_TYPES.update({"huffman_code_length": pa.float64(), "zlib_ratio": pa.float64(),
               "code_score": pa.float64(), "is_incrementing": pa.bool_(),
               "is_repeating": pa.bool_(), "is_templating": pa.bool_()})


def text_features(text: str) -> tuple[float, float, bool, bool, float]:
    """(huffman_code_length, zlib_ratio, is_incrementing, is_repeating, code_score) of a text."""
    inc, rep = _tmpl.classify(text)
    return (_comp.huffman_code_length(text), _comp.zlib_ratio(text), inc, rep,
            _code.code_score(text))


def _text_chunk(texts: list[str]) -> list[tuple]:
    return [text_features(t) for t in texts]


def read_table(table) -> pa.Table | None:
    """A score table from a pyarrow.Table, a pandas DataFrame, a .parquet file or a memtax score
    folder (manifest.json + shards). None stays None."""
    if table is None or isinstance(table, pa.Table):
        return table
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas
        return pa.Table.from_pandas(table, preserve_index=False)
    if isinstance(table, (str, os.PathLike)):
        path = Path(table)
        if path.is_dir():
            from engine.output import read_scores

            return read_scores(path)
        if not path.is_file():
            raise FileNotFoundError(f"score table {str(path)!r} not found (a .parquet file or a "
                                    "memtax score folder expected)")
        import pyarrow.parquet as pq

        return pq.read_table(path)
    raise ValueError(f"table must be a pyarrow.Table, a parquet path or a score folder, got "
                     f"{type(table).__name__}")


def _lengths(table: pa.Table | None, prefix_len, cont_len) -> tuple[int, int]:
    meta = (table.schema.metadata or {}) if table is not None else {}
    out = []
    for name, given in (("prefix_len", prefix_len), ("cont_len", cont_len)):
        recorded = meta.get(name.encode())
        if given is None:
            given = int(recorded) if recorded is not None else 32
        elif recorded is not None and int(recorded) != int(given):
            raise ValueError(f"{name}={given} differs from the score table's {name}="
                             f"{int(recorded)}")
        out.append(int(given))
    return out[0], out[1]


def _table_ids(table: pa.Table) -> np.ndarray:
    if "sample_id" not in table.column_names:
        raise ValueError(f"score table has no 'sample_id' column (columns: {table.column_names})")
    ids = table.column("sample_id").to_numpy(zero_copy_only=False)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"sample_id must be integer, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size == 0:
        raise ValueError("the score table is empty: no samples to compute features for")
    s = np.sort(ids)
    if s.size > 1 and np.any(s[1:] == s[:-1]):
        dup = int(s[1:][s[1:] == s[:-1]][0])
        raise ValueError(f"score table repeats sample_id {dup}; ids must be unique")
    return ids


def _vocab_declared(index) -> bool:
    """Whether the index was built for a stated vocabulary (else it knows only the ids its
    corpus holds). Objects without that metadata are taken as declared (strict)."""
    meta = getattr(index, "meta", None) or {}
    return bool(meta.get("vocab_size_declared", True))


def _unigrams(index, tok) -> np.ndarray:
    """Corpus unigram counts long enough for every id the samples may hold; refuses a tokenizer
    whose vocabulary the index's declared vocabulary cannot hold."""
    counts = np.asarray(index.unigram_counts(), dtype=np.int64)
    declared = _vocab_declared(index)
    if tok is not None:
        v = vocab_size(tok)
        if v > counts.shape[0]:
            if declared:
                raise ValueError(
                    f"the tokenizer has {v} ids but the corpus index was built for a vocabulary "
                    f"of {counts.shape[0]} (different tokenizers?)"
                )
            counts = np.concatenate([counts, np.zeros(v - counts.shape[0], np.int64)])
    return counts


def _index_tokenizer(index, tok):
    """The index's tokenizer fingerprint when both sides name one: checked once here, then
    passed as a plain string to every `count` call (cheap)."""
    recorded = getattr(index, "tokenizer", None)
    if tok is None or not isinstance(recorded, str) or not hasattr(tok, "get_vocab"):
        return None
    from features.index import tokenizer_fingerprint

    mine = tokenizer_fingerprint(tok)
    built = recorded
    if not recorded.startswith("sha256:"):
        # an index that recorded a tokenizer's name (as `memtax index build` once did): compare
        # the vocabulary that name stands for
        try:
            built = tokenizer_fingerprint(load_tokenizer(recorded))
        except (ValueError, OSError):
            return recorded
    if mine != built:
        raise ValueError(
            f"the tokenizer's vocabulary ({mine[:20]}...) differs from the one the corpus index "
            f"was built with ({recorded[:20]}...)"
        )
    return recorded


def _open_index(index):
    if isinstance(index, (str, os.PathLike)):
        from features.index import CorpusIndex

        return CorpusIndex.open(index)
    if index is not None and not (hasattr(index, "count") and hasattr(index, "unigram_counts")):
        raise ValueError(f"index must be a CorpusIndex or its folder, got {type(index).__name__}")
    return index


def _select(ids: np.ndarray, tokens: np.ndarray, wanted_sorted: np.ndarray | None):
    if wanted_sorted is None:
        return ids, tokens
    pos = np.searchsorted(wanted_sorted, ids)
    pos[pos == wanted_sorted.size] = 0
    keep = wanted_sorted[pos] == ids if wanted_sorted.size else np.zeros(ids.shape, bool)
    return ids[keep], tokens[keep]


def compute(table, samples, *, index=None, tokenizer=None, reference=None,
            prefix_len: int | None = None, cont_len: int | None = None, stride: int | None = None,
            semantic: bool = True,
            chunk_size: int = 8192, workers: int = 2, embed_device: str = "cpu",
            embed_dtype: str = "float32", progress: bool = True, cluster: str | None = None,
            cluster_options: dict | None = None) -> pa.Table:
    """Feature table for the samples behind a score table.

    table: the score table (pyarrow.Table, .parquet path or score folder) or None for features
        of the samples alone. Its `sample_id`s must all be present in `samples`.
    samples: as for `engine.score`: a 2-D integer array (sample_id = row), a path (.npy,
        .bin/.idx, .parquet, .jsonl/.txt) or a sample source; None = the source the score run
        recorded (absolute path and selection). With a score table, the samples must be those
        scored (`features.provenance`: their fingerprint, the text stride and tokenizer), and
        the index's vocabulary must fit the scoring model's; mismatches are refused.
    stride: window stride of text samples (default: the score run's, which it must equal).
    index: a `CorpusIndex` (or its folder) for duplicates and token frequencies.
    tokenizer: a name ("gpt-neox", "gpt2"), a tokenizer file/folder or object, for the text
        features.
    reference: samples to search for semantic/textual matches (any sample source); None = the
        samples themselves (each sample's own pair not counted).
    prefix_len, cont_len: default to the score table's recorded lengths, else 32 and 32.
    semantic: False skips semantic/textual matches (the slow part: MiniLM embeds about 10-40
        texts/s on two CPU cores). embed_device: where MiniLM runs ("cpu", "cuda").
        embed_dtype: "float32" (default), "bfloat16" (faster where native, may flip pairs at
        the 0.8 threshold) or "auto"; see `features.semantic`.
    chunk_size, workers: samples per streamed chunk; processes for the text features.
    cluster: "ray" computes each chunk's features in a Ray task, keeping finished chunks as
        parts so a rerun resumes (`features.distributed`); cluster_options: ray_address,
        num_cpus (of a local cluster), parts_dir (default: a temporary folder), max_retries.
    Returns a pyarrow.Table (see the module docstring). Raises ValueError for ids missing from
    the samples, vocabularies that do not match, or an empty selection.
    """
    from engine.data import open_samples

    for name, value in (("chunk_size", chunk_size), ("workers", workers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    table = read_table(table)
    prefix_len, cont_len = _lengths(table, prefix_len, cont_len)
    tok = load_tokenizer(tokenizer)
    index = _open_index(index)
    if table is not None:  # scores, samples and index checked against each other first
        meta = table.schema.metadata or {}
        source = scored_samples(meta, samples, tokenizer=tok, stride=stride,
                                prefix_len=prefix_len, cont_len=cont_len)
        if index is not None:
            check_index(meta, index)
    else:
        source = open_samples(samples, prefix_len=prefix_len, cont_len=cont_len,
                              tokenizer=as_encoder(tok), stride=stride)
    table_ids = _table_ids(table) if table is not None else None
    skipped = _skipped_columns(index, tok, semantic)
    do_sem = tok is not None and semantic
    embed_dtype = _sem.resolve_dtype(embed_dtype, embed_device)  # bad value: fail before work

    if cluster not in (None, "ray"):
        raise ValueError(f"cluster must be None or 'ray', got {cluster!r}")
    if cluster == "ray":
        from features.distributed import RayFeatureStream

        stream = RayFeatureStream(index, tok, prefix_len=prefix_len, cont_len=cont_len,
                                  keep_text=do_sem, options=cluster_options)
    else:
        stream = _FeatureStream(index, tok, prefix_len=prefix_len, workers=workers,
                                keep_text=do_sem)
    stream.run(source, table_ids, chunk_size, progress)
    order_ids, cols, take = _in_output_order(stream.parts, table_ids, source.description)
    if do_sem:
        embedder = _sem.load_embedder(embed_device, embed_dtype)
        cols.update(_semantic_columns(
            [stream.texts[i] for i in take], [stream.prompts[i] for i in take], reference,
            embedder, tok, prefix_len=prefix_len, cont_len=cont_len, chunk_size=chunk_size,
            progress=progress))
    return _assemble(table, order_ids, cols, skipped, prefix_len=prefix_len, cont_len=cont_len,
                     reference=reference, source=source.description,
                     **({"embed_dtype": embed_dtype} if do_sem else {}))


def _skipped_columns(index, tok, semantic: bool) -> dict[str, str]:
    """Column -> why it is skipped (a missing input), each reason warned about once."""
    skipped: dict[str, str] = {}
    if index is None:
        skipped.update({c: "no corpus index" for c in INDEX_COLUMNS})
    if tok is None:
        skipped.update({c: "no tokenizer" for c in TEXT_COLUMNS + SEMANTIC_COLUMNS})
    elif not semantic:
        skipped.update({c: "semantic=False" for c in SEMANTIC_COLUMNS})
    for reason in sorted(set(skipped.values())):
        cols = [c for c, r in skipped.items() if r == reason]
        warnings.warn(f"features: {reason}: skipping {', '.join(cols)}", stacklevel=3)
    return skipped


class _FeatureStream:
    """The per-chunk features of `compute`: text features in a process pool, index counts and
    token frequencies here, and (for the semantic step) every decoded text and prompt.

    Text results of chunk k are collected after chunk k+1 is submitted, so the workers never
    wait while this process decodes and counts. `parts` maps each column to its chunks' arrays.
    """

    def __init__(self, index, tok, *, prefix_len: int, workers: int, keep_text: bool):
        self.index, self.tok, self.prefix_len = index, tok, prefix_len
        self.workers, self.keep_text = workers, keep_text
        # vocabulary checks first: a mismatch fails before any worker starts
        self.unigrams = _unigrams(index, tok) if index is not None else None
        self.idx_tok = _index_tokenizer(index, tok) if index is not None else None
        self.parts: dict[str, list[np.ndarray]] = {"sample_id": []}
        self.texts: list[str] = []
        self.prompts: list[str] = []
        self.pending: list = []
        self.pool = None

    def run(self, source, table_ids: np.ndarray | None, chunk_size: int, progress: bool) -> None:
        """Every chunk of `source` (only the rows of `table_ids` when given)."""
        from tqdm.auto import tqdm

        wanted = np.sort(table_ids) if table_ids is not None else None
        if self.tok is not None and self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=_mp_context())
            self.pool.submit(_noop).result()  # start the workers now, before the tokenizer's threads
        bar = tqdm(total=len(source), desc="features", unit="samples", unit_scale=True,
                   disable=not progress, leave=False)
        try:
            for ids, tokens in source.batches(chunk_size):
                bar.update(len(ids))
                ids, tokens = _select(ids, tokens, wanted)
                if ids.size:
                    self._add_chunk(ids, tokens)
                while len(self.pending) > 1:
                    self._collect(self.pending.pop(0))
            while self.pending:
                self._collect(self.pending.pop(0))
        finally:
            bar.close()
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)

    def _add_chunk(self, ids: np.ndarray, tokens: np.ndarray) -> None:
        self.parts["sample_id"].append(ids)
        if self.tok is not None:
            self._submit_text(tokens)
        if self.index is not None:
            self._count(tokens)

    def _submit_text(self, tokens: np.ndarray) -> None:
        full = decode_batch(self.tok, tokens)
        if self.keep_text:
            self.texts.extend(full)
            self.prompts.extend(decode_batch(self.tok, tokens[:, : self.prefix_len]))
        if self.pool is not None:
            step = -(-len(full) // (4 * self.workers))
            self.pending.append(("futures", [self.pool.submit(_text_chunk, full[i:i + step])
                                             for i in range(0, len(full), step)]))
        else:
            self.pending.append(("rows", _text_chunk(full)))

    def _count(self, tokens: np.ndarray) -> None:
        index = self.index
        for k, v in _dups.duplicate_counts(index, tokens, prefix_len=self.prefix_len,
                                           tokenizer=self.idx_tok).items():
            self.parts.setdefault(k, []).append(v)
        hi = int(tokens.max())
        if hi >= self.unigrams.size and not _vocab_declared(index):
            # The index only knows the ids its corpus holds: a larger id is unseen (0).
            self.unigrams = np.concatenate([self.unigrams, np.zeros(hi + 1 - self.unigrams.size,
                                                                    np.int64)])
        for k, v in _tstats.token_frequency_stats(tokens, self.unigrams).items():
            self.parts.setdefault(k, []).append(v)

    def _collect(self, job) -> None:
        kind, payload = job
        rows = [r for f in payload for r in f.result()] if kind == "futures" else payload
        cols = list(zip(*rows)) if rows else [()] * 5
        inc = np.array(cols[2], dtype=bool)
        rep = np.array(cols[3], dtype=bool)
        for k, v in (("huffman_code_length", np.array(cols[0], dtype=np.float64)),
                     ("zlib_ratio", np.array(cols[1], dtype=np.float64)),
                     ("is_incrementing", inc), ("is_repeating", rep),
                     ("is_templating", inc | rep),
                     ("code_score", np.array(cols[4], dtype=np.float64))):
            self.parts.setdefault(k, []).append(v)


def _in_output_order(parts: dict[str, list[np.ndarray]], table_ids: np.ndarray | None,
                     description: str) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(output sample ids, columns in that order, the streamed row of each output row). The
    output follows the score table's row order, else the source's. ValueError for no samples,
    repeated ids, or table ids the samples lack."""
    got = np.concatenate(parts.pop("sample_id")) if parts["sample_id"] else np.zeros(0, np.int64)
    if got.size == 0:
        raise ValueError(f"no samples to compute features for in {description!r}")
    cols = {k: np.concatenate(v) for k, v in parts.items()}
    order_ids = table_ids if table_ids is not None else got
    sorter = np.argsort(got, kind="stable")
    sg = got[sorter]
    if np.any(sg[1:] == sg[:-1]):
        raise ValueError(f"samples {description!r} repeat sample_id "
                         f"{int(sg[1:][sg[1:] == sg[:-1]][0])}")
    pos = np.searchsorted(sg, order_ids)
    pos_c = np.minimum(pos, sg.size - 1)
    missing = order_ids[sg[pos_c] != order_ids]
    if missing.size:
        raise ValueError(
            f"{missing.size} sample_id(s) of the score table are missing from the samples "
            f"{description!r}, e.g. {missing[:5].tolist()}"
        )
    take = sorter[pos_c]
    return order_ids, {k: v[take] for k, v in cols.items()}, take


def _semantic_columns(texts: list[str], prompts: list[str], reference, model, tok, *,
                      prefix_len: int, cont_len: int, chunk_size: int,
                      progress: bool) -> dict[str, np.ndarray]:
    """semantic_matches and textual_matches of the samples' texts against the reference (None:
    the samples themselves, each sample's own pair not counted)."""
    from engine.data import open_samples

    emb = _sem.embed(texts, model=model, progress=progress)
    if reference is None:
        ref_emb, ref_prompts, self_ref = emb, prompts, True
    else:
        ref = open_samples(reference, prefix_len=prefix_len, cont_len=cont_len,
                           tokenizer=as_encoder(tok))
        ref_texts, ref_prompts = [], []
        for _, rt in ref.batches(chunk_size):
            ref_texts.extend(decode_batch(tok, rt))
            ref_prompts.extend(decode_batch(tok, rt[:, :prefix_len]))
        ref_emb = _sem.embed(ref_texts, model=model, progress=progress)
        self_ref = False
    sem, txt = _sem.matches(emb, prompts, ref_emb, ref_prompts, exclude_self=self_ref,
                            progress=progress)
    return {"semantic_matches": sem, "textual_matches": txt}


def _mp_context():
    import multiprocessing as mp

    # Workers run only pure-Python text code. "fork" starts them at once and, unlike "spawn",
    # does not re-import the caller's main script (which breaks scripts without a __main__
    # guard); the pool is started before any decoding so no Rust/OpenMP pool is running yet
    # in this call. Where fork is unavailable, spawn.
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def _noop() -> None:
    return None


def _assemble(table, order_ids, cols, skipped, **run) -> pa.Table:
    arrays, fields = [], []
    if table is not None:
        for f, col in zip(table.schema, table.columns):
            arrays.append(col)
            fields.append(f.remove_metadata() if f.metadata else f)
    else:
        arrays.append(pa.array(order_ids, type=pa.int64()))
        fields.append(pa.field("sample_id", pa.int64()))
    for name in FEATURES:
        if name in cols:
            arrays.append(pa.array(cols[name], type=_TYPES[name]))
            fields.append(pa.field(name, _TYPES[name]))
    meta = dict((table.schema.metadata or {}) if table is not None else {})
    meta[b"memtax.features"] = json.dumps({
        "features": {k: {"version": v, "definition": d} for k, (v, d) in FEATURES.items()
                     if k in cols},
        "skipped": skipped,
        "run": {k: (str(v) if not isinstance(v, int) else v) for k, v in run.items()
                if k != "reference" or v is not None},
    }).encode()
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))

