"""The per-sample features of `features.compute` on a Ray cluster, resumably.

    feats = features.compute(scores, samples, index="idx/", tokenizer="gpt-neox",
                             cluster="ray", cluster_options={"parts_dir": "out/parts",
                                                             "ray_address": "auto"})

The samples are read here in blocks of `chunk_size` (the same chunks the single-process stream
reads); each block becomes one Ray task that runs the single-process code for one chunk
(`feature_stream.FeatureStream`: text features, duplicate counts over every shard, token
frequencies) on a worker, which opens the index where it lies (a file system every worker
mounts). Each finished block is written here as `parts_dir/part-NNNNNN.parquet` (written to a
temporary name, then renamed); a rerun with the same inputs reads the finished parts instead of
recomputing them. The caller assembles the table from the parts in block order, so the output
is the single-process one exactly. Semantic matches need every text at once: they still run in
the calling process, after the blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from engine.output import write_bytes_atomic, write_parquet_atomic

__all__ = ["RayFeatureStream", "PLAN_NAME"]

PLAN_NAME = "plan.json"
_OPTIONS = ("ray_address", "num_cpus", "parts_dir", "max_retries", "in_flight")
_WORKER_INPUTS: dict = {}  # a worker's opened index and tokenizer, kept for its later blocks


def _worker_inputs(key: str, index_path: str | None, tok):
    if key not in _WORKER_INPUTS:
        from features.index import CorpusIndex

        if index_path is not None:
            from features.index.distributed import visible_folder

            visible_folder(index_path)
        _WORKER_INPUTS.clear()
        index = CorpusIndex.open(index_path, verify=False) if index_path is not None else None
        _WORKER_INPUTS[key] = (index, tok)
    return _WORKER_INPUTS[key]


def block_task(setup: list, ids: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The feature columns (and sample_id) of one block, by the single-process chunk code.
    `setup`: [key, index folder or None, tokenizer or None, prefix_len] (run on a worker)."""
    import numba

    from features.feature_stream import FeatureStream

    numba.set_num_threads(1)  # one CPU per task: Ray schedules by CPUs
    key, index_path, tok, prefix_len = setup
    index, tok = _worker_inputs(key, index_path, tok)
    stream = FeatureStream(index, tok, prefix_len=prefix_len, workers=1, keep_text=False)
    stream._add_chunk(ids, tokens)
    while stream.pending:
        stream._collect(stream.pending.pop(0))
    return {k: np.concatenate(v) for k, v in stream.parts.items()}


class RayFeatureStream:
    """Drop-in for `feature_stream.FeatureStream` (same `run`, `parts`, `texts`, `prompts`) whose
    chunks are computed by Ray tasks and kept as parquet parts in `parts_dir`."""

    def __init__(self, index, tok, *, prefix_len: int, cont_len: int, keep_text: bool,
                 options: dict | None = None):
        options = dict(options or {})
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"unknown cluster_options {unknown}; expected some of {_OPTIONS}")
        self.index, self.tok, self.prefix_len, self.keep_text = index, tok, prefix_len, keep_text
        self.options = options
        self.settings = _settings(index, tok, prefix_len, cont_len)
        self.parts: dict[str, list[np.ndarray]] = {"sample_id": []}
        self.texts: list[str] = []
        self.prompts: list[str] = []

    def run(self, source, table_ids: np.ndarray | None, chunk_size: int, progress: bool) -> None:
        """Every block of `source` (only the rows of `table_ids` when given), from its finished
        part or a Ray task."""
        given = self.options.get("parts_dir")
        if given is not None:
            self._run(Path(given), source, table_ids, chunk_size, progress)
            return
        with tempfile.TemporaryDirectory(prefix="memtax-features-parts-") as tmp:
            self._run(Path(tmp), source, table_ids, chunk_size, progress)

    def _run(self, parts_dir: Path, source, table_ids, chunk_size: int, progress: bool) -> None:
        from features.feature_stream import select_rows
        from features.index.distributed import connect, run_tasks

        _check_plan(parts_dir, dict(self.settings, chunk_size=chunk_size,
                                    source=source.description, ids=_ids_digest(table_ids)))
        ray = connect(self.options.get("ray_address"), self.options.get("num_cpus"))
        remote = ray.remote(num_cpus=1, max_retries=int(self.options.get("max_retries", 3)))(
            block_task)
        setup = ray.put(self._setup())
        wanted = np.sort(table_ids) if table_ids is not None else None
        blocks: list[np.ndarray] = []

        def submit():
            for ids, tokens in source.batches(chunk_size):
                ids, tokens = select_rows(ids, tokens, wanted)
                if not ids.size:
                    continue
                b = len(blocks)
                blocks.append(ids)
                if self.keep_text:
                    self._decode(tokens)
                if not _part(parts_dir, b).is_file():
                    yield b, remote.remote(setup, ids, tokens)

        def on_result(b, cols):
            _write_part(parts_dir, b, cols)

        limit = self.options.get("in_flight") or 2 * max(
            1, int(ray.cluster_resources().get("CPU", 1)))
        run_tasks(ray, submit(), on_result, total=_n_blocks(source, chunk_size, wanted),
                  in_flight=limit, desc="features (ray)", progress=progress)
        for b, ids in enumerate(blocks):
            self._read_part(parts_dir, b, ids)

    def _setup(self) -> list:
        path = None if self.index is None else str(Path(self.index.path).resolve())
        key = hashlib.sha256(repr((path, id(self), os.getpid())).encode()).hexdigest()
        return [key, path, self.tok, self.prefix_len]

    def _decode(self, tokens: np.ndarray) -> None:
        from features.tokenizers import decode_batch

        self.texts.extend(decode_batch(self.tok, tokens))
        self.prompts.extend(decode_batch(self.tok, tokens[:, : self.prefix_len]))

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


def _n_blocks(source, chunk_size: int, wanted) -> int:
    """Blocks the bar counts: every chunk of the source (an upper bound with a selection)."""
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
