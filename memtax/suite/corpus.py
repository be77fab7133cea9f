"""A suite's corpus: text documents from a list of strings, a text file, a `.jsonl` file (one
JSON object per line with a "text" field), a folder of those (recursively, sorted by path), or
a list of such paths; plus the corpus checksum and the seeded document share."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["load_documents", "corpus_checksum", "choose_share"]

TEXT_SUFFIXES = (".txt", ".jsonl", ".md", ".py", ".rst")


def _read_jsonl(path: Path) -> list[str]:
    docs = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{str(path)!r} line {line_no}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(
                    f"{str(path)!r} line {line_no}: expected an object with a string 'text' field"
                )
            docs.append(obj["text"])
    return docs


def _read_path(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"corpus path {str(path)!r} not found")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise ValueError(
                f"corpus folder {str(path)!r} holds no text files (expected {TEXT_SUFFIXES})"
            )
        return [d for f in files for d in _read_path(f)]
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    return [path.read_bytes().decode("utf-8", errors="replace")]


def load_documents(corpus) -> list[str]:
    """The corpus as a list of non-empty documents, in the given order. Raises ValueError for an
    empty corpus (no document with any text) and FileNotFoundError for a missing path."""
    if isinstance(corpus, str | os.PathLike):
        docs = _read_path(Path(corpus))
    elif isinstance(corpus, Sequence) and all(isinstance(d, str) for d in corpus):
        docs = list(corpus)
    elif isinstance(corpus, Sequence) and all(isinstance(d, os.PathLike) for d in corpus):
        docs = [d for p in corpus for d in _read_path(Path(p))]
    else:
        raise ValueError(
            "corpus must be a list of text documents, a .txt/.jsonl file, a folder of them or a "
            f"list of paths, got {type(corpus).__name__}"
        )
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError("the corpus is empty: no document holds any text")
    return docs


def corpus_checksum(docs: Sequence[str]) -> str:
    """sha256 over the documents (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for d in docs:
        b = d.encode("utf-8", errors="replace")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def choose_share(docs: list[str], share: float, seed: int,
                 max_chars: int | None = None) -> list[str]:
    """A seeded `share` of the documents (numpy default_rng([seed, 1])), kept in corpus order
    (all of them for share 1), each cut to its first `max_chars` characters when given."""
    if share < 1.0:
        n = max(1, round(len(docs) * share))
        keep = np.sort(np.random.default_rng([seed, 1]).choice(len(docs), size=n, replace=False))
        docs = [docs[i] for i in keep]
    return [d[:max_chars] for d in docs] if max_chars is not None else list(docs)
