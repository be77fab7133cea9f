"""The suite's manifest, `<root>/suite.json`: what was built from what (config, corpus and
stream checksums, tokenizer), each model's size, parameter count, checkpoint steps and losses,
timings and library versions. Written atomically (temp file, then rename) after every stage
and checkpoint, so it always describes what is on disk.

`identity` is the part that decides the contents (config + corpus checksum): a folder whose
manifest has another identity holds another suite. `timings` (seconds, tokens/s) is the only
part that differs between two builds of one identity.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from engine.output import write_bytes_atomic

__all__ = ["MANIFEST", "FORMAT", "read_manifest", "write_manifest", "identity", "versions"]

MANIFEST = "suite.json"
FORMAT = "memtax-suite/1"


def identity(config_dict: dict, corpus_sha256: str) -> dict:
    return {"format": FORMAT, "config": config_dict, "corpus_sha256": corpus_sha256}


def read_manifest(root: str | os.PathLike) -> dict:
    """The manifest of suite folder `root`. FileNotFoundError if the folder is missing,
    ValueError if it holds no suite manifest or a foreign one."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"suite folder {str(root)!r} not found")
    path = root / MANIFEST
    if not path.is_file():
        raise ValueError(f"{str(root)!r} is not a suite: no {MANIFEST} (build one with "
                         f"`memtax suite build`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("identity", {}).get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a memtax suite manifest (format {FORMAT!r})")
    return data


def write_manifest(root: str | os.PathLike, data: dict) -> Path:
    path = Path(root) / MANIFEST
    write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())
    return path


def versions() -> dict:
    import numpy
    import tokenizers
    import torch
    import transformers

    from memtax import __version__

    return {"memtax": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}
