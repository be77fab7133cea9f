"""GPT-NeoX / Megatron `MMIDIDX` indexed datasets (`.bin` + `.idx`): a memory-mapped reader and a
small writer.

This is the format Pythia's pre-tokenized, pre-shuffled Pile is distributed in: `PREFIX.bin` holds
every sequence's tokens back to back; `PREFIX.idx` says where each one starts. Layout of `.idx`
(little endian):

    b"MMIDIDX\\x00\\x00"   9-byte magic
    uint64  version        always 1
    uint8   dtype code     1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32,
                           8 uint16 (token files use the integer codes; Pythia uses 8)
    uint64  n              number of sequences
    uint64  n_doc          number of document boundaries (document index length)
    int32   sizes[n]       tokens per sequence
    int64   pointers[n]    byte offset of each sequence in `.bin`
    int64   doc_idx[n_doc] sequence index where each document starts (0, ..., n)

Nothing is read into memory: `sizes`, `pointers` and `doc_idx` are views of one memmap of the
`.idx` file, `tokens` is a flat memmap of the `.bin` file, and `ds[i]` is a view into it.

    ds = IndexedDataset("pile/document")        # or "pile/document.bin" / ".idx"
    len(ds), ds.sizes, ds.pointers, ds.dtype
    ds[i]                                       # np.ndarray (sizes[i],), a memmap view
    ds.get(i, offset=0, length=64)              # part of a sequence
    write_indexed_dataset("out/doc", [np.arange(5), np.arange(3)], dtype=np.uint16)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, n, n_doc

# Megatron-LM / GPT-NeoX dtype codes (6 and 7 are floats: valid in the format, never tokens).
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}
CODE_OF_DTYPE = {dt: code for code, dt in DTYPE_CODES.items()}

__all__ = [
    "IndexedDataset",
    "write_indexed_dataset",
    "dataset_paths",
    "is_indexed_dataset",
    "MAGIC",
    "DTYPE_CODES",
]


def dataset_paths(path_prefix: str | os.PathLike) -> tuple[Path, Path]:
    """`PREFIX.bin`, `PREFIX.idx` for a prefix, or for either file's own path."""
    p = str(path_prefix)
    if p.endswith(".bin") or p.endswith(".idx"):
        p = p[:-4]
    return Path(p + ".bin"), Path(p + ".idx")


def is_indexed_dataset(path: str | os.PathLike) -> bool:
    """True if `path` names an indexed dataset (a `.bin`/`.idx` file or a prefix with both)."""
    p = str(path)
    if p.endswith(".bin") or p.endswith(".idx"):
        return True
    b, i = dataset_paths(p)
    return b.exists() and i.exists()


