"""Where a model (or tokenizer) spec points: `name@revision`, local folders and their revisions.

    parse_model_spec("EleutherAI/pythia-160m@step143000")  -> ("EleutherAI/pythia-160m", "step143000")
    local_revision_folder(Path("suite/models/small"), "step100")  -> suite/models/small/step100

A local folder's revision is a subfolder named after it (how a locally trained suite stores its
checkpoints: `<suite>/models/<name>/step<N>/`, selectable as `<suite>/models/<name>@step<N>`),
or a Hugging Face cache layout (`refs/REV` -> `snapshots/HASH`, or the hash itself).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["parse_model_spec", "local_revision_folder", "looks_like_path", "is_hub_id"]

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """'name@revision' -> (name, revision); a plain name -> (name, None).

    Only the last '@' counts, and only when what follows contains no path separator, so
    folders with '@' in their names still work when they exist as given.
    """
    spec = str(spec)
    if "@" in spec and not os.path.exists(spec):
        name, rev = spec.rsplit("@", 1)
        if rev and "/" not in rev and os.sep not in rev:
            return name, rev
    return spec, None


def looks_like_path(name: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else that does not exist is a missing path."""
    return (
        name.startswith((".", "/", "~"))
        or (os.sep != "/" and os.sep in name)
        or name.count("/") > 1
        or name.endswith((".gguf", ".safetensors", ".bin"))
    )


def is_hub_id(name: str) -> bool:
    """A name shaped like a Hugging Face id ('name' or 'org/name'), not like a path."""
    return not looks_like_path(name) and bool(_HF_ID.match(name))


def _natural_key(name: str) -> list:
    """step2 < step10 < step100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def local_revision_folder(folder: Path, revision: str) -> Path:
    """The folder holding revision `revision` of the local model folder `folder` (see the module
    docstring). FileNotFoundError naming the revisions there when it is missing."""
    sub = folder / revision
    if sub.is_dir():
        return sub
    ref = folder / "refs" / revision
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snap = folder / "snapshots" / revision
    if snap.is_dir():
        return snap
    avail = sorted((p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=_natural_key)
    if (folder / "refs").is_dir():
        avail += sorted(p.name for p in (folder / "refs").iterdir())
    raise FileNotFoundError(
        f"revision {revision!r} of model folder {str(folder)!r} not found locally; expected a "
        f"subfolder or cached ref named {revision!r}; available: {avail or 'none'}"
    )
