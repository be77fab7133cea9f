"""The per-sample features of `features.compute` on a Ray cluster, resumably.

    feats = features.compute(scores, samples, index="idx/", tokenizer="gpt-neox",
                             cluster="ray", cluster_options={"parts_dir": "out/parts",
                                                             "ray_address": "auto"})

The samples are read here in chunks of `chunk_size` (the chunks the single-process stream
reads) and gathered into groups of about `group_samples` samples. For a group:
- each chunk is one Ray task running the single-process chunk code for what needs no index
  (`feature_stream.FeatureStream`: text features) and the token frequencies (from the corpus
  unigram counts, computed here once and shipped with the task);
- the group's distinct continuations, prompts and whole samples (each distinct row once, as the
  single-process `duplicates.duplicate_counts` does) are counted by the distributed count path,
  `index.distributed.count_arrays_on_ray`: Ray tasks per (shard, block of queries) that open
  their shard where it lies and may run on the node that holds it (`placement`);
- each finished chunk is written here as `parts_dir/part-NNNNNN.parquet` (temporary name,
  then rename).
A rerun with the same inputs reads the finished parts instead of recomputing them. The caller
assembles the table from the parts in chunk order, so the output is the single-process one
exactly. Memory here is bounded by two groups (the one being counted and the next, whose
chunk tasks are queued beside those counts: tokens, distinct rows, counts) and the finished
parts' columns. Semantic matches need every text at once: they still run in the calling
process, after the chunks. The profile ("paper": its decode cleanup, templating, code band,
percentiles, and counts without the occurrences that end a document) goes to the chunk tasks,
the driver's decoding and the count tasks, so either profile's table is the single-process one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from engine.output import write_bytes_atomic, write_parquet_atomic

__all__ = ["RayFeatureStream", "PLAN_NAME", "GROUP_SAMPLES"]

PLAN_NAME = "plan.json"
GROUP_SAMPLES = 1 << 18  # samples whose duplicate counts go to the cluster together
_OPTIONS = ("ray_address", "num_cpus", "parts_dir", "max_retries", "in_flight", "group_samples",
            "block_rows", "placement")


def chunk_task(setup: list, ids: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The text features (by the single-process chunk code) and token frequencies of one
    chunk. `setup`: [tokenizer or None, prefix_len, unigram counts or None, whether the index
    declared its vocabulary, profile] (run on a worker)."""
    import numba

    from features.feature_stream import FeatureStream
    from features.token_stats import token_frequency_stats

    numba.set_num_threads(1)  # one CPU per task: Ray schedules by CPUs
    tok, prefix_len, unigrams, declared, profile = setup
    stream = FeatureStream(None, tok, prefix_len=prefix_len, workers=1, keep_text=False,
                           profile=profile)
    stream._add_chunk(ids, tokens)
    while stream.pending:
        stream._collect(stream.pending.pop(0))
    cols = {k: np.concatenate(v) for k, v in stream.parts.items() if k != "sample_id"}
    if unigrams is not None:
        hi = int(tokens.max())
        if hi >= unigrams.size and not declared:  # an id the corpus never holds: count 0
            unigrams = np.concatenate([unigrams, np.zeros(hi + 1 - unigrams.size, np.int64)])
        cols.update(token_frequency_stats(tokens, unigrams, profile=profile))
    return cols


def group_counts(index, tokens: np.ndarray, *, prefix_len: int, tokenizer=None,
                 profile: str = "default", **count_options) -> dict[str, np.ndarray]:
    """`duplicates.duplicate_counts(index, tokens, profile=profile)` by the distributed count
    path: the distinct rows of each kind, counted by Ray tasks per (shard, block) in one stream
    (the paper profile: without the occurrences that end at their document's last token), then
    spread back."""
    from features.duplicates import _distinct_rows
    from features.index.distributed import checked_queries, count_arrays_on_ray

    kinds = {"duplicates": tokens[:, prefix_len:], "prompt_duplicates": tokens[:, :prefix_len],
             "sample_duplicates": tokens}
    distinct = {k: _distinct_rows(np.ascontiguousarray(q)) for k, q in kinds.items()}
    arrays = [checked_queries(index, rows, tokenizer) for rows, _ in distinct.values()]
    counts = count_arrays_on_ray(index, arrays, skip_ending=profile == "paper", **count_options)
    return {k: c[inverse] for (k, (_, inverse)), c in zip(distinct.items(), counts)}


