"""The score output folder: parquet shards, a manifest, resume and refusal of foreign runs.

Layout of `out/`:

    manifest.json          {"format": "memtax-scores", "version": 2, "run": {...}, "complete": bool,
                            "shards": [{"file", "start", "stop", "rows", "sha256",
                                        "samples_sha256"}, ...]}
    part-000000.parquet    rows [0, S) of the (selected) samples, S = run["shard_size"]
    part-000001.parquet    rows [S, 2S) ...
    .shard-000000.json     while a run is incomplete: each written shard's manifest entry

Each shard is written to a hidden temporary name and renamed when complete, so a shard file
that exists is whole; its entry (the sha256 of the parquet file and of the sample rows it
scored) is written next, and the manifest gathers the entries when the run completes.

A rerun is the same run when its `run` description matches on everything but where things
came from (`INFORMATIONAL`: the model's name or path, the samples' path): the weights (by their
`model_sha256`), the samples (by `samples_sha256`, 64 rows by id) and the settings (dtype,
lengths, mode, EOS masking, sample count, shard size, profile; a folder written before profiles
existed counts as the default profile's). A copy of the data under another path, or the same
file by another spelling, is the same run; other weights or samples at the same path are
refused, naming what changed. A kept shard is checked before it is trusted: its file
against its sha256, and its rows of the samples (re-read) against theirs. Folders written
before these checks (manifest version 1) are read as they are but not resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"
FORMAT = "memtax-scores"
VERSION = 2
# run fields that say where the weights and samples came from, not what they are: left out of
# the same-run comparison (the fingerprints decide)
INFORMATIONAL = frozenset({"model", "revision", "source", "sample_source", "samples_check_ids"})
_WHAT = {"model_sha256": "the model's weights differ",
         "samples_sha256": "the samples differ (tokens of the checked rows)",
         "n_samples": "the number of samples differs"}

__all__ = ["ScoreFolder", "shard_name", "read_scores", "write_bytes_atomic", "write_parquet_atomic",
           "check_writable", "file_sha256", "write_atomic"]


def shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def _record_name(k: int) -> str:
    return f".shard-{k:06d}.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _short(value, width: int = 24) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 4] + "…" + text[-3:]


def check_writable(path: str | os.PathLike) -> None:
    """The output folder `path` (or the folder it would be created in) must accept files:
    checked by writing a probe file, before any model loads. PermissionError / ValueError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {str(path)!r} exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot create output folder {str(path)!r}: {str(probe)!r} is a file")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".memtax-write-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise PermissionError(
            f"output folder {str(path)!r} is not writable ({str(probe)!r}: "
            f"{exc.strerror or exc}); choose another --out"
        ) from None


def write_atomic(path: Path, write) -> None:
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
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


