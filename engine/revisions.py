"""Finding a model's checkpoints (revisions) without the network, and what vocabulary each has.

    find_revision("suite/models/small", "step64")        -> suite/models/small/step64
    find_revision("EleutherAI/pythia-160m", "step1000")  -> the Hugging Face cache's snapshot
    list_revisions("suite/models/small")                 -> ["step0", "step1", ..., "step64"]
    revision_step("step143000")                          -> 143000 (None for "main")
    vocabulary("suite/models/small/step64")              -> Vocabulary(size=2048, tokenizer=sha)

A local folder's revisions are its subfolders holding a `config.json` (how a suite stores its
checkpoints), or a Hugging Face cache layout inside it (`refs/REV` -> `snapshots/HASH`). A hub
id's revisions are looked up in the Hugging Face cache (`cache_dir`, default the usual one); the
hub itself is asked only with `allow_network=True`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.model_specs import is_hub_id, local_revision_folder

__all__ = ["find_revision", "list_revisions", "revision_step", "vocabulary", "Vocabulary",
           "hub_cache_folder"]

_STEP = re.compile(r"^step(\d+)$")


def _natural_key(name: str) -> list:
    """step2 < step10 < step100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def revision_step(revision: str | None) -> int | None:
    """The training step a revision name states (`step<N>`, Pythia's and a suite's naming)."""
    m = _STEP.match(str(revision or ""))
    return int(m.group(1)) if m else None


def hub_cache_folder(repo_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hugging Face cache folder of model `repo_id` (it may not exist)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def _model_root(model: str, cache_dir) -> Path | None:
    """The local folder that holds `model`'s revisions: the folder itself, or the hub id's
    cache folder; None when neither exists."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if is_hub_id(model):
        cached = hub_cache_folder(model, cache_dir)
        return cached if cached.is_dir() else None
    return None


def find_revision(model: str, revision: str | None, *,
                  cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The local folder holding `model` at `revision` (a model folder with config.json), or
    None when it is not on this machine. revision None: the model folder itself."""
    root = _model_root(model, cache_dir)
    if root is None:
        return None
    if revision is None:
        if (root / "config.json").is_file():
            return root
        revision = "main" if (root / "refs" / "main").is_file() else None
        if revision is None:
            return None
    try:
        folder = local_revision_folder(root, revision)
    except FileNotFoundError:
        return None
    return folder if (folder / "config.json").is_file() else None


def list_revisions(model: str, *, cache_dir: str | os.PathLike | None = None,
                   allow_network: bool = False) -> list[str]:
    """Every revision of `model` found locally, `step<N>` ones in step order (only those when
    there are any: `main` is a copy of the last step). With allow_network, a hub id whose
    cache holds none is listed from the hub's branches. FileNotFoundError when none is found."""
    root = _model_root(model, cache_dir)
    names: list[str] = []
    if root is not None:
        names = [p.name for p in root.iterdir()
                 if p.is_dir() and (p / "config.json").is_file()]
        if (root / "refs").is_dir():
            names += [p.name for p in (root / "refs").iterdir() if p.is_file()]
    if not names and allow_network and is_hub_id(model):
        from huggingface_hub import list_repo_refs

        names = [b.name for b in list_repo_refs(model).branches]
    steps = [n for n in names if revision_step(n) is not None]
    names = sorted(set(steps or names), key=_natural_key)
    if not names:
        where = str(root) if root is not None else "no local folder or Hugging Face cache entry"
        raise FileNotFoundError(
            f"no revisions of model {model!r} found locally ({where}); expected subfolders "
            f"step<N>/ with config.json, or a Hugging Face cache with refs"
            + ("" if allow_network else " (the hub is asked only when the network is allowed)"))
    return names


@dataclass(frozen=True)
class Vocabulary:
    """size: the config's vocab_size (embedding rows, possibly padded); tokenizer: a digest of
    the tokenizer's vocabulary and merges when the checkpoint carries tokenizer files."""

    size: int | None
    tokenizer: str | None


def _tokenizer_digest(folder: Path) -> str | None:
    """sha256 of the tokenizer's token -> id table and merges (not of its file bytes, which
    change with unrelated settings such as padding)."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        data = json.loads(tj.read_text(encoding="utf-8"))
        model = data.get("model", {})
        key = [model.get("vocab"), model.get("merges"),
               sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens", []))]
    elif (folder / "vocab.json").is_file():
        key = [json.loads((folder / "vocab.json").read_text(encoding="utf-8"))]
        if (folder / "merges.txt").is_file():
            key.append((folder / "merges.txt").read_text(encoding="utf-8"))
    else:
        return None
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def vocabulary(folder: str | os.PathLike) -> Vocabulary:
    """The vocabulary of the checkpoint in `folder` (config.json, tokenizer files)."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    size = cfg.get("vocab_size", cfg.get("text_config", {}).get("vocab_size"))
    return Vocabulary(int(size) if size is not None else None, _tokenizer_digest(folder))