class RayFeatureStream:
    """Drop-in for `feature_stream.FeatureStream` (same `run`, `parts`, `texts`, `prompts`) whose
    chunks are computed on a Ray cluster and kept as parquet parts in `parts_dir`."""

    def __init__(self, index, tok, *, prefix_len: int, cont_len: int, keep_text: bool,
                 options: dict | None = None, profile: str = "default"):
        from engine.profiles import check_profile
        from features.feature_stream import _index_tokenizer, _unigrams, _vocab_declared

        options = dict(options or {})
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown cluster_options {unknown}; expected some of {_OPTIONS}")
        group = options.get("group_samples", GROUP_SAMPLES)
        if not isinstance(group, int) or group < 1:
            raise ValueError(f"group_samples must be a positive integer, got {group!r}")
        self.index, self.tok, self.prefix_len, self.keep_text = index, tok, prefix_len, keep_text
        self.options, self.group_samples = options, group
        self.profile = check_profile(profile)
        self.settings = dict(_settings(index, tok, prefix_len, cont_len), profile=self.profile)
        # vocabulary checks here, before any task: a mismatch fails at once
        self.unigrams = _unigrams(index, tok) if index is not None else None
        self.declared = _vocab_declared(index) if index is not None else True
        self.idx_tok = _index_tokenizer(index, tok) if index is not None else None
        self.parts: dict[str, list[np.ndarray]] = {"sample_id": []}
        self.texts: list[str] = []
        self.prompts: list[str] = []

    def run(self, source, table_ids: np.ndarray | None, chunk_size: int, progress: bool) -> None:
        """Every chunk of `source` (only the rows of `table_ids` when given), from its finished
        part or the cluster."""
        given = self.options.get("parts_dir")
        if given is not None:
            self._run(Path(given), source, table_ids, chunk_size, progress)
            return
        with tempfile.TemporaryDirectory(prefix="memtax-features-parts-") as tmp:
            self._run(Path(tmp), source, table_ids, chunk_size, progress)

    def _run(self, parts_dir: Path, source, table_ids, chunk_size: int, progress: bool) -> None:
        from tqdm.auto import tqdm

        from features.index.distributed import connect

        _check_plan(parts_dir, dict(self.settings, chunk_size=chunk_size,
                                    source=source.description, ids=_ids_digest(table_ids)))
        ray = connect(self.options.get("ray_address"), self.options.get("num_cpus"))
        self._ray = ray
        self._remote = ray.remote(num_cpus=1, max_retries=int(self.options.get("max_retries", 3)))(
            chunk_task)
        self._setup = ray.put([self.tok, self.prefix_len, self.unigrams, self.declared,
                               self.profile])
        chunks: list[np.ndarray] = []
        bar = tqdm(total=_n_chunks(source, chunk_size), desc="features (ray)", unit="chunk",
                   disable=not progress, leave=False)
        try:
            # group g+1's chunk tasks are queued before group g's counts run, so the cluster
            # has text work while a group's count tasks finish
            queued = None
            for group in self._groups(parts_dir, source, table_ids, chunk_size, chunks, bar):
                refs = [self._remote.remote(self._setup, ids, tokens) for _, ids, tokens in group]
                if queued is not None:
                    self._finish_group(parts_dir, *queued, bar)
                queued = (group, refs)
            if queued is not None:
                self._finish_group(parts_dir, *queued, bar)
        finally:
            bar.close()
        for b, ids in enumerate(chunks):
            self._read_part(parts_dir, b, ids)

    def _groups(self, parts_dir: Path, source, table_ids, chunk_size: int, chunks: list, bar):
        """Groups of about `group_samples` samples of unfinished chunks, as lists of (chunk
        number, ids, tokens); every chunk's ids are appended to `chunks` (and its texts kept)
        on the way, finished ones included."""
        from features.feature_stream import select_rows

        wanted = np.sort(table_ids) if table_ids is not None else None
        group: list[tuple[int, np.ndarray, np.ndarray]] = []
        for ids, tokens in source.batches(chunk_size):
            ids, tokens = select_rows(ids, tokens, wanted)
            if not ids.size:
                continue
            chunks.append(ids)
            if self.keep_text:
                self._decode(tokens)
            if _part(parts_dir, len(chunks) - 1).is_file():
                bar.update(1)
                continue
            group.append((len(chunks) - 1, ids, tokens))
            if sum(len(g[1]) for g in group) >= self.group_samples:
                yield group
                group = []
        if group:
            yield group

    def _finish_group(self, parts_dir: Path, group: list, refs: list, bar) -> None:
        """One group of unfinished chunks whose text/frequency tasks are queued: the group's
        counts (count tasks per (shard, block), run here), then each chunk's part."""
        from features.index.distributed import get_result

        counts = {}
        if self.index is not None:
            tokens = np.concatenate([t for _, _, t in group])
            counts = group_counts(self.index, tokens, prefix_len=self.prefix_len,
                                  tokenizer=self.idx_tok, profile=self.profile,
                                  **self._count_options())
        start = 0
        for (b, ids, _), ref in zip(group, refs):
            cols = {"sample_id": ids, **get_result(self._ray, ref)}
            cols.update({k: v[start : start + ids.size] for k, v in counts.items()})
            start += ids.size
            _write_part(parts_dir, b, cols)
            bar.update(1)

    def _count_options(self) -> dict:
        names = ("max_retries", "in_flight", "block_rows", "placement")
        return {k: self.options[k] for k in names if k in self.options}

    def _decode(self, tokens: np.ndarray) -> None:
        from features.tokenizers import decode_batch

        clean_up = self.profile == "paper"  # Hugging Face's decode cleanup, as FeatureStream
        self.texts.extend(decode_batch(self.tok, tokens, clean_up_spaces=clean_up))
        self.prompts.extend(decode_batch(self.tok, tokens[:, : self.prefix_len],
                                         clean_up_spaces=clean_up))

    def _read_part(self, parts_dir: Path, b: int, ids: np.ndarray) -> None:
        import pyarrow.parquet as pq

        part = pq.read_table(_part(parts_dir, b))
        got = part.column("sample_id").to_numpy()
        if not np.array_equal(got, ids):
            raise ValueError(f"feature part {str(_part(parts_dir, b))!r} holds other samples "
                             "than its block; delete the parts folder and rerun")
        for name in part.column_names:
            self.parts.setdefault(name, []).append(part.column(name).to_numpy(
                zero_copy_only=False))


