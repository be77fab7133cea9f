"""On-disk format of a corpus index: plain little-endian arrays plus a small JSON header.

A single index is a folder:

    index.json          {"magic": "memtax-corpus-index", "format_version": 1, "kind": "single",
                         "arrays": {name: {"file", "dtype", "shape", "crc32"}}, "meta": {...}}
    tokens.bin          (N,) uint16 | uint32     the corpus, documents back to back
    sa.bin              (N,) uint32 | uint64     suffix array (narrowest width that fits N)
    doc_offsets.bin     (D+1,) int64             document starts, then N
    unigram_values.bin  (V',) token dtype        distinct token values, increasing
    unigram_counts.bin  (V',) int64              their counts

A sharded index is a folder with an `index.json` of kind "sharded" listing shard folders, each a
single index. Arrays are memory-mapped on open; sizes are checked against the header and, unless
`verify=False`, every array's CRC-32 too. Anything else (no header, another magic, a newer
version, a wrong size or checksum) is refused with a ValueError/FileNotFoundError.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np

MAGIC = "memtax-corpus-index"
FORMAT_VERSION = 1
HEADER = "index.json"
_CHUNK = 1 << 24

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER",
    "crc32_file",
    "write_array",
    "read_header",
    "write_header",
    "open_array",
    "atomic_dir",
]


def crc32_file(path: str | os.PathLike) -> int:
    """CRC-32 of a file's bytes, read in 16 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(_CHUNK)
            if not buf:
                return crc
            crc = zlib.crc32(buf, crc)


def write_array(folder: Path, name: str, arr: np.ndarray) -> dict:
    """Write `arr` little-endian to folder/name.bin; return its header entry."""
    arr = np.ascontiguousarray(arr)
    dtype = arr.dtype.newbyteorder("<")
    arr = arr.astype(dtype, copy=False)
    path = folder / f"{name}.bin"
    crc = 0
    with open(path, "wb") as f:
        flat = arr.reshape(-1)
        step = max(1, _CHUNK // max(1, arr.itemsize))
        for s in range(0, flat.shape[0], step):
            buf = memoryview(flat[s : s + step]).cast("B")  # no copy
            crc = zlib.crc32(buf, crc)
            f.write(buf)
    return {"file": path.name, "dtype": dtype.str, "shape": list(arr.shape), "crc32": crc}


def array_entry(folder: Path, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> dict:
    """Header entry for an array already written to folder/name.bin (checksums the file)."""
    path = folder / f"{name}.bin"
    return {
        "file": path.name,
        "dtype": np.dtype(dtype).newbyteorder("<").str,
        "shape": list(shape),
        "crc32": crc32_file(path),
    }


def write_header(folder: Path, header: dict) -> None:
    tmp = folder / (HEADER + ".tmp")
    tmp.write_text(json.dumps(header, indent=1, sort_keys=True))
    os.replace(tmp, folder / HEADER)


def read_header(folder: str | os.PathLike) -> dict:
    """Parse and check folder/index.json: magic, version, kind."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"corpus index {str(folder)!r} not found")
    path = folder / HEADER
    if not path.is_file():
        raise ValueError(
            f"{str(folder)!r} is not a memtax corpus index: no {HEADER} header found "
            f"(expected a folder written by CorpusIndex.build)"
        )
    raw = path.read_bytes()
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is corrupt or not a corpus-index header: {exc}") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        found = header.get("magic") if isinstance(header, dict) else type(header).__name__
        raise ValueError(
            f"{str(path)!r} is not a memtax corpus index: magic {found!r}, expected {MAGIC!r}"
        )
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r}: unsupported corpus-index format version {version!r}, this memtax "
            f"reads version {FORMAT_VERSION}"
        )
    if header.get("kind") not in ("single", "sharded"):
        raise ValueError(f"{str(path)!r}: unknown index kind {header.get('kind')!r}")
    return header


def open_array(folder: Path, entry: dict, *, verify: bool) -> np.ndarray:
    """Memory-map one array of the header; refuse a missing, truncated, oversized or corrupt
    file."""
    try:
        path = folder / entry["file"]
        dtype = np.dtype(entry["dtype"])
        shape = tuple(int(s) for s in entry["shape"])
        crc = int(entry["crc32"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"corpus index {str(folder)!r}: malformed array entry {entry!r}") from exc
    if not path.is_file():
        raise FileNotFoundError(f"corpus index {str(folder)!r} is missing its array {str(path)!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says"
        raise ValueError(
            f"corpus index array {str(path)!r} is {what}: {size} bytes, expected {expected} "
            f"({shape} {dtype})"
        )
    if verify and crc32_file(path) != crc:
        raise ValueError(
            f"corpus index array {str(path)!r} is corrupt: CRC-32 mismatch (header {crc:#010x})"
        )
    if expected == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, mode="r", dtype=dtype, shape=shape)


class atomic_dir:
    """Context manager: yields a temporary sibling folder that is renamed to `path` on success
    and removed on failure, so that no partial index is ever left under `path`."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{str(self.path)!r} already exists; pass overwrite=True (CLI: --overwrite) to "
                f"replace it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
