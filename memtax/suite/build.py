"""`build_suite`: corpus -> tokenizer -> stream -> models, each stage recorded in the manifest so
that a killed build resumes where it stopped (stages already done are kept, a model continues
from its last checkpoint)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from engine.output import file_sha256
from memtax.suite.config import SuiteConfig, checkpoint_steps
from memtax.suite.corpus import choose_share, corpus_checksum, load_documents
from memtax.suite.handle import Suite
from memtax.suite.manifest import MANIFEST, identity, read_manifest, versions, write_manifest
from memtax.suite.stream import (
    cut_sequences,
    tokenize_documents,
    training_order,
    write_stream,
)
from memtax.suite.tokenizer import EOT, load_tokenizer, train_tokenizer
from memtax.suite.train import make_model, train_model, use_bf16

__all__ = ["build_suite"]


def _start_manifest(out: Path, ident: dict) -> dict:
    """The manifest to continue: the folder's own (same identity), or a fresh one. Refuses a
    folder that holds another suite or other files."""
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        if old["identity"] != ident:
            diff = _identity_diff(old["identity"], ident)
            raise ValueError(f"{str(out)!r} holds another suite ({diff}); choose another "
                             f"folder or remove that one")
        return old
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{str(out)!r} exists and is not a suite folder (no {MANIFEST}); "
                         f"refusing to write into it")
    return {"identity": ident, "complete": False, "models": {}, "timings": {},
            "versions": versions()}


def _identity_diff(old: dict, new: dict) -> str:
    if old.get("corpus_sha256") != new.get("corpus_sha256"):
        return "built from another corpus"
    a, b = old.get("config", {}), new.get("config", {})
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "config differs in " + ", ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} here"
                                            for k in keys)


def _tokenizer_stage(root: Path, manifest: dict, docs: list[str], config: SuiteConfig,
                     progress: bool) -> None:
    if "tokenizer" in manifest:
        return
    t0 = time.perf_counter()
    train_tokenizer(docs, config.vocab_size, root / "tokenizer", progress=progress)
    tok = load_tokenizer(root / "tokenizer")
    manifest["tokenizer"] = {"vocab_size": len(tok), "eot_token": EOT,
                             "eot_id": int(tok.convert_tokens_to_ids(EOT)),
                             "documents": len(docs)}
    manifest["timings"]["tokenizer_s"] = time.perf_counter() - t0
    write_manifest(root, manifest)


def _stream_stage(root: Path, manifest: dict, docs: list[str], config: SuiteConfig) -> None:
    prefix = root / "stream" / "document"
    if "stream" in manifest:
        sha = file_sha256(prefix.with_suffix(".bin"))
        if sha != manifest["stream"]["sha256"]:
            raise ValueError(f"the stream {str(prefix)}.bin does not match the manifest's "
                             f"checksum; remove {str(root)!r} and build again")
        return
    t0 = time.perf_counter()
    tok = load_tokenizer(root / "tokenizer")
    seqs = cut_sequences(tokenize_documents(tok, docs), manifest["tokenizer"]["eot_id"],
                         config.seq_len)
    if config.max_sequences is not None:
        seqs = seqs[: config.max_sequences]
    order = training_order(len(seqs), config.epochs, config.batch_size, config.seed)
    bin_path = write_stream(prefix, seqs, order)
    manifest["stream"] = {
        "prefix": "stream/document", "unique_sequences": int(len(seqs)),
        "sequences": int(order.size), "tokens": int(order.size * config.seq_len),
        "steps": int(order.size // config.batch_size), "sha256": file_sha256(bin_path),
    }
    manifest["timings"]["stream_s"] = time.perf_counter() - t0
    write_manifest(root, manifest)


def _train_stage(root: Path, manifest: dict, name: str, config: SuiteConfig, progress: bool,
                 stop_after: int | None) -> bool:
    """Train (or resume, or skip if done) model `name`; False if stopped early."""
    size = config.sizes[name]
    entry = manifest["models"].get(name)
    if entry is not None and entry["complete"]:
        return True
    tok, stream = manifest["tokenizer"], manifest["stream"]
    steps = checkpoint_steps(stream["steps"], config.checkpoints, config.log_checkpoints)
    if entry is None:
        n_params = sum(p.numel() for p in make_model(
            size, vocab_size=tok["vocab_size"], seq_len=config.seq_len, eot_id=tok["eot_id"],
            seed=config.seed).parameters())
        entry = manifest["models"][name] = {
            "layers": size[0], "hidden": size[1], "heads": size[2], "parameters": int(n_params),
            "planned_steps": steps, "steps": [], "losses": {}, "final_loss": None,
            "complete": False}
    timings = manifest["timings"].setdefault("models", {}).setdefault(name, {})

    def record(result) -> None:
        entry["steps"] = sorted(result.checkpoints)
        entry["losses"] = {str(s): c["loss"] for s, c in sorted(result.checkpoints.items())}
        timings["checkpoints"] = {str(s): t for s, t in sorted(result.timings.items())}
        done = result.steps_done == steps[-1] and steps[-1] in result.checkpoints
        if done:
            entry["final_loss"] = result.checkpoints[steps[-1]]["loss"]
            entry["complete"] = True
            total_s = sum(t["train_s"] for t in result.timings.values())
            timings["train_s"] = total_s
            timings["tokens_per_s"] = (stream["tokens"] / total_s) if total_s else None
        write_manifest(root, manifest)

    result = train_model(
        root / "stream" / "document", root / "models" / name, size, config,
        vocab_size=tok["vocab_size"], eot_id=tok["eot_id"], tokenizer_dir=root / "tokenizer",
        steps=steps, on_checkpoint=record, stop_after=stop_after, progress=progress,
        desc=f"train {name}")
    return not result.stopped_early


def build_suite(corpus, out: str | os.PathLike, *, config: SuiteConfig | None = None,
                progress: bool = True, stop_after: int | None = None) -> Suite:
    """Build (or resume building) a suite from `corpus` into folder `out`.

    corpus: a list of text documents, a .txt/.jsonl file (one JSON object with "text" per
    line), a folder of such files, or a list of paths. config: a SuiteConfig (default:
    SuiteConfig()). stop_after: stop the build after the first checkpoint at or beyond this
    step, as if killed there: unfinished and resumable (time-boxed runs, tests).
    Raises ValueError for an empty corpus, one smaller than one sequence (or batch), sizes
    that do not parse, or an `out` holding another suite or other files; a new build that
    fails before its stream is written leaves no folder behind.
    """
    config = config if config is not None else SuiteConfig()
    if not isinstance(config, SuiteConfig):
        raise ValueError(f"config must be a SuiteConfig, got {type(config).__name__}")
    docs = load_documents(corpus)
    out = Path(out)
    manifest = _start_manifest(out, identity(config.to_dict(), corpus_checksum(docs)))
    if manifest.get("complete"):
        return Suite(out, manifest)
    used = choose_share(docs, config.corpus_share, config.seed, config.max_doc_chars)
    if not (out / MANIFEST).is_file():
        _prepare_new(out, manifest, used, config, progress)
    _tokenizer_stage(out, manifest, used, config, progress)
    _stream_stage(out, manifest, used, config)
    finished = True
    for name in config.sizes:
        finished = _train_stage(out, manifest, name, config, progress, stop_after)
        if not finished:
            break
    manifest["complete"] = finished
    write_manifest(out, manifest)
    return Suite(out, manifest)


def _prepare_new(out: Path, manifest: dict, docs: list[str], config: SuiteConfig,
                 progress: bool) -> None:
    """Tokenizer and stream of a new suite, made in a sibling folder renamed to `out` when both
    are done, so that a corpus too small (or any failure) leaves nothing behind."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest["autocast_bf16"] = use_bf16(config.autocast)
        _tokenizer_stage(tmp, manifest, docs, config, progress)
        _stream_stage(tmp, manifest, docs, config)
        if out.is_dir():
            out.rmdir()  # empty: _start_manifest refused anything else
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