def _settings(index, tok, prefix_len: int, cont_len: int) -> dict:
    """What a block's features depend on besides its tokens (recorded in plan.json)."""
    from features.index import format as fmt
    from features.index import tokenizer_fingerprint

    path = None if index is None else Path(index.path).resolve()
    return {"prefix_len": prefix_len, "cont_len": cont_len,
            "index": None if path is None else str(path),
            "index_header": None if path is None else fmt.header_sha256(path),
            "tokenizer": (tokenizer_fingerprint(tok) if hasattr(tok, "get_vocab")
                          else None if tok is None else repr(tok))}


def _part(parts_dir: Path, b: int) -> Path:
    return parts_dir / f"part-{b:06d}.parquet"


def _write_part(parts_dir: Path, b: int, cols: dict[str, np.ndarray]) -> None:
    """One block's columns, written under a temporary name and renamed (a crash leaves either
    the whole part or none)."""
    import pyarrow as pa

    write_parquet_atomic(pa.table({k: np.asarray(v) for k, v in cols.items()}),
                         _part(parts_dir, b))


def _ids_digest(table_ids: np.ndarray | None) -> str | None:
    if table_ids is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(table_ids, dtype=np.int64).tobytes()).hexdigest()


def _n_chunks(source, chunk_size: int) -> int:
    """Chunks the bar counts: every chunk of the source (an upper bound with a selection)."""
    return -(-len(source) // chunk_size)


def _check_plan(parts_dir: Path, plan: dict) -> None:
    """Record the run's inputs in parts_dir/plan.json, or check that the recorded ones are
    these (parts of another run are never mixed in)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    path = parts_dir / PLAN_NAME
    plan = json.loads(json.dumps(plan, default=str))
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded != plan:
            diff = sorted(k for k in set(plan) | set(recorded) if plan.get(k) != recorded.get(k))
            raise ValueError(f"feature parts folder {str(parts_dir)!r} holds parts of another run "
                             f"(differs in {diff}); delete it or rerun with the same inputs")
        return
    write_bytes_atomic(path, json.dumps(plan, indent=1).encode())
