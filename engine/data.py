"""Sample sources: where the (prompt + continuation) token rows come from.

Every source is a `SampleSource`: a random-access, read-only sequence of `n` samples of
`seq_len = prefix_len + cont_len` tokens, each with a stable int64 `sample_id`. Nothing is read
into memory up front; `read(start, stop)` fetches rows `start:stop` (positions, not ids):

    src = open_samples("pile/document", prefix_len=32, cont_len=32, checkpoint=23000)
    len(src), src.seq_len
    ids, tokens = src.read(0, 1024)          # int64 (b,), int64 (b, seq_len)
    for ids, tokens in src.batches(256): ...

Sources (picked by `open_samples` from the type / file suffix):
- `ArraySource`: a 2-D integer array, or a `.npy` file (memory-mapped); row i -> sample_id i
  (or the ids given). Rows longer than `seq_len` are cut to their first `seq_len` tokens.
- `IndexedSource`: a GPT-NeoX/Megatron `.bin`+`.idx` dataset; sample i = the first `seq_len`
  tokens of sequence i, `sample_id` = i. Select by `range=(start, stop)` and/or
  `checkpoint=c` (a Pythia step: the model has seen sequences [0, c * 1024)).
- `ParquetSource`: `.parquet` / `.arrow` / `.feather` with a list-of-integers column (auto-detected,
  or `column=`) and an optional id column (`sample_id` or `id`, or `id_column=`).
- `TextSource`: `.jsonl` (one JSON object per line, text under `text_key`) or `.txt` (the whole file
  one document) plus a tokenizer, cut into windows of `seq_len` tokens every `stride` tokens
  (default `seq_len`: non-overlapping). sample_id = the window's position over all documents.
- `SubsetSource`: rows `start:stop` of another source (what `range=`/`limit=` give for any source).

Errors (ValueError / FileNotFoundError, each naming the value and what was expected): missing
files, non-integer tokens, negative ids, rows shorter than `seq_len`, empty sources.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from engine.indexed_dataset import IndexedDataset, is_indexed_dataset
from engine.lengths import check_lengths
from engine.tokenizers import encode_text, tokenizer_fingerprint

__all__ = [
    "SampleSource",
    "ArraySource",
    "IndexedSource",
    "ParquetSource",
    "TextSource",
    "SubsetSource",
    "open_samples",
    "PYTHIA_BATCH_SEQUENCES",
]

# Pythia trained on 1024 sequences of 2049 tokens per step: checkpoint step c has seen [0, c*1024).
PYTHIA_BATCH_SEQUENCES = 1024


def _check_int_dtype(dtype, what: str) -> None:
    if np.dtype(dtype).kind not in "iu":
        raise ValueError(f"{what} must hold integer token ids, got dtype {np.dtype(dtype)}")


class SampleSource:
    """Base class: `n` samples of `seq_len` tokens with int64 sample ids.

    Subclasses implement `__len__`, `_read(start, stop) -> (ids, tokens)` and set `seq_len`
    and `description` (a short string for run metadata and manifests).
    """

    seq_len: int
    description: str = ""

    def selection(self) -> dict | None:
        """How to open these rows again (`open_samples(path, **fields)`): {"kind", "path"
        (absolute, resolved), and the selection fields (range, checkpoint, stride, column,
        ...)}; None for sources without a file (arrays in memory)."""
        return None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows start:stop -> (sample_ids int64 (b,), tokens int64 (b, seq_len))."""
        n = len(self)
        start, stop = max(0, int(start)), min(n, int(stop))
        if stop <= start:
            return np.zeros(0, np.int64), np.zeros((0, self.seq_len), np.int64)
        ids, toks = self._read(start, stop)
        toks = np.ascontiguousarray(toks, dtype=np.int64)
        if not toks.flags.writeable:  # a view of a read-only memmap: torch wants its own copy
            toks = toks.copy()
        if toks.shape != (stop - start, self.seq_len):
            raise ValueError(
                f"{self.description}: rows {start}:{stop} have shape {toks.shape}, expected "
                f"({stop - start}, {self.seq_len})"
            )
        if toks.size and toks.min() < 0:
            raise ValueError(f"{self.description}: negative token id {int(toks.min())}")
        return np.asarray(ids, dtype=np.int64), toks

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (sample_ids, tokens) batches of up to `batch_size` rows over start:stop."""
        stop = len(self) if stop is None else min(stop, len(self))
        for s in range(start, stop, batch_size):
            yield self.read(s, min(s + batch_size, stop))

    def __iter__(self):
        return self.batches(1024)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, n={len(self)}, seq_len={self.seq_len})"


class ArraySource(SampleSource):
    """A 2-D integer array (N, >= seq_len), e.g. `np.load(path, mmap_mode="r")`."""

    def __init__(self, array, seq_len: int, *, sample_ids=None, description: str = "array"):
        if hasattr(array, "detach"):  # a torch tensor
            array = array.detach().cpu().numpy()
        array = array if isinstance(array, np.ndarray) else np.asarray(array)
        if array.ndim != 2:
            raise ValueError(
                f"{description}: samples must be a 2-D array (n_samples, tokens), got shape "
                f"{array.shape}"
            )
        _check_int_dtype(array.dtype, description)
        if array.shape[1] < seq_len:
            raise ValueError(
                f"{description}: rows have {array.shape[1]} tokens, fewer than prefix_len + "
                f"cont_len = {seq_len}"
            )
        self.array, self.seq_len, self.description = array, seq_len, description
        self.path: Path | None = None  # set by open_samples for a .npy file
        if sample_ids is not None:
            sample_ids = np.asarray(sample_ids)
            if sample_ids.shape != (array.shape[0],) or sample_ids.dtype.kind not in "iu":
                raise ValueError(
                    f"sample_ids must be a 1-D integer array of length {array.shape[0]}, got "
                    f"shape {sample_ids.shape} dtype {sample_ids.dtype}"
                )
            sample_ids = sample_ids.astype(np.int64)
        self.sample_ids = sample_ids

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def selection(self) -> dict | None:
        if self.path is None or self.sample_ids is not None:
            return None
        return {"kind": "npy", "path": str(self.path)}

    def _read(self, start, stop):
        ids = (np.arange(start, stop, dtype=np.int64) if self.sample_ids is None
               else self.sample_ids[start:stop])
        return ids, self.array[start:stop, : self.seq_len]


class IndexedSource(SampleSource):
    """The first `seq_len` tokens of each sequence `first .. last-1` of an indexed dataset."""

    def __init__(self, dataset: IndexedDataset | str | os.PathLike, seq_len: int, *,
                 range: tuple[int, int] | None = None, checkpoint: int | None = None):
        ds = dataset if isinstance(dataset, IndexedDataset) else IndexedDataset(dataset)
        _check_int_dtype(ds.dtype, str(ds.bin_path))
        n = len(ds)
        first, last = 0, n
        if checkpoint is not None:
            if not isinstance(checkpoint, (int, np.integer)) or checkpoint < 0:
                raise ValueError(f"checkpoint must be a non-negative Pythia step, got {checkpoint!r}")
            last = min(last, int(checkpoint) * PYTHIA_BATCH_SEQUENCES)
        if range is not None:
            first, last = _clip_range(range, first, last, what=f"{ds.bin_path}")
        self.dataset, self.seq_len, self.first, self.last = ds, seq_len, first, last
        self.prefix = str(Path(ds.bin_path).resolve())[:-4]
        self.checkpoint = None if checkpoint is None else int(checkpoint)
        self.description = f"{self.prefix}[{first}:{last}]"
        if last > first:
            sizes = ds.sizes[first:last]
            short = np.flatnonzero(sizes < seq_len)
            if short.size:
                i = first + int(short[0])
                raise ValueError(
                    f"{ds.bin_path}: sequence {i} has {int(ds.sizes[i])} tokens, fewer than "
                    f"prefix_len + cont_len = {seq_len} ({short.size} such sequences)"
                )
        # Contiguous equal-length sequences (Pythia: every row 2049 tokens) are one strided view.
        self._stride = None
        if last > first:
            ptr = ds.pointers[first:last]
            step = ds.sizes[first] * ds.dtype.itemsize
            if (ds.sizes[first:last] == ds.sizes[first]).all() and (
                np.diff(ptr) == step).all() and ptr[0] % ds.dtype.itemsize == 0:
                self._stride = (int(ptr[0]) // ds.dtype.itemsize, int(ds.sizes[first]))

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def selection(self) -> dict:
        return {"kind": "indexed", "path": self.prefix, "range": [self.first, self.last],
                "checkpoint": self.checkpoint}

    def _read(self, start, stop):
        a, b = self.first + start, self.first + stop
        ids = np.arange(a, b, dtype=np.int64)
        if self._stride is not None:
            base, row = self._stride
            off = base + start * row
            flat = self.dataset.tokens[off : off + (stop - start) * row]
            return ids, flat.reshape(stop - start, row)[:, : self.seq_len]
        return ids, np.stack([self.dataset.get(i, 0, self.seq_len) for i in range(a, b)])


def _clip_range(rng, lo: int, hi: int, *, what: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in rng)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"range must be (start, stop) integers, got {rng!r}") from exc
    if start < 0 or stop < start:
        raise ValueError(f"range must satisfy 0 <= start <= stop, got {rng!r}")
    return min(hi, lo + start), min(hi, lo + stop)


class ParquetSource(SampleSource):
    """Token lists in a parquet or arrow/feather file; read row group by row group."""

    def __init__(self, path, seq_len: int, *, column: str | None = None,
                 id_column: str | None = None):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.seq_len = Path(path).resolve(), seq_len
        self.description = str(self.path)
        if self.path.suffix == ".parquet":
            self._pf = pq.ParquetFile(self.path)
            schema = self._pf.schema_arrow
            rg = [self._pf.metadata.row_group(i).num_rows for i in range(self._pf.num_row_groups)]
        else:
            self._table = pa.ipc.open_file(pa.memory_map(str(self.path))).read_all()
            self._pf = None
            schema = self._table.schema
            rg = [self._table.num_rows]
        lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
                 or pa.types.is_fixed_size_list(f.type)]
        if column is None:
            for cand in ("tokens", "input_ids", "token_ids"):
                if cand in lists:
                    column = cand
                    break
            else:
                if len(lists) != 1:
                    raise ValueError(
                        f"{path}: cannot tell which column holds the tokens (list columns: "
                        f"{lists}); pass column= (memtax score: --column NAME)"
                    )
                column = lists[0]
        if column not in schema.names:
            raise ValueError(f"{path}: no column {column!r}; columns: {schema.names}")
        if column not in lists or not pa.types.is_integer(schema.field(column).type.value_type):
            raise ValueError(
                f"{path}: column {column!r} must be a list of integers, got "
                f"{schema.field(column).type}"
            )
        if id_column is None:
            id_column = next((c for c in ("sample_id", "id") if c in schema.names), None)
        elif id_column not in schema.names:
            raise ValueError(f"{path}: no id column {id_column!r}; columns: {schema.names}")
        if id_column is not None and not pa.types.is_integer(schema.field(id_column).type):
            raise ValueError(
                f"{path}: id column {id_column!r} must be integers, got "
                f"{schema.field(id_column).type}"
            )
        self.column, self.id_column = column, id_column
        self._starts = np.concatenate([[0], np.cumsum(rg)]).astype(np.int64)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def selection(self) -> dict:
        return {"kind": "parquet", "path": str(self.path), "column": self.column,
                "id_column": self.id_column}

    def _group(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow as pa

        if self._cache is not None and self._cache[0] == g:
            return self._cache[1], self._cache[2]
        cols = [self.column] + ([self.id_column] if self.id_column else [])
        if self._pf is not None:
            t = self._pf.read_row_group(g, columns=cols)
        else:
            t = self._table.select(cols)
        col = t.column(self.column).combine_chunks()
        if isinstance(col, pa.ChunkedArray):  # empty tables
            col = pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
        if col.null_count:
            raise ValueError(f"{self.path}: column {self.column!r} has null rows")
        lens = np.diff(np.asarray(col.offsets)) if not hasattr(col.type, "list_size") else (
            np.full(len(col), col.type.list_size))
        short = np.flatnonzero(lens < self.seq_len)
        if short.size:
            row = int(self._starts[g] + short[0])
            raise ValueError(
                f"{self.path}: row {row} has {int(lens[short[0]])} tokens, fewer than "
                f"prefix_len + cont_len = {self.seq_len}"
            )
        flat = np.asarray(col.flatten())
        if hasattr(col.type, "list_size"):
            toks = flat.reshape(len(col), -1)[:, : self.seq_len]
        else:
            # `flatten()` starts at offsets[0] (sliced arrays), so offsets are rebased on it.
            offsets = np.asarray(col.offsets)
            offs = offsets[:-1] - offsets[0]
            toks = flat[offs[:, None] + np.arange(self.seq_len)[None, :]]
        if self.id_column:
            ids = np.asarray(t.column(self.id_column).combine_chunks().to_numpy(
                zero_copy_only=False), dtype=np.int64)
        else:
            ids = np.arange(self._starts[g], self._starts[g + 1], dtype=np.int64)
        self._cache = (g, ids, toks)
        return ids, toks

    def _read(self, start, stop):
        ids_out, tok_out = [], []
        g = int(np.searchsorted(self._starts, start, side="right") - 1)
        pos = start
        while pos < stop:
            ids, toks = self._group(g)
            lo = pos - int(self._starts[g])
            hi = min(stop, int(self._starts[g + 1])) - int(self._starts[g])
            ids_out.append(ids[lo:hi])
            tok_out.append(toks[lo:hi])
            pos = int(self._starts[g]) + hi
            g += 1
        return np.concatenate(ids_out), np.concatenate(tok_out)


class TextSource(SampleSource):
    """Windows of `seq_len` tokens every `stride` tokens over tokenized documents.

    One pass over the file on open tokenizes each document to count its windows and records its
    byte offset (memory: two small arrays per document); reads re-tokenize only the documents
    they touch (the last one is cached). `.txt` files are one document, read whole.
    """

    def __init__(self, path, seq_len: int, tokenizer, *, stride: int | None = None,
                 text_key: str = "text"):
        if tokenizer is None:
            raise ValueError(f"{path}: text sources need a tokenizer (tokenizer=...)")
        stride = seq_len if stride is None else stride
        if not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.path, self.seq_len, self.stride = Path(path).resolve(), seq_len, int(stride)
        self.text_key = text_key
        self.tokenizer = tokenizer
        self.description = f"{self.path}[stride={self.stride}]"
        self._jsonl = self.path.suffix == ".jsonl"
        offsets, counts = [], []
        with open(self.path, "rb") as f:
            if self._jsonl:
                pos = 0
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        n = self._windows(len(self._encode(self._text(line, lineno))))
                        if n:
                            offsets.append(pos)
                            counts.append(n)
                    pos += len(line)
            else:
                n = self._windows(len(self._encode(f.read().decode("utf-8"))))
                if n:
                    offsets.append(0)
                    counts.append(n)
        self._offsets = offsets
        self._cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).tolist()
        self._doc_cache: tuple[int, np.ndarray] | None = None

    def _text(self, line: bytes, lineno: int) -> str:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get(self.text_key), str):
            raise ValueError(
                f"{self.path}:{lineno}: expected an object with a string field {self.text_key!r}"
            )
        return obj[self.text_key]

    def _encode(self, text: str) -> np.ndarray:
        return np.asarray(encode_text(self.tokenizer, text), dtype=np.int64)

    def _windows(self, n_tokens: int) -> int:
        return 0 if n_tokens < self.seq_len else (n_tokens - self.seq_len) // self.stride + 1

    def __len__(self) -> int:
        return int(self._cum[-1])

    def selection(self) -> dict:
        fingerprint = (tokenizer_fingerprint(self.tokenizer)
                       if hasattr(self.tokenizer, "get_vocab") else None)
        return {"kind": "text", "path": str(self.path), "stride": self.stride,
                "text_key": self.text_key, "tokenizer_sha256": fingerprint}

    def _doc(self, d: int) -> np.ndarray:
        if self._doc_cache is not None and self._doc_cache[0] == d:
            return self._doc_cache[1]
        with open(self.path, "rb") as f:
            f.seek(self._offsets[d])
            text = self._text(f.readline(), -1) if self._jsonl else f.read().decode("utf-8")
        toks = self._encode(text)
        self._doc_cache = (d, toks)
        return toks

    def _read(self, start, stop):
        rows = []
        for w in range(start, stop):
            d = bisect.bisect_right(self._cum, w) - 1
            k = w - self._cum[d]
            rows.append(self._doc(d)[k * self.stride : k * self.stride + self.seq_len])
        return np.arange(start, stop, dtype=np.int64), np.stack(rows)


class SubsetSource(SampleSource):
    """Rows `start:stop` of another source, same ids and tokens."""

    def __init__(self, base: SampleSource, start: int, stop: int):
        self.base, self.start, self.stop = base, start, max(start, stop)
        self.seq_len = base.seq_len
        self.description = f"{base.description}[{start}:{stop}]"

    def __len__(self) -> int:
        return self.stop - self.start

    def selection(self) -> dict | None:
        sel = self.base.selection()
        if sel is None:
            return None
        lo = int(sel.get("range", [0])[0])
        return {**sel, "range": [lo + self.start, lo + self.stop]}

    def _read(self, start, stop):
        return self.base.read(self.start + start, self.start + stop)


class _TruncatedSource(SampleSource):
    """A source whose rows are longer than needed, cut to the first `seq_len` tokens."""

    def __init__(self, base: SampleSource, seq_len: int):
        self.base, self.seq_len = base, seq_len
        self.description = base.description

    def __len__(self) -> int:
        return len(self.base)

    def selection(self) -> dict | None:
        return self.base.selection()

    def _read(self, start, stop):
        ids, toks = self.base.read(start, stop)
        return ids, toks[:, : self.seq_len]


def _load_npy(path: Path) -> np.ndarray:
    """A .npy file, memory-mapped; ValueError naming the file for anything numpy cannot map
    (a truncated file, pickled objects, not a .npy file at all)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        text = str(exc)
        if "mmap length" in text or "larger than" in text:
            why = "the file is shorter than its header says (truncated?)"
        elif "pickle" in text.lower():
            why = "it is not a numpy array file (numpy.save) or holds Python objects"
        else:
            why = text
        raise ValueError(f"cannot read {str(path)!r} as a .npy token array: {why}; expected "
                         "a 2-D integer array written by numpy.save") from None
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r} as a .npy token array: {exc}") from None


