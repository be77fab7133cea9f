"""The score output folder: parquet shards, a manifest, resume and refusal of foreign runs.

Layout of `out/`:

    manifest.json          {"format": "memtax-scores", "version": 1, "run": {...}, "complete": bool,
                            "shards": [{"file", "start", "stop", "rows"}, ...]}
    part-000000.parquet    rows [0, S) of the (selected) samples, S = run["shard_size"]
    part-000001.parquet    rows [S, 2S) ...

Each shard is written to a hidden temporary name and renamed when complete, so a shard file
that exists is whole; the manifest is written the same way. A rerun of the same run (same
`run` fingerprint: model, revision, dtype, lengths, mode, EOS masking, source, sample count,
shard size) skips the shards that exist; a different run is refused instead of mixing rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
FORMAT = "memtax-scores"
VERSION = 1

__all__ = ["ScoreFolder", "shard_name", "read_scores", "write_bytes_atomic", "write_parquet_atomic"]


def shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def _atomic_write(path: Path, write) -> None:
    """Run `write(tmp)` on a hidden temporary name beside `path`, then rename it into place:
    readers never see a partial file, and a failed write leaves nothing behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


class ScoreFolder:
    """One run's output folder. `prepare()` creates or validates it (call on one rank);
    `open_existing()` validates it on the others."""

    def __init__(self, path: str | os.PathLike, run: dict):
        self.path = Path(path)
        self.run = {k: run[k] for k in sorted(run)}
        self.created_folder = False
        self.created_manifest = False
        self.written: list[Path] = []

    # -- setup -------------------------------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        p = self.path / MANIFEST
        if not p.exists():
            return None
        try:
            man = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: not a memtax manifest ({exc})") from exc
        if not isinstance(man, dict) or man.get("format") != FORMAT:
            raise ValueError(f"{p}: not a memtax score manifest (format {man.get('format')!r})")
        return man

    def _check_same_run(self, man: dict) -> None:
        theirs = man.get("run", {})
        diffs = [
            f"{k} {theirs.get(k)!r} != {self.run.get(k)!r}"
            for k in sorted(set(theirs) | set(self.run))
            if theirs.get(k) != self.run.get(k)
        ]
        if diffs:
            raise ValueError(
                f"output folder {str(self.path)!r} holds shards of another run ("
                + "; ".join(diffs[:4])
                + "); choose an empty --out folder or delete this one"
            )

    def prepare(self, *, resume: bool) -> None:
        """Create the folder and manifest, or check an existing one belongs to this run.

        resume=False on the same run deletes its old shards first; a foreign run, or parquet
        files without a manifest, raises ValueError and touches nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"output path {str(self.path)!r} exists and is not a folder")
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self.created_folder = True
        man = self._read_manifest()
        if man is None:
            stray = sorted(p.name for p in self.path.glob("*.parquet"))
            if stray:
                raise ValueError(
                    f"output folder {str(self.path)!r} holds parquet files without a memtax "
                    f"manifest ({stray[:3]}); choose an empty --out folder"
                )
        else:
            self._check_same_run(man)
            if not resume:
                for p in self.path.glob("part-*.parquet"):
                    p.unlink()
        self._write_manifest(complete=False, shards=[])
        if man is None:
            self.created_manifest = True

    def open_existing(self) -> None:
        man = self._read_manifest()
        if man is None:
            raise ValueError(f"output folder {str(self.path)!r} has no manifest")
        self._check_same_run(man)

    # -- shards ------------------------------------------------------------------------------
    def has_shard(self, k: int) -> bool:
        return (self.path / shard_name(k)).is_file()

    def write_shard(self, k: int, table: pa.Table) -> Path:
        path = self.path / shard_name(k)
        write_parquet_atomic(table, path)
        self.written.append(path)
        return path

    def finish(self, n_shards: int, shard_bounds) -> None:
        shards = []
        for k in range(n_shards):
            start, stop = shard_bounds(k)
            shards.append({"file": shard_name(k), "start": start, "stop": stop,
                           "rows": stop - start})
        self._write_manifest(complete=True, shards=shards)

    def _write_manifest(self, *, complete: bool, shards: list) -> None:
        man = {"format": FORMAT, "version": VERSION, "run": self.run, "complete": complete,
               "shards": shards}
        write_bytes_atomic(self.path / MANIFEST, json.dumps(man, indent=1).encode())

    def cleanup_after_error(self) -> None:
        """Remove what this call wrote (no partial output after a user error)."""
        if self.created_folder:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for p in self.written:
            if p.exists():
                p.unlink()
        if self.created_manifest and (self.path / MANIFEST).exists():
            (self.path / MANIFEST).unlink()

    def read(self, n_shards: int) -> pa.Table:
        missing = [shard_name(k) for k in range(n_shards) if not self.has_shard(k)]
        if missing:
            raise ValueError(f"output folder {str(self.path)!r} lacks shards {missing[:5]}")
        return read_scores(self.path, n_shards=n_shards)


def read_scores(path: str | os.PathLike, *, n_shards: int | None = None) -> pa.Table:
    """All shards of a score folder, in sample order, with the run metadata on the schema."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a memtax score folder (no {MANIFEST})")
    if n_shards is None:
        man = json.loads((path / MANIFEST).read_text())
        if not man.get("complete"):
            raise ValueError(f"score folder {str(path)!r} is incomplete; rerun to resume it")
        files = [path / s["file"] for s in man["shards"]]
    else:
        files = [path / shard_name(k) for k in range(n_shards)]
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({})