class ScoreFolder:
    """One run's output folder. `prepare()` creates or validates it (call on one rank);
    `open_existing()` validates it on the others."""

    def __init__(self, path: str | os.PathLike, run: dict):
        self.path = Path(path)
        self.run = {k: run[k] for k in sorted(run)}
        self.created_folder = False
        self.created_manifest = False
        self.written: list[Path] = []
        self.records: dict[int, dict] = {}
        self.kept: set[int] = set()

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
            found = man.get("format") if isinstance(man, dict) else type(man).__name__
            raise ValueError(f"{p}: not a memtax score manifest (format {found!r})")
        return man

    def _check_same_run(self, man: dict) -> None:
        theirs = man.get("run", {})
        if "profile" in self.run:  # folders from before profiles scored the default's columns
            theirs = {"profile": "default", **theirs}
        if man.get("version", 1) < VERSION or "model_sha256" not in theirs:
            raise ValueError(
                f"output folder {str(self.path)!r} was written by an older memtax (manifest "
                f"version {man.get('version', 1)}, no model and sample fingerprints), so it "
                "cannot be resumed safely; choose an empty --out folder or delete this one "
                "(its scores stay readable)"
            )
        keys = sorted((set(theirs) | set(self.run)) - INFORMATIONAL)
        diffs = [f"{k} {_short(theirs.get(k))} != {_short(self.run.get(k))}"
                 + (f": {_WHAT[k]}" if k in _WHAT else "")
                 for k in keys if theirs.get(k) != self.run.get(k)]
        if diffs:
            raise ValueError(
                f"output folder {str(self.path)!r} holds shards of another run ("
                + "; ".join(diffs[:4])
                + "); choose an empty --out folder or delete this one"
            )

    def prepare(self, *, resume: bool, rows_sha256=None) -> None:
        """Create the folder and manifest, or check an existing one belongs to this run.

        resume=True keeps the shards that check out (`kept`): `rows_sha256(k)` is the current
        checksum of shard k's sample rows. resume=False on the same run deletes its old shards
        first. A foreign run, an edited shard, changed samples, or parquet files without a
        manifest raise ValueError and touch nothing."""
        check_writable(self.path)
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
            if resume:
                self._load_records(man)
                self.kept = {k for k in sorted(self.records)
                             if self.kept_shard(k, lambda k=k: rows_sha256(k))}
                self.records = {k: self.records[k] for k in self.kept}
            else:
                for p in [*self.path.glob("part-*.parquet"), *self.path.glob(".shard-*.json")]:
                    p.unlink()
        self._write_manifest(complete=False, shards=self._sorted_records())
        if man is None:
            self.created_manifest = True

    def open_existing(self) -> None:
        man = self._read_manifest()
        if man is None:
            raise ValueError(f"output folder {str(self.path)!r} has no manifest")
        self._check_same_run(man)
        self._load_records(man)
        self.kept = {k for k in self.records if self.has_shard(k)}

    # -- shard records -----------------------------------------------------------------------
    def _load_records(self, man: dict | None = None) -> None:
        """Shard entries from the manifest, then from the entry files of unfinished runs."""
        for rec in (man or {}).get("shards", []):
            if "sha256" in rec:
                self.records[int(rec["file"][5:11])] = rec
        for p in self.path.glob(".shard-*.json"):
            try:
                rec = json.loads(p.read_text())
                self.records[int(p.name[7:13])] = rec
            except (ValueError, json.JSONDecodeError):
                p.unlink()  # a killed write: the shard is scored again

    def _sorted_records(self) -> list[dict]:
        return [self.records[k] for k in sorted(self.records)]

    def kept_shard(self, k: int, samples_sha256) -> bool:
        """Whether shard k is done and may be kept: False when it was never finished (it is
        scored again); ValueError when its file or its samples changed since it was written.
        `samples_sha256()` computes the current rows' checksum (called only when needed)."""
        path = self.path / shard_name(k)
        rec = self.records.get(k)
        if rec is None or not path.is_file():
            return False
        if file_sha256(path) != rec["sha256"]:
            raise ValueError(
                f"score shard {str(path)!r} was changed after it was written (its sha256 differs "
                "from the one recorded); delete it to score its rows again"
            )
        now = samples_sha256()
        if now != rec["samples_sha256"]:
            raise ValueError(
                f"the samples changed since {str(path)!r} was scored: rows {rec['start']}:"
                f"{rec['stop']} now read differently (sha256 {now[:16]}..., recorded "
                f"{rec['samples_sha256'][:16]}...); choose an empty --out folder or delete this one"
            )
        return True

    # -- shards ------------------------------------------------------------------------------
    def has_shard(self, k: int) -> bool:
        return (self.path / shard_name(k)).is_file()

    def write_shard(self, k: int, table: pa.Table, *, start: int = 0, stop: int = 0,
                    samples_sha256: str = "") -> Path:
        path = self.path / shard_name(k)
        write_parquet_atomic(table, path)
        self.written.append(path)
        rec = {"file": path.name, "start": start, "stop": stop, "rows": stop - start,
               "sha256": file_sha256(path), "samples_sha256": samples_sha256}
        write_bytes_atomic(self.path / _record_name(k), json.dumps(rec).encode())
        self.written.append(self.path / _record_name(k))
        self.records[k] = rec
        return path

    def finish(self, n_shards: int, shard_bounds) -> None:
        self._load_records()  # the other ranks' shards
        missing = [shard_name(k) for k in range(n_shards) if k not in self.records]
        if missing:
            raise ValueError(f"output folder {str(self.path)!r} lacks shards {missing[:5]}")
        self._write_manifest(complete=True, shards=[self.records[k] for k in range(n_shards)])
        for p in self.path.glob(".shard-*.json"):
            p.unlink()

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
    """All shards of a score folder, in sample order, with the run metadata on the schema.
    Shards whose manifest entry has a sha256 are checked against it (an edited shard is
    refused); folders from before those entries are read as they are."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a memtax score folder (no {MANIFEST})")
    if n_shards is None:
        try:
            man = json.loads((path / MANIFEST).read_text())
            shards = man["shards"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{str(path / MANIFEST)!r} is not a memtax score manifest "
                             f"({exc})") from None
        if not man.get("complete"):
            raise ValueError(f"score folder {str(path)!r} is incomplete; rerun to resume it")
        for rec in shards:
            f = path / rec["file"]
            if not f.is_file():
                raise FileNotFoundError(f"score folder {str(path)!r} lacks its shard {str(f)!r}")
            if "sha256" in rec and file_sha256(f) != rec["sha256"]:
                raise ValueError(f"score shard {str(f)!r} was changed after it was written (its "
                                 "sha256 differs from the manifest's); score it again")
        files = [path / s["file"] for s in shards]
    else:
        files = [path / shard_name(k) for k in range(n_shards)]
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({})
