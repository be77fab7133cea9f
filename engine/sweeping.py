"""`engine.sweep` (this module is `engine.sweeping`, as `engine.score` lives in `engine.scoring`):
score the same samples under many checkpoints (and models), one score
folder each, plus a sweep manifest.

    sw = engine.sweep("EleutherAI/pythia-160m-deduped", "pile/document", range=(0, 100_000),
                      revisions=["step1000", "step2000", "step143000"], out="sweep/")
    sw = engine.sweep(["suite/models/small", "suite/models/large"], samples, revisions="all",
                      out="sweep/", sequences_per_step=16, ids_are_positions=True)
    sw.labels()      # model, revision, step, sequences_seen, sample_id, exact_match, match_len, seen

Layout of `out/` (other files may share it, e.g. a study's output; a `scores/` folder without
a sweep manifest is refused):

    sweep.json                   {"format": "memtax-sweep", "version": 1, "run": {...,
                                  "profile"},
                                  "checkpoints": [{"model", "label", "revision", "step",
                                  "sequences_seen", "folder", "vocab_size", "tokenizer",
                                  "parameters", "dtype", "elapsed_s", "complete"}, ...],
                                  "complete": bool}
    scores/<label>@<revision>/   one `engine.score` folder per checkpoint (engine.output)

What a sweep adds to running `engine.score` once per checkpoint:
- every checkpoint is found on this machine before anything is scored (a local folder of
  checkpoints, the Hugging Face cache; the hub only with `allow_network=True`): the missing ones
  are named in one FileNotFoundError and nothing is written; checkpoints whose tokenizers or
  vocabularies differ are refused the same way (ids mean different tokens there);
- the samples are read (and tokenized) once and shared by every checkpoint;
- a killed sweep resumes: finished checkpoints are skipped without loading them, the one that
  was running resumes at its shard (engine.score's own resume); the manifest is rewritten
  atomically after every checkpoint;
- each checkpoint's training-stream range: step c has seen sequences [0, c * sequences_per_step)
  (Pythia: 1024 per step); when sample ids are stream positions (`ids_are_positions`, default for
  .bin/.idx sources) `labels()` marks which samples a checkpoint has not seen yet.

Models of a list are taken as ordered by size, smallest first (what analysis.dynamics uses when
smaller models predict the largest).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.data import (
    PYTHIA_BATCH_SEQUENCES,
    ArraySource,
    IndexedSource,
    SampleSource,
    open_samples,
)
from engine.model_specs import is_hub_id, parse_model_spec
from engine.output import read_scores, write_bytes_atomic
from engine.profiles import check_profile, profile_metadata
from engine.revisions import Vocabulary, find_revision, list_revisions, revision_step, vocabulary

__all__ = ["sweep", "open_sweep", "Sweep", "plan_checkpoints", "Checkpoint", "SWEEP_MANIFEST"]

SWEEP_MANIFEST = "sweep.json"
FORMAT = "memtax-sweep"
VERSION = 1


# ---------------------------------------------------------------------------------------------
# The plan: which checkpoints, where they are, what vocabulary each has


@dataclass(frozen=True)
class Checkpoint:
    """One (model, revision) of a sweep. model: the spec as given, without its revision;
    label: its short name in folder names and tables; location: the local folder of its
    weights (None: on the hub, to be downloaded)."""

    model: str
    label: str
    revision: str | None
    location: Path | None
    vocab: Vocabulary | None

    @property
    def step(self) -> int | None:
        return revision_step(self.revision)

    @property
    def folder(self) -> str:
        return f"scores/{self.label}" + (f"@{self.revision}" if self.revision else "")

    @property
    def key(self) -> tuple[str, str]:
        return self.label, self.revision or ""


def _label(model: str) -> str:
    """A model's short name: a folder's name, or a hub id with '/' as '--'."""
    if not is_hub_id(model) or Path(model).expanduser().exists():
        return Path(model).expanduser().resolve().name
    return model.replace("/", "--")


def _revision_list(revisions) -> list[str] | str | None:
    if revisions is None or revisions == "all":
        return revisions
    if isinstance(revisions, str):
        revisions = [r.strip() for r in revisions.split(",") if r.strip()]
    revisions = [str(r) for r in revisions]
    if not revisions:
        raise ValueError("revisions must name at least one revision, 'all', or None")
    twice = sorted({r for r in revisions if revisions.count(r) > 1})
    if twice:
        raise ValueError(f"revisions given twice: {twice}")
    return revisions


def _model_revisions(spec: str, revisions, cache_dir, allow_network) -> tuple[str, list]:
    """(model without revision, its revisions to sweep)."""
    name, own = parse_model_spec(spec)
    if own is not None and revisions is not None:
        raise ValueError(f"model {spec!r} names its revision and revisions= names others; give "
                         f"one or the other")
    if revisions == "all":
        return name, list_revisions(name, cache_dir=cache_dir, allow_network=allow_network)
    return name, ([own] if revisions is None else list(revisions))


def plan_checkpoints(models, revisions=None, *, cache_dir=None, allow_network: bool = False
                     ) -> list[Checkpoint]:
    """The checkpoints of a sweep, each found locally (or, with allow_network, left to the
    hub). models: a spec or a list (smallest first); revisions: a list, a comma-separated
    string, "all" (every revision found locally), or None (each model as given, which may end
    in @revision). FileNotFoundError naming every missing checkpoint; ValueError for mixed
    vocabularies, repeated models, or a model named with and without revisions."""
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    if not isinstance(models, (list, tuple)) or not all(
            isinstance(m, (str, os.PathLike)) for m in models):
        raise ValueError(f"models must be a model id or folder, or a list of them (a sweep loads "
                         f"each checkpoint itself), got {type(models).__name__}")
    specs = [str(m) for m in models]
    if not specs:
        raise ValueError("models must name at least one model")
    revisions = _revision_list(revisions)
    plan, missing, labels = [], [], {}
    for spec in map(str, specs):
        name, revs = _model_revisions(spec, revisions, cache_dir, allow_network)
        label = _label(name)
        if label in labels:
            raise ValueError(f"models {labels[label]!r} and {name!r} share the name {label!r}; "
                             f"a sweep keeps one score folder per name")
        labels[label] = name
        for rev in revs:
            where = find_revision(name, rev, cache_dir=cache_dir)
            if where is None and not (allow_network and is_hub_id(name)):
                missing.append(f"{name}@{rev}" if rev else name)
                continue
            plan.append(Checkpoint(name, label, rev, where,
                                   vocabulary(where) if where is not None else None))
    if missing:
        raise FileNotFoundError(
            f"checkpoints not found locally: {', '.join(missing)}; expected a model folder with "
            f"config.json (a revision as a subfolder <model>/<revision>/ or a Hugging Face cache "
            f"ref)" + ("" if allow_network else "; the hub is asked only when the network is "
                       "allowed (allow_network=True, --allow-network)"))
    check_vocabularies([(f"{c.model}@{c.revision}", c.vocab) for c in plan])
    return plan


def check_vocabularies(named: list[tuple[str, Vocabulary | None]]) -> None:
    """Refuse checkpoints whose token ids mean different things: different tokenizers, or
    different vocabulary sizes where the tokenizers are not all known to be the same (with one
    tokenizer, different sizes are padding of the embedding, as Pythia's larger models have)."""
    known = [(n, v) for n, v in named if v is not None]
    tokenizers = {v.tokenizer for _, v in known if v.tokenizer is not None}
    if len(tokenizers) > 1:
        groups = {t: [n for n, v in known if v.tokenizer == t] for t in tokenizers}
        raise ValueError("checkpoints with different tokenizers in one sweep: " + "; ".join(
            f"{t}: {', '.join(ns)}" for t, ns in groups.items()) + "; sweep each tokenizer's "
            "models on their own (their token ids are different texts)")
    sizes = {v.size for _, v in known}
    same_tokenizer = len(tokenizers) == 1 and all(v.tokenizer for _, v in known)
    if len(sizes) > 1 and not same_tokenizer:
        raise ValueError("checkpoints with different vocabulary sizes in one sweep: " + "; ".join(
            f"{n}: {v.size}" for n, v in known) + "; expected one vocabulary for the whole sweep")


# ---------------------------------------------------------------------------------------------
# The samples, read once


def _memory_mapped(source: SampleSource) -> bool:
    """True for sources that read rows without tokenizing or decoding (arrays, .bin/.idx)."""
    while hasattr(source, "base"):  # SubsetSource, a truncated source
        source = source.base
    return isinstance(source, (ArraySource, IndexedSource))


def _is_indexed(source: SampleSource) -> bool:
    while hasattr(source, "base"):  # SubsetSource, a truncated source
        source = source.base
    return isinstance(source, IndexedSource)


def samples_once(samples, *, prefix_len: int, cont_len: int, tokenizer=None, range=None,
                 limit=None) -> SampleSource:
    """The sweep's samples as one source every checkpoint reads: text and parquet sources are
    read (tokenized) once into memory, in the smallest integer type that holds them; arrays and
    .bin/.idx datasets are read where they are (memory-mapped)."""
    source = open_samples(samples, prefix_len=prefix_len, cont_len=cont_len,
                          tokenizer=tokenizer, range=range, limit=limit)
    if _memory_mapped(source):
        return source
    ids, tokens = source.read(0, len(source))
    small = np.uint16 if tokens.max(initial=0) < 2**16 else np.int32
    return ArraySource(tokens.astype(small), source.seq_len, sample_ids=ids,
                       description=source.description)


# ---------------------------------------------------------------------------------------------
# The sweep folder


class _SweepFolder:
    """`out/`: the manifest, created or checked against this sweep's run, updated per
    checkpoint; on a user error, what this call created is removed."""

    def __init__(self, path, run: dict):
        self.path, self.run = Path(path), dict(sorted(run.items()))
        self.created_folder = self.created_manifest = self.created_scores = False
        self.entries: dict[tuple[str, str], dict] = {}
        self.old_manifest: bytes | None = None

    def prepare(self, plan: list[Checkpoint], sequences_per_step: int) -> None:
        man = self._read()
        if man is None:
            # other files may share the folder (a study's output); score folders may not
            if self.path.exists() and (not self.path.is_dir() or (self.path / "scores").exists()):
                what = "scores/" if self.path.is_dir() else "a file"
                raise ValueError(f"output folder {str(self.path)!r} is not a sweep folder (no "
                                 f"{SWEEP_MANIFEST}) but holds {what}; choose another --out "
                                 f"folder")
        else:
            self._check_same_run(man)
            self.old_manifest = (self.path / SWEEP_MANIFEST).read_bytes()
            for e in man["checkpoints"]:
                self.entries[e["label"], e["revision"] or ""] = e
            check_vocabularies([(f"{e['model']}@{e['revision']}",
                                 Vocabulary(e["vocab_size"], e["tokenizer"]))
                                for e in man["checkpoints"] if e["vocab_size"] is not None]
                               + [(f"{c.model}@{c.revision}", c.vocab) for c in plan])
        for c in plan:
            if c.key not in self.entries:
                self.entries[c.key] = _entry(c, sequences_per_step)
        self.created_folder = not self.path.exists()
        self.created_scores = not (self.path / "scores").exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self.created_manifest = man is None
        self.write()

    def _read(self) -> dict | None:
        p = self.path / SWEEP_MANIFEST
        if not p.is_file():
            return None
        man = json.loads(p.read_text())
        if man.get("format") != FORMAT:
            raise ValueError(f"{p}: not a memtax sweep manifest (format {man.get('format')!r})")
        return man

    def _check_same_run(self, man: dict) -> None:
        # a sweep from before profiles existed scored the default profile's columns
        theirs = {"profile": "default", **man.get("run", {})}
        diffs = [f"{k} {theirs.get(k)!r} != {self.run.get(k)!r}"
                 for k in sorted(set(theirs) | set(self.run)) if theirs.get(k) != self.run.get(k)]
        if diffs:
            raise ValueError(f"output folder {str(self.path)!r} holds another sweep ("
                             + "; ".join(diffs[:4]) + "); choose an empty --out folder")

    def done(self, c: Checkpoint) -> bool:
        """Finished earlier: marked complete here and its score folder complete."""
        entry = self.entries[c.key]
        man = self.path / entry["folder"] / "manifest.json"
        return bool(entry["complete"]) and man.is_file() and json.loads(
            man.read_text()).get("complete", False)

    def mark(self, c: Checkpoint, **fields) -> None:
        self.entries[c.key].update(fields)
        self.write()

    def write(self) -> None:
        entries = list(self.entries.values())
        man = {"format": FORMAT, "version": VERSION, "run": self.run, "checkpoints": entries,
               "complete": all(e["complete"] for e in entries)}
        write_bytes_atomic(self.path / SWEEP_MANIFEST, json.dumps(man, indent=1).encode())

    def cleanup_after_error(self) -> None:
        if self.created_folder:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.created_manifest:
            (self.path / SWEEP_MANIFEST).unlink(missing_ok=True)
            if self.created_scores:
                shutil.rmtree(self.path / "scores", ignore_errors=True)
        elif self.old_manifest is not None:
            write_bytes_atomic(self.path / SWEEP_MANIFEST, self.old_manifest)


def _entry(c: Checkpoint, sequences_per_step: int) -> dict:
    step = c.step
    return {"model": c.model, "label": c.label, "revision": c.revision, "step": step,
            "sequences_seen": None if step is None else step * sequences_per_step,
            "folder": c.folder, "vocab_size": c.vocab.size if c.vocab else None,
            "tokenizer": c.vocab.tokenizer if c.vocab else None, "parameters": None,
            "dtype": None, "elapsed_s": None, "complete": False}


# ---------------------------------------------------------------------------------------------
# The run


def sweep(models, samples, *, revisions=None, out, prefix_len: int = 32, cont_len: int = 32,
          mode: str = "exact", batch_size: int | str = "auto", dtype="auto", device="auto",
          resume: bool = True, progress: bool = True, mask_eos: bool = True, tokenizer=None,
          range: tuple[int, int] | None = None, limit: int | None = None,
          shard_size: int | None = None,
          sequences_per_step: int = PYTHIA_BATCH_SEQUENCES, ids_are_positions: bool | None = None,
          allow_network: bool = False, cache_dir=None, labels_only: bool = False,
          trust_remote_code: bool = False, workers: int = 1, profile: str = "default") -> Sweep:
    """Score `samples` under every checkpoint of `models` into `out` (see the module docstring).

    models: a model spec or a list of them, smallest first (hub id or local folder; may end in
        `@revision` when revisions is None). revisions: a list or comma-separated string of
        revision names, "all" (every revision found locally), or None.
    samples, prefix_len, cont_len, mode, batch_size, dtype, device, mask_eos, tokenizer, range,
        limit, shard_size, labels_only, trust_remote_code, profile: as for `engine.score`, the
        same for every checkpoint (the profile is recorded in the sweep's manifest and in each
        score folder; resuming under another profile is refused). resume: skip finished checkpoints and resume the unfinished one's
        shards (False: score everything again).
    sequences_per_step: training sequences per step (Pythia 1024; a suite's batch_size): step c
        has seen sequences [0, c * sequences_per_step).
    ids_are_positions: sample ids are positions in the training stream (default: True for
        .bin/.idx sources), so `labels()` can mark samples a checkpoint has not seen.
    allow_network: let checkpoints missing locally come from the Hugging Face hub.
    workers: score this many checkpoints at once in worker processes of one torch thread each
        (small models on a CPU with several cores; the samples are shared with them).
    Returns the `Sweep` (read it with `labels()`, `scores(...)`).
    """
    from engine.scoring import DEFAULT_SHARD_SIZE

    _check_sweep_arguments(sequences_per_step, ids_are_positions, workers)
    check_profile(profile)
    plan = plan_checkpoints(models, revisions, cache_dir=cache_dir, allow_network=allow_network)
    source = samples_once(samples, prefix_len=prefix_len, cont_len=cont_len,
                          tokenizer=tokenizer, range=range, limit=limit)
    options = dict(prefix_len=prefix_len, cont_len=cont_len, mode=mode, batch_size=batch_size,
                   progress=progress, mask_eos=mask_eos, labels_only=labels_only,
                   shard_size=shard_size or DEFAULT_SHARD_SIZE, profile=profile)
    run = _run_description(source, options, dtype, device, sequences_per_step,
                           ids_are_positions)
    if workers > 1 and run["device"] == "cuda":
        raise ValueError(f"workers={workers} scores on CPU cores in forked processes; on a GPU "
                         f"sweep with workers=1")
    run.pop("device")
    folder = _SweepFolder(out, run)
    folder.prepare(plan, sequences_per_step)
    loading = dict(dtype=dtype, device=device, allow_network=allow_network,
                   cache_dir=cache_dir, trust_remote_code=trust_remote_code, profile=profile)
    todo = [c for c in plan if not (resume and folder.done(c))]
    try:
        _score_all(todo, source, folder, options, loading, resume, workers, progress)
    except (ValueError, FileNotFoundError):
        folder.cleanup_after_error()
        raise
    return Sweep(folder.path)


def _check_sweep_arguments(sequences_per_step, ids_are_positions, workers) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(sequences_per_step, bool) or not isinstance(sequences_per_step, int) \
            or sequences_per_step < 1:
        raise ValueError(f"sequences_per_step must be a positive integer (Pythia: 1024), got "
                         f"{sequences_per_step!r}")
    if ids_are_positions not in (None, True, False):
        raise ValueError(f"ids_are_positions must be True, False or None, got "
                         f"{ids_are_positions!r}")


def _run_description(source, options, dtype, device, sequences_per_step, ids_are_positions):
    """What every checkpoint of the sweep shares (a rerun into the same folder must match)."""
    from engine.models import resolve_device

    positions = _is_indexed(source) if ids_are_positions is None else ids_are_positions
    dev = resolve_device(device)
    return {"device": dev.type, "prefix_len": options["prefix_len"], "cont_len": options["cont_len"],
            "mode": options["mode"], "mask_eos": bool(options["mask_eos"]),
            "labels_only": bool(options["labels_only"]), "shard_size": options["shard_size"],
            "dtype": _planned_dtype(dtype, dev, options["profile"]),
            "source": source.description, "n_samples": len(source),
            "sequences_per_step": sequences_per_step,
            "positions": "sample_id" if positions else None, "profile": options["profile"]}


def _planned_dtype(dtype, dev, profile: str) -> str:
    """The sweep's dtype as its manifest records it: the short name where every checkpoint
    scores in the same one; "auto" where each checkpoint's config decides (dtype "auto" on CUDA
    in the default profile: its own 16-bit dtype or bf16; its score folder records which)."""
    from engine.device import dtype_name
    from engine.models import resolve_dtype

    if dtype == "auto" and dev.type == "cuda" and profile == "default":
        return "auto"
    return dtype_name(resolve_dtype(dtype, dev, profile=profile))


def _progress(items, enabled: bool, total: int | None = None):
    total = len(items) if total is None else total
    if not enabled or total < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc="sweep", unit="checkpoint", dynamic_ncols=True)