def open_samples(
    src,
    *,
    prefix_len: int = 32,
    cont_len: int = 32,
    tokenizer=None,
    range: tuple[int, int] | None = None,
    limit: int | None = None,
    checkpoint: int | None = None,
    stride: int | None = None,
    column: str | None = None,
    id_column: str | None = None,
    text_key: str = "text",
    sample_ids=None,
) -> SampleSource:
    """Open `src` as a `SampleSource` of `prefix_len + cont_len`-token samples.

    src: a `SampleSource`, a 2-D integer array / tensor, or a path: `.npy`, an indexed dataset
        (`PREFIX`, `PREFIX.bin` or `PREFIX.idx`), `.parquet` / `.arrow` / `.feather`, `.jsonl` /
        `.txt` (needs `tokenizer`).
    range: (start, stop) rows to keep (sequence indices for indexed datasets, positions
        otherwise); limit: keep at most this many rows after `range`.
    checkpoint: indexed datasets only: keep sequences a Pythia checkpoint step has seen.
    Raises ValueError for an empty result, non-integer tokens or rows shorter than needed.
    """
    seq_len = check_lengths(prefix_len, cont_len)
    if checkpoint is not None and not (isinstance(src, (str, os.PathLike)) and is_indexed_dataset(src)):
        raise ValueError("checkpoint= selects Pythia training sequences: it needs a .bin/.idx source")
    if isinstance(src, SampleSource):
        if src.seq_len < seq_len:
            raise ValueError(
                f"{src.description}: samples have {src.seq_len} tokens, fewer than prefix_len + "
                f"cont_len = {seq_len}"
            )
        source = src if src.seq_len == seq_len else _TruncatedSource(src, seq_len)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        suffix = path.suffix.lower()
        if is_indexed_dataset(path):
            source = IndexedSource(path, seq_len, range=range, checkpoint=checkpoint)
            range = None  # applied to sequence indices already
        elif not path.exists():
            raise FileNotFoundError(
                f"sample source {str(path)!r} not found; expected a .npy, .bin/.idx, .parquet, "
                ".arrow, .jsonl or .txt file"
            )
        elif suffix == ".npy":
            path = path.resolve()
            source = ArraySource(_load_npy(path), seq_len, sample_ids=sample_ids,
                                 description=str(path))
            source.path = path
        elif suffix in (".parquet", ".arrow", ".feather", ".ipc"):
            source = ParquetSource(path, seq_len, column=column, id_column=id_column)
        elif suffix in (".jsonl", ".txt"):
            source = TextSource(path, seq_len, tokenizer, stride=stride, text_key=text_key)
        else:
            raise ValueError(
                f"unsupported sample source {str(path)!r}; expected .npy, .bin/.idx, .parquet, "
                ".arrow, .jsonl or .txt"
            )
    else:
        try:
            source = ArraySource(src, seq_len, sample_ids=sample_ids)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and "array" in str(exc):
                raise
            raise ValueError(
                f"samples must be a 2-D integer array, a path or a SampleSource, got "
                f"{type(src).__name__}"
            ) from exc
    if range is not None:
        start, stop = _clip_range(range, 0, len(source), what=source.description)
        source = SubsetSource(source, start, stop)
    if limit is not None:
        if not isinstance(limit, (int, np.integer)) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        source = SubsetSource(source, 0, min(int(limit), len(source)))
    if len(source) == 0:
        raise ValueError(
            f"sample source {source.description!r} is empty: no samples of prefix_len + "
            f"cont_len = {seq_len} tokens"
        )
    return source