class IndexedDataset:
    """Memory-mapped reader of an `MMIDIDX` dataset; validates the files on open.

    Raises FileNotFoundError if either file is missing and ValueError for a foreign file (bad
    magic), an unknown version or dtype code, a truncated `.idx`, a `.bin` shorter than the
    index says, or pointers inconsistent with the sizes.
    """

    def __init__(self, path_prefix: str | os.PathLike):
        self.bin_path, self.idx_path = dataset_paths(path_prefix)
        for p in (self.idx_path, self.bin_path):
            if not p.is_file():
                raise FileNotFoundError(
                    f"indexed dataset file {str(p)!r} not found (expected PREFIX.bin and "
                    f"PREFIX.idx for prefix {str(path_prefix)!r})"
                )
        idx_bytes = self.idx_path.stat().st_size
        with open(self.idx_path, "rb") as f:
            head = f.read(_HEADER.size)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise ValueError(
                f"{str(self.idx_path)!r} is not an MMIDIDX index: expected magic {MAGIC!r}, "
                f"found {head[: len(MAGIC)]!r}"
            )
        if len(head) < _HEADER.size:
            raise ValueError(
                f"{str(self.idx_path)!r} is truncated: header needs {_HEADER.size} bytes, "
                f"file has {idx_bytes}"
            )
        _, version, code, n, n_doc = _HEADER.unpack(head)
        if version != VERSION:
            raise ValueError(
                f"{str(self.idx_path)!r}: unsupported MMIDIDX version {version}, expected {VERSION}"
            )
        if code not in DTYPE_CODES:
            raise ValueError(
                f"{str(self.idx_path)!r}: unknown dtype code {code}, expected one of "
                f"{sorted(DTYPE_CODES)}"
            )
        self.dtype: np.dtype = DTYPE_CODES[code]
        expected = _HEADER.size + 4 * n + 8 * n + 8 * n_doc
        if idx_bytes < expected:
            raise ValueError(
                f"{str(self.idx_path)!r} is truncated: {n} sequences and {n_doc} document "
                f"entries need {expected} bytes, file has {idx_bytes}"
            )
        if idx_bytes > expected:
            raise ValueError(
                f"{str(self.idx_path)!r} has {idx_bytes - expected} trailing bytes after "
                f"{n} sequences and {n_doc} document entries: not a valid MMIDIDX index"
            )
        self._idx_map = np.memmap(self.idx_path, mode="r", dtype=np.uint8)
        off = _HEADER.size
        self.sizes: np.ndarray = np.frombuffer(self._idx_map, np.int32, n, off)
        off += 4 * n
        self.pointers: np.ndarray = np.frombuffer(self._idx_map, np.int64, n, off)
        off += 8 * n
        self.doc_idx: np.ndarray = np.frombuffer(self._idx_map, np.int64, n_doc, off)

        bin_bytes = self.bin_path.stat().st_size
        item = self.dtype.itemsize
        if bin_bytes % item:
            raise ValueError(
                f"{str(self.bin_path)!r} has {bin_bytes} bytes, not a multiple of the "
                f"{self.dtype} item size {item}"
            )
        if n:
            if (self.sizes < 0).any():
                raise ValueError(f"{str(self.idx_path)!r}: negative sequence sizes")
            if (self.pointers < 0).any() or (self.pointers % item).any():
                raise ValueError(
                    f"{str(self.idx_path)!r}: pointers must be non-negative multiples of {item}"
                )
            end = int((self.pointers + self.sizes.astype(np.int64) * item).max())
            if end > bin_bytes:
                raise ValueError(
                    f"{str(self.bin_path)!r} is truncated: the index needs {end} bytes of "
                    f"{self.dtype} tokens, file has {bin_bytes}"
                )
        self.n_tokens = bin_bytes // item
        # np.memmap refuses empty files; an empty dataset gets an empty array instead.
        self.tokens: np.ndarray = (
            np.memmap(self.bin_path, mode="r", dtype=self.dtype)
            if bin_bytes
            else np.zeros(0, dtype=self.dtype)
        )

    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    def _check(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sequence index {i} out of range for a dataset of {n} sequences")
        return i

    def __getitem__(self, i: int) -> np.ndarray:
        """Sequence i as a read-only view, shape (sizes[i],)."""
        i = self._check(i)
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens `offset : offset+length` of sequence i (a view, no copy)."""
        i = self._check(i)
        size = int(self.sizes[i])
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise IndexError(
                f"slice [{offset}, {offset + length}) out of range for sequence {i} of {size} tokens"
            )
        start = int(self.pointers[i]) // self.dtype.itemsize + offset
        return self.tokens[start : start + length]

    def __iter__(self):
        for i in range(len(self)):
            yield self.get(i)

    def __repr__(self) -> str:
        return (
            f"IndexedDataset({str(self.bin_path)[:-4]!r}, sequences={len(self)}, "
            f"tokens={self.n_tokens}, dtype={self.dtype})"
        )


def write_indexed_dataset(
    path_prefix: str | os.PathLike,
    sequences: Iterable[np.ndarray] | np.ndarray,
    dtype: np.dtype | type = np.uint16,
    *,
    doc_idx: Iterable[int] | None = None,
) -> tuple[Path, Path]:
    """Write `PREFIX.bin` / `PREFIX.idx` from an iterable of 1-D integer arrays (or a 2-D array).

    Streams the sequences (memory ~ one sequence). Each document is one sequence unless
    `doc_idx` (increasing sequence indices starting with 0, ending with n) says otherwise. Files
    are written under temporary names and renamed at the end: a failure leaves nothing behind.
    Raises ValueError for values that do not fit `dtype`, non-integer input or a float dtype.
    """
    dtype = np.dtype(dtype)
    if dtype not in CODE_OF_DTYPE or dtype.kind not in "iu":
        raise ValueError(
            f"dtype must be an integer dtype among "
            f"{[str(d) for d in CODE_OF_DTYPE if d.kind in 'iu']}, got {dtype}"
        )
    bin_path, idx_path = dataset_paths(path_prefix)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_bin = bin_path.with_name(bin_path.name + f".tmp{os.getpid()}")
    tmp_idx = idx_path.with_name(idx_path.name + f".tmp{os.getpid()}")
    info = np.iinfo(dtype)
    sizes: list[int] = []
    try:
        with open(tmp_bin, "wb") as fb:
            for k, seq in enumerate(sequences):
                arr = np.asarray(seq)
                if arr.ndim != 1:
                    raise ValueError(f"sequence {k} must be 1-D, got shape {arr.shape}")
                if arr.size and arr.dtype.kind not in "iu":
                    raise ValueError(f"sequence {k} must hold integers, got dtype {arr.dtype}")
                if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
                    raise ValueError(
                        f"sequence {k} has values in [{int(arr.min())}, {int(arr.max())}], "
                        f"outside {dtype}'s range [{info.min}, {info.max}]"
                    )
                fb.write(arr.astype(dtype, copy=False).tobytes())
                sizes.append(arr.size)
        n = len(sizes)
        sizes_a = np.asarray(sizes, dtype=np.int32)
        pointers = np.zeros(n, dtype=np.int64)
        if n > 1:
            pointers[1:] = np.cumsum(sizes_a[:-1], dtype=np.int64) * dtype.itemsize
        docs = np.arange(n + 1, dtype=np.int64) if doc_idx is None else np.asarray(
            list(doc_idx), dtype=np.int64
        )
        if doc_idx is not None and (
            docs.size == 0 or docs[0] != 0 or docs[-1] != n or (np.diff(docs) < 0).any()
        ):
            raise ValueError(
                f"doc_idx must be non-decreasing sequence indices from 0 to {n}, got {docs[:8]}..."
            )
        with open(tmp_idx, "wb") as fi:
            fi.write(_HEADER.pack(MAGIC, VERSION, CODE_OF_DTYPE[dtype], n, docs.size))
            fi.write(sizes_a.tobytes())
            fi.write(pointers.tobytes())
            fi.write(docs.tobytes())
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_idx, idx_path)
    finally:
        for p in (tmp_bin, tmp_idx):
            if p.exists():
                p.unlink()
    return bin_path, idx_path
