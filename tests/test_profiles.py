"""engine.profiles: validation, recording and the cross-stage mismatch check."""

import pandas as pd
import pyarrow as pa
import pytest

from engine.profiles import PROFILE_KEY, check_profile, profile_metadata, profile_of, same_profile


def _table(profile=None):
    meta = profile_metadata(profile) if profile else {}
    return pa.table({"x": [1, 2]}).replace_schema_metadata(meta)


def test_check_profile_accepts_both_and_names_a_bad_one():
    assert check_profile("default") == "default"
    assert check_profile("paper") == "paper"
    with pytest.raises(ValueError, match=r"'papers'.*'default', 'paper'"):
        check_profile("papers")
    with pytest.raises(ValueError, match="None"):
        check_profile(None)


def test_profile_round_trips_through_schema_metadata():
    t = _table("paper")
    assert t.schema.metadata[PROFILE_KEY] == b"paper"
    assert profile_of(t) == "paper"
    assert profile_of(t.schema) == "paper"
    assert profile_of(_table()) is None
    df = pd.DataFrame({"x": [1]})
    df.attrs["profile"] = "default"
    assert profile_of(df) == "default"
    with pytest.raises(ValueError, match="list"):
        profile_of([1, 2])


def test_same_profile_refuses_a_mix_naming_both():
    assert same_profile({"scores": _table("paper"), "features": _table("paper")}) == "paper"
    assert same_profile({"scores": _table(), "features": _table("paper")}) == "paper"
    assert same_profile({"scores": _table()}) == "default"
    with pytest.raises(ValueError, match=r"features.*'paper'.*scores.*'default'"):
        same_profile({"scores": _table("default"), "features": _table("paper")})
    with pytest.raises(ValueError, match=r"features.*'paper'.*this stage.*'default'"):
        same_profile({"features": _table("paper")}, expected="default")
