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
single index, and the sha256 of each shard's `index.json` (`shard_headers`): a shard copied over
another, or rebuilt, is refused. Every header carries the sha256 of its own contents
(`checksum`), so a hand-edited header is refused too; its values are validated (types, ranges,
and their consistency with the arrays) before use. Arrays are memory-mapped on open; sizes are
checked against the header and, unless `verify=False`, every array's CRC-32 too. Anything else
(no header, another magic, a newer version, a wrong size or checksum) is refused with a
ValueError/FileNotFoundError. Headers written before `checksum`/`shard_headers` existed are
validated but cannot be checked for edits.
"""

from __future__ import annotations

import hashlib
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


def _contents_sha256(header: dict) -> str:
    body = {k: v for k, v in header.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def header_sha256(folder: str | os.PathLike) -> str:
    """sha256 of a folder's index.json file (what a sharded header records per shard)."""
    return hashlib.sha256((Path(folder) / HEADER).read_bytes()).hexdigest()


def write_header(folder: Path, header: dict) -> None:
    header = dict(header, checksum=_contents_sha256(header))
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
    if "checksum" in header and header["checksum"] != _contents_sha256(header):
        raise ValueError(f"{str(path)!r} was edited after the index was built: its checksum does "
                         "not match its contents; rebuild the index")
    validate_header(header, path)
    return header


def _bad(path, what: str, value, expected: str) -> ValueError:
    return ValueError(f"{str(path)!r}: {what} is {value!r}, expected {expected}")


def _int(value, path, what: str, *, low: int = 0, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _bad(path, what, value, f"an integer >= {low}" + (" or null" if optional else ""))


def validate_header(header: dict, path) -> None:
    """The header's values, each of the right type and range, and consistent with each other
    (ValueError naming the value and what was expected)."""
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise _bad(path, "meta", meta, "an object")
    if meta.get("token_dtype") not in ("<u2", "<u4"):
        raise _bad(path, "meta.token_dtype", meta.get("token_dtype"), "'<u2' or '<u4'")
    _int(meta.get("vocab_size"), path, "meta.vocab_size", low=1)
    if not isinstance(meta.get("vocab_size_declared", False), bool):
        raise _bad(path, "meta.vocab_size_declared", meta["vocab_size_declared"], "true or false")
    if not isinstance(meta.get("tokenizer"), (str, type(None))):
        raise _bad(path, "meta.tokenizer", meta["tokenizer"], "a string or null")
    _int(meta.get("sequence_length"), path, "meta.sequence_length", low=1, optional=True)
    for key in ("n_tokens", "n_docs"):
        _int(meta.get(key), path, f"meta.{key}", optional=header["kind"] == "single")
    if header["kind"] == "sharded":
        _validate_sharded(header, path)
        return
    _int(meta.get("max_token"), path, "meta.max_token", optional=True)
    if meta.get("max_token") is not None and meta["max_token"] >= meta["vocab_size"]:
        raise _bad(path, "meta.max_token", meta["max_token"],
                   f"below meta.vocab_size = {meta['vocab_size']}")
    arrays = header.get("arrays")
    if not isinstance(arrays, dict) or not all(isinstance(e, dict) for e in arrays.values()):
        raise _bad(path, "arrays", arrays, "an object of array entries")
    for name, entry in arrays.items():
        file = entry.get("file")
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise _bad(path, f"arrays.{name}.file", file, "a file name inside the index folder")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _bad(path, f"arrays.{name}.shape", shape, "a list of non-negative integers")
    tokens = arrays.get("tokens", {})
    if "dtype" in tokens and tokens["dtype"] != meta["token_dtype"]:
        raise _bad(path, "arrays.tokens.dtype", tokens["dtype"],
                   f"meta.token_dtype = {meta['token_dtype']!r}")
    for key, arr, extra in (("n_tokens", "tokens", 0), ("n_docs", "doc_offsets", 1)):
        shape = arrays.get(arr, {}).get("shape")
        if meta.get(key) is not None and shape and meta[key] + extra != shape[0]:
            raise _bad(path, f"meta.{key}", meta[key], f"{shape[0] - extra} (the {arr} array)")


def _validate_sharded(header: dict, path) -> None:
    names = header.get("shards")
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and n and Path(n).name == n and n not in (".", "..") for n in names):
        raise _bad(path, "shards", names, "a non-empty list of shard folder names")
    digests = header.get("shard_headers")
    if digests is not None and (not isinstance(digests, list) or len(digests) != len(names)):
        raise _bad(path, "shard_headers", digests, f"one sha256 per shard ({len(names)})")


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
