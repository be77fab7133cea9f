"""Scores, samples and index checked against each other before any feature is computed.

    source = scored_samples(meta, samples=None, tokenizer=tok)   # the rows that were scored
    check_index(meta, index, tokenizer=tok)                      # same vocabulary and tokenizer

`meta` is a score table's schema metadata (`engine.score` writes it). A score run records where
its samples came from (`sample_source`: kind, absolute path, range, checkpoint, stride, column,
the tokenizer's fingerprint for text) and a fingerprint of them (`samples_sha256` over the
rows `samples_check_ids`). `scored_samples` opens that source again (from any working
directory) or the `samples` given, with the run's windowing, and refuses samples whose checked
rows differ. `check_index` refuses an index whose vocabulary the scoring model cannot hold, or
one built with another tokenizer than the scored text. Each refusal names both values. Runs
scored before these records existed are checked as far as they allow, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

__all__ = ["run_record", "scored_samples", "check_index"]


def _text(meta: dict, key: str) -> str | None:
    value = (meta or {}).get(key.encode())
    return None if value is None else value.decode()


def run_record(meta: dict) -> dict:
    """The sample source a score run recorded ({} when it recorded none)."""
    raw = _text(meta, "sample_source")
    if not raw:
        return {}
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the score run's sample_source record is not JSON ({exc})") from None
    if not isinstance(rec, dict) or "kind" not in rec:
        raise ValueError(f"the score run's sample_source record is malformed: {raw[:200]!r}")
    return rec


def _stride(rec: dict, stride: int | None) -> int | None:
    recorded = rec.get("stride")
    if stride is not None and recorded is not None and int(stride) != int(recorded):
        raise ValueError(f"stride={stride} differs from the score run's stride={recorded}: the "
                         "windows would be other text than was scored")
    return stride if stride is not None else recorded


def _recorded_path(rec: dict, meta: dict) -> str:
    path = rec.get("path")
    if path is None:
        legacy = _text(meta, "source") or ""
        if legacy and (Path(legacy).exists() or Path(legacy + ".idx").exists()):
            return legacy
        raise ValueError(
            f"the score run recorded no sample file (samples {legacy or 'in memory'!r}); pass "
            "--samples"
        )
    exists = Path(path).exists() or Path(path + ".idx").exists()
    if not exists:
        raise FileNotFoundError(f"the scored samples {path!r} (recorded by the score run) are "
                                "not there; pass --samples")
    return path


def _check_tokenizer(rec: dict, tokenizer) -> None:
    from engine.tokenizers import tokenizer_fingerprint

    recorded = rec.get("tokenizer_sha256")
    if tokenizer is None:
        raise ValueError(f"the scored samples are text ({rec.get('path')}); pass the tokenizer "
                         "the score run used (--tokenizer)")
    if recorded and hasattr(tokenizer, "get_vocab"):
        mine = tokenizer_fingerprint(tokenizer)
        if mine != recorded:
            raise ValueError(f"the tokenizer ({mine[:23]}...) differs from the one the samples "
                             f"were scored with ({recorded[:23]}...)")


def scored_samples(meta: dict, samples=None, *, tokenizer=None, stride: int | None = None,
                   prefix_len: int, cont_len: int):
    """The sample source behind a score table: `samples` when given (any `engine.open_samples`
    input), else the source the run recorded, opened with the run's selection; text with the
    run's stride (`stride`, when given, must equal it). ValueError when the samples' checked
    rows differ from those scored, naming both checksums."""
    from engine.data import open_samples
    from engine.fingerprint import check_samples
    from features.tokenizers import as_encoder

    rec = run_record(meta)
    stride = _stride(rec, stride)
    encoder = as_encoder(tokenizer) if tokenizer is not None else None
    if rec.get("kind") == "text":
        _check_tokenizer(rec, tokenizer)
    lengths = dict(prefix_len=prefix_len, cont_len=cont_len, tokenizer=encoder)
    if samples is not None:
        text = isinstance(samples, (str, os.PathLike)) and str(samples).endswith((".jsonl", ".txt"))
        source = open_samples(samples, stride=stride if text else None, **lengths)
    else:
        path = _recorded_path(rec, meta)
        fields = {k: rec[k] for k in ("range", "checkpoint", "stride", "column", "id_column",
                                      "text_key") if rec.get(k) is not None}
        if "range" in fields:
            fields["range"] = tuple(fields["range"])
        source = open_samples(path, **lengths, **fields)
    recorded = {"check_ids": json.loads(_text(meta, "samples_check_ids") or "null"),
                "check_sha256": _text(meta, "samples_sha256")}
    if recorded["check_ids"] is None or not recorded["check_sha256"]:
        if _text(meta, "model") is not None:  # a score run of an older memtax, not a bare table
            warnings.warn("features: the score run records no sample fingerprint (an older "
                          "memtax): the samples cannot be checked against the scores",
                          stacklevel=2)
    else:
        check_samples(source, recorded, what="the score run")
    return source


def check_index(meta: dict, index, *, tokenizer=None) -> None:
    """ValueError when the index's vocabulary (declared, else its largest token + 1) is larger
    than the scoring model's, or when the index and the scored text name different tokenizers.
    """
    model_vocab = _text(meta, "vocab_size")
    index_meta = getattr(index, "meta", None) or {}
    if model_vocab and "vocab_size" in index_meta:
        mv, iv = int(model_vocab), int(index_meta["vocab_size"])
        how = "declared" if index_meta.get("vocab_size_declared") else "largest token id + 1"
        if iv > mv:
            raise ValueError(
                f"the corpus index's vocabulary ({iv}, {how}) is larger than the scoring "
                f"model's ({mv}): the scores and the index come from different tokenizers"
            )
    recorded = run_record(meta).get("tokenizer_sha256")
    built = index_meta.get("tokenizer")
    if recorded and isinstance(built, str) and built.startswith("sha256:") and built != recorded:
        raise ValueError(f"the corpus index was built with tokenizer {built[:23]}..., the "
                         f"samples were scored with {recorded[:23]}...")