def _score_checkpoint(c: Checkpoint, source, out: Path, options: dict, loading: dict,
                      resume: bool, known: list) -> dict:
    """Load checkpoint `c`, check its vocabulary against the `known` (name, Vocabulary) ones,
    score the samples into `out / c.folder`; returns the manifest fields it learned."""
    import torch

    from engine.device import dtype_name
    from engine.models import load_model
    from engine.scoring import score

    t0 = time.perf_counter()
    sm = load_model(c.model, revision=c.revision, dtype=loading["dtype"],
                    device=loading["device"], trust_remote_code=loading["trust_remote_code"],
                    local_files_only=not loading["allow_network"], cache_dir=loading["cache_dir"],
                    profile=loading["profile"])
    if c.vocab is None:  # fetched from the hub: its vocabulary is known only now
        check_vocabularies(known + [(f"{c.model}@{c.revision}", Vocabulary(sm.vocab_size, None))])
    fields = {"vocab_size": c.vocab.size if c.vocab else sm.vocab_size,
              "parameters": int(sum(p.numel() for p in sm.model.parameters())),
              "dtype": dtype_name(sm.dtype)}
    score(sm, source, out=out / c.folder, resume=resume, dtype=loading["dtype"],
          device=loading["device"], **options)
    del sm
    if torch.cuda.is_available():  # hand the checkpoint's memory back before the next loads
        gc.collect()
        torch.cuda.empty_cache()
    return {**fields, "elapsed_s": round(time.perf_counter() - t0, 3), "complete": True}


