"""`CorpusIndex`: exact n-gram counts over a training corpus from (sharded) suffix arrays.

    idx = CorpusIndex.build(tokens_or_path, "idx/", sequence_length=2049)   # Pythia semantics
    idx = CorpusIndex.open("idx/")
    idx.count(queries)        # (Q, n) ints -> (Q,) int64, any n
    idx.count_ending(queries) # (Q,) int64: documents whose last n tokens are the query
    idx.window_counts(32)     # (N,) int64, count of the 32-gram starting at each position
    idx.locate(query, limit)  # positions (global, increasing) where `query` occurs
    idx.unigram_counts()      # (vocab_size,) int64
    idx.stats()               # dict of sizes, dtypes, bytes/token, build times

Matches never cross a document boundary. A sharded index (built with `shard_tokens`) answers
exactly like an unsharded one: counts are summed over shards.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.tokenizers import tokenizer_fingerprint
from features.index import format as fmt
from features.index.corpus import load_corpus
from features.index.shards import plan_shards, run_builds
from features.index.single import Shard, write_inputs
from features.index.suffix_array import KEY_BATCHES

__all__ = ["CorpusIndex", "tokenizer_fingerprint"]


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


class CorpusIndex:
    """A memory-mapped, possibly sharded, suffix-array index of a token corpus."""

    def __init__(self, path: Path, header: dict, shards: list[Shard]):
        self.path = path
        self.header = header
        self.shards = shards
        self.meta = header["meta"]
        self.shard_starts = np.r_[0, np.cumsum([s.n_tokens for s in shards])].astype(np.int64)

    # ---------------------------------------------------------------- build / open
    @classmethod
    def build(
        cls,
        corpus,
        path: str | os.PathLike,
        *,
        dtype=None,
        sequence_length: int | None = None,
        vocab_size: int | None = None,
        tokenizer=None,
        shard_tokens: int | None = None,
        workers: int = 1,
        use_ray: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        key_batches: int = KEY_BATCHES,
    ) -> CorpusIndex:
        """Index `corpus` into folder `path` and return the opened index.

        corpus: a 1-D token array (one document), a 2-D array or list of 1-D arrays (one
        document each), a `.npy` path, a GPT-NeoX `.bin/.idx` dataset or an iterable of arrays.
        dtype: token dtype (uint16/uint32; default: narrowest that fits); tokens that do not fit
        raise ValueError. sequence_length: Pythia semantics (each L-token training sequence its
        own document). vocab_size / tokenizer: recorded and checked by `count(tokenizer=...)`.
        shard_tokens: split at document boundaries into shards of about that many tokens, built
        by `workers` local processes or, with use_ray, Ray tasks. key_batches: batches of the
        suffix sort's initial key buffer (N/key_batches x 8 bytes, one text scan per batch).
        """
        c = load_corpus(corpus, dtype=dtype, sequence_length=sequence_length)
        meta = _index_meta(c, vocab_size, tokenizer, sequence_length)
        plan = plan_shards(c.doc_offsets, int(shard_tokens)) if shard_tokens is not None else None
        with fmt.atomic_dir(path, overwrite=overwrite) as tmp:
            if plan is None:
                _build_single(tmp, c, meta, progress, key_batches)
            else:
                _build_sharded(tmp, c, meta, plan, workers=workers, use_ray=use_ray,
                               progress=progress, key_batches=key_batches)
        return cls.open(path, verify=False)

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: bool = True) -> CorpusIndex:
        """Memory-map an index folder. verify=True also checks every array's CRC-32 (reads all
        files once); sizes, magic and version are always checked."""
        path = Path(path)
        header = fmt.read_header(path)
        if header["kind"] == "single":
            return cls(path, header, [Shard(path, verify=verify, header=header)])
        names = header["shards"]  # validated by read_header
        digests = header.get("shard_headers") or [None] * len(names)
        for name, digest in zip(names, digests):
            if digest is not None and (path / name / fmt.HEADER).is_file() and (
                    fmt.header_sha256(path / name) != digest):
                raise ValueError(
                    f"shard {str(path / name)!r} of corpus index {str(path)!r} is not the one "
                    "the index was built with (its header's sha256 differs: copied over or "
                    "rebuilt?); rebuild the index"
                )
        shards = [Shard(path / str(s), verify=verify) for s in names]
        total = sum(s.n_tokens for s in shards)
        if total != header["meta"].get("n_tokens"):
            raise ValueError(
                f"sharded corpus index {str(path)!r}: shards hold {total} tokens, header says "
                f"{header['meta'].get('n_tokens')}"
            )
        return cls(path, header, shards)

    # ---------------------------------------------------------------- properties
    @property
    def n_tokens(self) -> int:
        return int(self.shard_starts[-1])

    @property
    def n_docs(self) -> int:
        return sum(s.offsets.shape[0] - 1 for s in self.shards)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["token_dtype"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def tokenizer(self) -> str | None:
        return self.meta.get("tokenizer")

    # ---------------------------------------------------------------- queries
    def _check_tokenizer(self, tokenizer) -> None:
        if tokenizer is None:
            return
        claimed = tokenizer_fingerprint(tokenizer)
        if self.tokenizer is not None and claimed != self.tokenizer:
            raise ValueError(
                f"queries claim tokenizer {claimed!r} but the index {str(self.path)!r} was built "
                f"with tokenizer {self.tokenizer!r}"
            )
        if not isinstance(tokenizer, str) and hasattr(tokenizer, "__len__"):
            if len(tokenizer) > self.vocab_size:
                raise ValueError(
                    f"queries' tokenizer has {len(tokenizer)} tokens but the index was built "
                    f"for a vocabulary of {self.vocab_size}"
                )

    def _queries(self, queries, tokenizer) -> np.ndarray:
        self._check_tokenizer(tokenizer)
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ValueError(f"queries must be a (Q, n) integer array, got shape {q.shape}")
        if q.shape[1] == 0:
            raise ValueError("queries have length n = 0; expected n >= 1 tokens per query")
        if q.size and q.dtype.kind not in "iu":
            raise ValueError(f"queries must hold integer token ids, got dtype {q.dtype}")
        if q.size:
            lo, hi = int(q.min()), int(q.max())
            limit = np.iinfo(self.dtype).max
            if lo < 0 or hi > limit:
                raise ValueError(
                    f"queries hold token ids in [{lo}, {hi}], wider than the index's token dtype "
                    f"{self.dtype} (range [0, {limit}])"
                )
            if self.meta.get("vocab_size_declared") and hi >= self.vocab_size:
                raise ValueError(
                    f"queries hold token id {hi}, outside the index's vocabulary of "
                    f"{self.vocab_size} (built with another tokenizer?)"
                )
        return np.ascontiguousarray(q, dtype=self.dtype)

    def count(self, queries, *, tokenizer=None, cluster: str | None = None,
              ray_address: str | None = None, **ray_options) -> np.ndarray:
        """Occurrences (Q,) int64 of each row of `queries` (Q, n) inside documents. A 1-D query
        is treated as one row. `tokenizer` (name or object), when given, must match the index's.
        cluster="ray": Ray tasks per (shard, block of queries) on the cluster at `ray_address`
        (or this process's, or a new local one); `ray_options` go to
        `features.index.distributed.count_on_ray` (block_rows, num_cpus, max_retries, ...)."""
        q = self._queries(queries, tokenizer)
        if _cluster(cluster, ray_address, ray_options):
            from features.index.distributed import count_on_ray

            return count_on_ray(self, q, address=ray_address, **ray_options)
        out = np.zeros(q.shape[0], dtype=np.int64)
        for s in self.shards:
            out += s.count(q)
        return out

    def count_ending(self, queries, *, tokenizer=None) -> np.ndarray:
        """(Q,) int64: how many documents end with each row of `queries` (Q, n), i.e. the
        occurrences among `count(queries)` whose window ends at its document's last token (the
        window the paper's duplicate counts skip; see `features.index.ends`)."""
        from features.index.ends import count_ending

        q = self._queries(queries, tokenizer)
        out = np.zeros(q.shape[0], dtype=np.int64)
        for s in self.shards:
            out += count_ending(s, q)
        return out

    def locate(self, query, limit: int | None = None, *, tokenizer=None) -> np.ndarray:
        """Global corpus positions (increasing, int64) where the 1-D `query` occurs inside a
        document; at most `limit` of them (the first in each shard's SA order) when given."""
        q = self._queries(query, tokenizer)
        if q.shape[0] != 1:
            raise ValueError(f"locate takes one 1-D query, got shape {np.shape(query)}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        found = []
        left = limit
        for s, base in zip(self.shards, self.shard_starts[:-1]):
            a, b = s.sa_range(q[0])
            if left is not None:
                b = min(b, a + left)
                left -= b - a
            found.append(np.asarray(s.sa[a:b], dtype=np.int64) + base)
        return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def window_counts(self, n: int, *, cluster: str | None = None,
                      ray_address: str | None = None, **ray_options) -> np.ndarray:
        """(N,) int64: count in the whole corpus of the n-gram starting at each position (0
        where it would cross its document's end). Sharded: each shard's local counts, then one
        k-way merge of the shards' suffix arrays sums equal n-grams (`shard_merge`).
        cluster="ray": the shards' local counts as Ray tasks (see `count`), the merge here."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if _cluster(cluster, ray_address, ray_options):
            from features.index.distributed import window_counts_on_ray

            return window_counts_on_ray(self, int(n), address=ray_address, **ray_options)
        out = np.empty(self.n_tokens, dtype=np.int64)
        for s, base in zip(self.shards, self.shard_starts[:-1]):
            out[base : base + s.n_tokens] = s.window_counts(int(n))
        if len(self.shards) > 1:
            from features.index.shard_merge import merge_window_counts

            bits = max(int(s.values[-1]) for s in self.shards).bit_length()
            merge_window_counts(self.shards, out, int(n), bits)
        return out

    def unigram_counts(self, size: int | None = None) -> np.ndarray:
        """(vocab_size,) int64 count of every token id in the corpus; `size` pads it to at least
        that length (e.g. the tokenizer's vocabulary when the index did not declare one)."""
        out = np.zeros(max(self.vocab_size, int(size or 0)), dtype=np.int64)
        for s in self.shards:
            np.add.at(out, np.asarray(s.values, dtype=np.int64), np.asarray(s.counts))
        return out

    def stats(self) -> dict:
        """Sizes, dtypes and disk bytes per token of the index."""
        disk = sum(
            (s.folder / e["file"]).stat().st_size
            for s in self.shards
            for e in s.header["arrays"].values()
        )
        return {
            "path": str(self.path),
            "kind": self.header["kind"],
            "n_tokens": self.n_tokens,
            "n_docs": self.n_docs,
            "n_shards": len(self.shards),
            "token_dtype": str(self.dtype),
            "sa_dtype": str(self.shards[0].sa.dtype),
            "vocab_size": self.vocab_size,
            "distinct_tokens": int(np.count_nonzero(self.unigram_counts())),
            "tokenizer": self.tokenizer,
            "sequence_length": self.meta.get("sequence_length"),
            "disk_bytes": int(disk),
            "disk_bytes_per_token": disk / max(1, self.n_tokens),
            "sa_build_seconds": sum(s.meta.get("sa_build_seconds", 0.0) for s in self.shards),
        }

    def __repr__(self) -> str:
        return (
            f"CorpusIndex({str(self.path)!r}, tokens={self.n_tokens}, docs={self.n_docs}, "
            f"shards={len(self.shards)}, dtype={self.dtype})"
        )


def _cluster(cluster: str | None, ray_address: str | None, ray_options: dict) -> bool:
    """True for cluster="ray"; ValueError for another value, or Ray options without it."""
    if cluster not in (None, "ray"):
        raise ValueError(f"cluster must be None or 'ray', got {cluster!r}")
    if cluster is None and (ray_address is not None or ray_options):
        raise ValueError(f"Ray options {sorted(ray_options) or ['ray_address']} need "
                         "cluster='ray'")
    return cluster == "ray"


def _index_meta(c, vocab_size, tokenizer, sequence_length) -> dict:
    """The header metadata of an index of corpus `c`; ValueError for a vocab_size too small."""
    max_token = int(c.tokens.max())
    if vocab_size is not None and (int(vocab_size) <= max_token):
        raise ValueError(
            f"vocab_size {vocab_size} is too small: the corpus holds token id {max_token}"
        )
    return {
        "token_dtype": np.dtype(c.tokens.dtype).str,
        "vocab_size": int(vocab_size) if vocab_size is not None else max_token + 1,
        "vocab_size_declared": vocab_size is not None,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "sequence_length": sequence_length,
    }


def _build_single(tmp: Path, c, meta: dict, progress: bool, key_batches: int) -> None:
    """One suffix array over the whole corpus, built in this process into folder `tmp`."""
    from features.index.single import build_folder

    bar = _progress(progress, 1, "index: suffix array")
    entries = write_inputs(tmp, c.tokens, c.doc_offsets)
    offsets = np.asarray(c.doc_offsets, dtype=np.int64) - int(c.doc_offsets[0])
    build_folder(str(tmp), meta, progress=bar.set_postfix_str,
                 inputs=(c.tokens, offsets, entries), key_batches=key_batches)
    bar.update(1)
    bar.close()


def _build_sharded(tmp: Path, c, meta: dict, plan, *, workers: int, use_ray: bool,
                   progress: bool, key_batches: int) -> None:
    """One shard folder per document range of `plan` under `tmp`, built by `run_builds`, and
    the sharded header."""
    folders = []
    bar = _progress(progress, len(plan), "index: writing shards")
    for k, (d0, d1) in enumerate(plan):
        sub = tmp / f"shard-{k:05d}"
        sub.mkdir()
        a, b = int(c.doc_offsets[d0]), int(c.doc_offsets[d1])
        write_inputs(sub, c.tokens[a:b], c.doc_offsets[d0 : d1 + 1])
        folders.append(str(sub))
        bar.update(1)
    bar.close()
    bar = _progress(progress, len(folders), "index: building shards")
    run_builds(folders, meta, workers=workers, use_ray=use_ray,
               on_done=lambda i, h: bar.update(1), key_batches=key_batches)
    bar.close()
    header = {
        "magic": fmt.MAGIC,
        "format_version": fmt.FORMAT_VERSION,
        "kind": "sharded",
        "shards": [Path(f).name for f in folders],
        "shard_headers": [fmt.header_sha256(f) for f in folders],
        "meta": dict(meta, n_tokens=int(c.tokens.shape[0]),
                     n_docs=int(c.doc_offsets.shape[0] - 1)),
    }
    fmt.write_header(tmp, header)
