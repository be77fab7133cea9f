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

Profiles (`profile=`, recorded under `memtax.profile` in the schema metadata; a score table
recorded under another profile is refused): "default" computes the definitions above;
"paper" follows the paper's code for each per-sample feature (`PAPER_FEATURES`; the table of
differences is docs/notes/profiles.md): texts decoded with Hugging Face's cleanup
(`tokenizers`), its templating tests (`templating.paper_classify`), its code/natural-language
band (`code_score.paper_band`), duplicate counts without each sequence's last window
(`duplicates`), p25/p75 as order statistics (`token_stats`), the sample itself among its
semantic matches and no textual matches for non-ASCII prompts (`semantic`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.profiles import check_profile, profile_metadata, same_profile
from features import code_score as _code
from features import compression as _comp
from features import duplicates as _dups
from features import semantic as _sem
from features import templating as _tmpl
from features import token_stats as _tstats
from features.feature_stream import (
    FeatureStream,
    text_features,
)
from features.provenance import check_index, scored_samples
from features.tokenizers import as_encoder, decode_batch, load_tokenizer

__all__ = ["compute", "FEATURES", "PAPER_FEATURES", "feature_definitions", "text_features",
           "read_table"]

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
# The paper profile's definitions (same columns; each follows the paper's code).
PAPER_FEATURES: dict[str, tuple[int, str]] = {
    **{c: (1, d) for c, d in _dups.PAPER_DEFINITIONS.items()},
    **{c: (1, _tstats.PAPER_DEFINITION + f" [{c.removeprefix('token_freq_')}]")
       for c in _tstats.COLUMNS},
    "huffman_code_length": (1, _comp.HUFFMAN_DEFINITION + "; text decoded with Hugging Face's "
                            "cleanup"),
    "zlib_ratio": (1, _comp.ZLIB_DEFINITION + "; text decoded with Hugging Face's cleanup"),
    "is_incrementing": (1, _tmpl.PAPER_INCREMENTING_DEFINITION),
    "is_repeating": (1, _tmpl.PAPER_REPEATING_DEFINITION),
    "is_templating": (1, "is_incrementing or is_repeating"),
    "code_score": (1, _code.PAPER_DEFINITION),
    **{c: (1, d) for c, d in _sem.PAPER_DEFINITIONS.items()},
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


def feature_definitions(profile: str = "default") -> dict[str, tuple[int, str]]:
    """column -> (version, definition) under `profile`."""
    return PAPER_FEATURES if check_profile(profile) == "paper" else FEATURES


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


def _open_index(index):
    if isinstance(index, (str, os.PathLike)):
        from features.index import CorpusIndex

        return CorpusIndex.open(index)
    if index is not None and not (hasattr(index, "count") and hasattr(index, "unigram_counts")):
        raise ValueError(f"index must be a CorpusIndex or its folder, got {type(index).__name__}")
    return index


def compute(table, samples, *, index=None, tokenizer=None, reference=None,
            prefix_len: int | None = None, cont_len: int | None = None, stride: int | None = None,
            semantic: bool = True,
            chunk_size: int = 8192, workers: int = 2, embed_device: str = "cpu",
            embed_dtype: str = "float32", progress: bool = True, cluster: str | None = None,
            cluster_options: dict | None = None, profile: str = "default") -> pa.Table:
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
        num_cpus (of a local cluster), parts_dir (default: a temporary folder), max_retries,
        group_samples, block_rows, placement.
    profile: "default" or "paper" (the module docstring); the score table must not record
        another profile.
    Returns a pyarrow.Table (see the module docstring). Raises ValueError for ids missing from
    the samples, vocabularies that do not match, a score table of another profile, or an empty
    selection.
    """
    from engine.data import open_samples

    profile = check_profile(profile)
    for name, value in (("chunk_size", chunk_size), ("workers", workers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    table = read_table(table)
    if table is not None:
        same_profile({"the score table": table}, expected=profile)
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
                                  keep_text=do_sem, options=cluster_options, profile=profile)
    else:
        stream = FeatureStream(index, tok, prefix_len=prefix_len, workers=workers,
                               keep_text=do_sem, profile=profile)
    stream.run(source, table_ids, chunk_size, progress)
    order_ids, cols, take = _in_output_order(stream.parts, table_ids, source.description)
    if do_sem:
        embedder = _sem.load_embedder(embed_device, embed_dtype)
        cols.update(_semantic_columns(
            [stream.texts[i] for i in take], [stream.prompts[i] for i in take], reference,
            embedder, tok, prefix_len=prefix_len, cont_len=cont_len, chunk_size=chunk_size,
            progress=progress, profile=profile))
    return _assemble(table, order_ids, cols, skipped, profile, prefix_len=prefix_len,
                     cont_len=cont_len, reference=reference, source=source.description,
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
                      prefix_len: int, cont_len: int, chunk_size: int, progress: bool,
                      profile: str = "default") -> dict[str, np.ndarray]:
    """semantic_matches and textual_matches of the samples' texts against the reference (None:
    the samples themselves, each sample's own pair not counted by default, counted by the
    paper profile)."""
    from engine.data import open_samples

    paper = profile == "paper"
    emb = _sem.embed(texts, model=model, progress=progress)
    if reference is None:
        ref_emb, ref_prompts, self_ref = emb, prompts, not paper
    else:
        ref = open_samples(reference, prefix_len=prefix_len, cont_len=cont_len,
                           tokenizer=as_encoder(tok))
        ref_texts, ref_prompts = [], []
        for _, rt in ref.batches(chunk_size):
            ref_texts.extend(decode_batch(tok, rt, clean_up_spaces=paper))
            ref_prompts.extend(decode_batch(tok, rt[:, :prefix_len], clean_up_spaces=paper))
        ref_emb = _sem.embed(ref_texts, model=model, progress=progress)
        self_ref = False
    sem, txt = _sem.matches(emb, prompts, ref_emb, ref_prompts, exclude_self=self_ref,
                            ascii_prompts_only=paper, progress=progress)
    return {"semantic_matches": sem, "textual_matches": txt}


def _assemble(table, order_ids, cols, skipped, profile: str, **run) -> pa.Table:
    arrays, fields = [], []
    if table is not None:
        for f, col in zip(table.schema, table.columns):
            arrays.append(col)
            fields.append(f.remove_metadata() if f.metadata else f)
    else:
        arrays.append(pa.array(order_ids, type=pa.int64()))
        fields.append(pa.field("sample_id", pa.int64()))
    definitions = feature_definitions(profile)
    for name in definitions:
        if name in cols:
            arrays.append(pa.array(cols[name], type=_TYPES[name]))
            fields.append(pa.field(name, _TYPES[name]))
    meta = dict((table.schema.metadata or {}) if table is not None else {})
    meta.update(profile_metadata(profile))
    meta[b"memtax.features"] = json.dumps({
        "features": {k: {"version": v, "definition": d} for k, (v, d) in definitions.items()
                     if k in cols},
        "skipped": skipped,
        "run": {k: (str(v) if not isinstance(v, int) else v) for k, v in run.items()
                if k != "reference" or v is not None},
    }).encode()
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))

