"""The demo's corpus: real text present on every machine, gathered in a fixed order.

Two parts, one document per file:

1. the Python standard library's own source (`*.py` under `sysconfig.get_paths()["stdlib"]`,
   excluding `site-packages` and the `test`/`tests` folders, whose generated data files dwarf
   everything else), sorted by relative path;
2. the license, readme, notice and metadata files of every installed distribution (those whose
   file name starts with LICENSE, LICENCE, COPYING, NOTICE, AUTHORS, README or is METADATA),
   sorted by distribution name then path.

Licenses are the text a language model is most likely to have memorized verbatim (they recur
across thousands of repositories), which is why the demo also samples document starts.
"""

from __future__ import annotations

import importlib.metadata
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

_DOC_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS", "README")
_SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "__pycache__"}


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    part: str  # "stdlib" or "package-docs"


def stdlib_sources() -> list[CorpusFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append(Path(dirpath) / name)
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    return [CorpusFile(p, "stdlib") for p in found]


def package_documents() -> list[CorpusFile]:
    seen: set[Path] = set()
    out = []
    dists = sorted(importlib.metadata.distributions(),
                   key=lambda d: (d.metadata["Name"] or "").lower())
    for dist in dists:
        for rel in sorted(dist.files or [], key=str):
            name = os.path.basename(str(rel))
            if not (name.upper().startswith(_DOC_PREFIXES) or name == "METADATA"):
                continue
            path = Path(dist.locate_file(rel)).resolve()
            if path.is_file() and path not in seen:
                seen.add(path)
                out.append(CorpusFile(path, "package-docs"))
    return out


def gather_files() -> list[CorpusFile]:
    """All corpus files in the documented, fixed order."""
    return stdlib_sources() + package_documents()


def read_text(path: Path) -> str:
    """File text as UTF-8, undecodable bytes replaced (a few license files are Latin-1)."""
    return path.read_bytes().decode("utf-8", errors="replace")