def _score_all(todo: list[Checkpoint], source, folder: _SweepFolder, options: dict,
               loading: dict, resume: bool, workers: int, progress: bool) -> None:
    """Score the checkpoints `todo` in order, or `workers` at a time in worker processes (one
    torch thread each), recording each in the manifest as it finishes."""
    known = [(f"{e['model']}@{e['revision']}", Vocabulary(e["vocab_size"], e["tokenizer"]))
             for e in folder.entries.values() if e["vocab_size"] is not None]
    if workers <= 1 or len(todo) < 2:
        for c in _progress(todo, progress):
            folder.mark(c, **_score_checkpoint(c, source, folder.path, options, loading, resume,
                                               known))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # fork shares the samples read once with the workers (copy-on-write) and does not re-import
    # the caller's main script; spawn where fork is missing
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    quiet = {**options, "progress": False}
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx,
                             initializer=_one_thread) as pool:
        futures = {pool.submit(_score_checkpoint, c, source, folder.path, quiet, loading, resume,
                               known): c for c in todo}
        for f in _progress(as_completed(futures), progress, total=len(todo)):
            folder.mark(futures[f], **f.result())


def _one_thread() -> None:
    # A worker scores on one core: torch's intra-op threads would only contend with the other
    # workers (and spin-wait); one thread also keeps torch safe in a forked child.
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Reading a sweep


