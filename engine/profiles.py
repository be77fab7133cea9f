"""Profiles: which definitions a stage computes.

    check_profile("paper")                       # -> "paper"; ValueError for anything else
    meta = {**meta, **profile_metadata("paper")}  # record it in a parquet schema's metadata
    profile_of(table)                             # -> "paper" | "default" | None (not recorded)
    same_profile({"scores": t1, "features": t2}, expected="paper")   # -> "paper" or ValueError

- ``"default"``: the paper's definitions with the known hazards of its public code fixed.
- ``"paper"``: the paper's public code reproduced, hazards included, so that its numbers can be
  reproduced from one's own run (EleutherAI/semantic-memorization and Pythia's
  `eval_memorization.py`; the table of differences is docs/notes/profiles.md).

Every stage (scoring, index, features, analysis, sweep, demo) takes ``profile=`` and records it
under ``PROFILE_KEY`` in its output's schema metadata; a later stage refuses inputs written under
another profile (`same_profile`), so paper features are never analysed in default mode unnoticed.
The profile is a parameter of each call, never process state.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

__all__ = ["PROFILES", "PROFILE_KEY", "check_profile", "profile_metadata", "profile_of",
           "same_profile"]

PROFILES = ("default", "paper")
PROFILE_KEY = b"memtax.profile"


def check_profile(profile) -> str:
    """The profile name, validated: one of `PROFILES`."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not a known profile; expected one of "
                         f"{', '.join(repr(p) for p in PROFILES)}")
    return profile


def profile_metadata(profile: str) -> dict[bytes, bytes]:
    """The schema-metadata entry that records `profile`."""
    return {PROFILE_KEY: check_profile(profile).encode()}


def profile_of(obj) -> str | None:
    """The profile recorded on a pyarrow Table/Schema, a pandas DataFrame made from one
    (``df.attrs["profile"]``), or a metadata mapping; None when none is recorded (outputs written
    before profiles existed, or hand-made tables)."""
    if isinstance(obj, pa.Table):
        obj = obj.schema
    if isinstance(obj, pa.Schema):
        obj = obj.metadata or {}
    elif hasattr(obj, "attrs") and not isinstance(obj, Mapping):
        found = obj.attrs.get("profile")
        return check_profile(found) if found is not None else None
    if not isinstance(obj, Mapping):
        raise ValueError(f"cannot read a profile from a {type(obj).__name__}; expected a pyarrow "
                         "Table or Schema, a pandas DataFrame or a metadata mapping")
    raw = obj.get(PROFILE_KEY, obj.get(PROFILE_KEY.decode()))
    if raw is None:
        return None
    return check_profile(raw.decode() if isinstance(raw, bytes) else raw)


def same_profile(inputs: Mapping[str, object], expected: str | None = None) -> str:
    """The one profile shared by `inputs` ({name: table, schema, DataFrame or metadata}) and by
    `expected` (the profile of the stage that reads them); inputs that record none are taken to
    agree. ValueError naming both profiles and their sources when two differ."""
    seen: dict[str, str] = {}
    if expected is not None:
        seen["this stage"] = check_profile(expected)
    for name, obj in inputs.items():
        found = profile_of(obj)
        if found is None:
            continue
        for other, prof in seen.items():
            if prof != found:
                raise ValueError(
                    f"profile mismatch: {name} was made with profile {found!r} but {other} "
                    f"uses profile {prof!r}; recompute {name} with profile={prof!r} (or run this "
                    f"stage with profile={found!r})")
        seen[name] = found
    return next(iter(seen.values()), "default")