class Sweep:
    """A sweep folder, read through its manifest."""

    def __init__(self, root):
        self.root = Path(root)
        p = self.root / SWEEP_MANIFEST
        if not p.is_file():
            raise FileNotFoundError(f"{str(self.root)!r} is not a memtax sweep folder (no "
                                    f"{SWEEP_MANIFEST})")
        self.manifest = json.loads(p.read_text())
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{p}: not a memtax sweep manifest")

    @property
    def run(self) -> dict:
        return self.manifest["run"]

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def profile(self) -> str:
        """The profile every checkpoint was scored under ("default" for sweeps from before
        profiles existed)."""
        return check_profile(self.run.get("profile", "default"))

    @property
    def checkpoints(self) -> list[dict]:
        """The manifest's entries, models in sweep order, revisions in step order."""
        order = list(dict.fromkeys(e["label"] for e in self.manifest["checkpoints"]))
        return sorted(self.manifest["checkpoints"], key=lambda e: (
            order.index(e["label"]), e["step"] is None, e["step"] or 0, e["revision"] or ""))

    @property
    def models(self) -> list[str]:
        """Model labels, in the sweep's (size) order."""
        return list(dict.fromkeys(e["label"] for e in self.checkpoints))

    def entry(self, model: str, revision: str | None) -> dict:
        for e in self.checkpoints:
            if e["label"] == model and (e["revision"] or "") == (revision or ""):
                return e
        have = [f"{e['label']}@{e['revision']}" for e in self.checkpoints]
        raise ValueError(f"sweep {str(self.root)!r} has no checkpoint {model}@{revision}; it "
                         f"has {have}")

    def scores(self, model: str, revision: str | None) -> pa.Table:
        """The score table of one checkpoint (complete folders only)."""
        return read_scores(self.root / self.entry(model, revision)["folder"])

    def labels(self, columns=("exact_match", "match_len")) -> pa.Table:
        """One row per (checkpoint, sample): model, revision, step, sequences_seen, sample_id,
        `columns`, and `seen` (sample_id < sequences_seen; null where the stream position or
        the step is unknown); the sweep's profile in the schema metadata. Only finished
        checkpoints; ValueError when none is."""
        parts = [self._labels_of(e, list(columns)) for e in self.checkpoints if e["complete"]]
        if not parts:
            raise ValueError(f"sweep {str(self.root)!r} has no finished checkpoint yet; rerun "
                             f"the sweep to resume it")
        return pa.concat_tables(parts).replace_schema_metadata(profile_metadata(self.profile))

    def _labels_of(self, e: dict, columns: list[str]) -> pa.Table:
        t = read_scores(self.root / e["folder"])
        n, ids = t.num_rows, t.column("sample_id").to_numpy()
        seen = None
        if self.run.get("positions") == "sample_id" and e["sequences_seen"] is not None:
            seen = pa.array(ids < e["sequences_seen"])
        cols = {"model": pa.array([e["label"]] * n, pa.string()),
                "revision": pa.array([e["revision"] or ""] * n, pa.string()),
                "step": pa.array([e["step"]] * n, pa.int64()),
                "sequences_seen": pa.array([e["sequences_seen"]] * n, pa.int64()),
                "sample_id": t.column("sample_id"),
                **{c: t.column(c) for c in columns},
                "seen": seen if seen is not None else pa.nulls(n, pa.bool_())}
        return pa.table(cols)


def open_sweep(path) -> Sweep:
    """A sweep folder written by `sweep` (FileNotFoundError when it is not one)."""
    return Sweep(path)
