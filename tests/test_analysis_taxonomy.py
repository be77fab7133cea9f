"""Taxonomy rules on hand-made rows (ties at the threshold included) and category shares."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis import scaling, taxonomy


def _rows():
    # duplicates, is_templating, exact_match, expected category (threshold 5)
    rows = [
        (0, False, True, "recollection"),
        (5, False, True, "recollection"),  # tie: 5 is not > 5
        (5, True, False, "reconstruction"),  # tie + templated
        (6, False, True, "recitation"),
        (6, True, True, "recitation"),  # recitation is checked before templating
        (1000, False, False, "recitation"),
        (2, True, True, "reconstruction"),
        (4, False, False, "recollection"),
    ]
    df = pd.DataFrame(rows, columns=["duplicates", "is_templating", "exact_match", "expected"])
    return df


def test_rules_and_ties_pandas_and_arrow():
    df = _rows()
    got = taxonomy.classify(df)
    assert got.tolist() == df["expected"].tolist()
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert taxonomy.classify(table).tolist() == df["expected"].tolist()


def test_threshold_parameter_moves_the_tie():
    df = _rows()
    got = taxonomy.classify(df, recitation_threshold=4)
    # rows with 5 duplicates become recitation, the others keep their category
    expected = np.where(df["duplicates"] == 5, "recitation", df["expected"])
    assert got.tolist() == expected.tolist()


def test_templating_fallback_from_repeating_or_incrementing():
    df = pd.DataFrame(
        {
            "duplicates": [0, 0, 0, 9],
            "is_repeating": [True, False, False, True],
            "is_incrementing": [False, True, False, False],
        }
    )
    assert taxonomy.classify(df).tolist() == [
        "reconstruction",
        "reconstruction",
        "recollection",
        "recitation",
    ]


def test_shares_counts_by_hand():
    df = _rows()
    s = taxonomy.shares(df).set_index("category")
    # memorized rows: recollection x2 (0, 5), recitation x2 (6, 6), reconstruction x1 (2)
    assert s.loc["recitation", "memorized"] == 2
    assert s.loc["reconstruction", "memorized"] == 1
    assert s.loc["recollection", "memorized"] == 2
    assert s["share"].sum() == pytest.approx(1.0)
    assert s.loc["recitation", "share"] == pytest.approx(2 / 5)
    assert s.loc["recitation", "candidates"] == 3
    assert s.loc["recollection", "memorization_rate"] == pytest.approx(2 / 3)


def test_missing_columns_and_nan_duplicates():
    with pytest.raises(ValueError, match="duplicates"):
        taxonomy.classify(pd.DataFrame({"is_templating": [True]}))
    with pytest.raises(ValueError, match="is_templating"):
        taxonomy.classify(pd.DataFrame({"duplicates": [1]}))
    with pytest.raises(ValueError, match="missing"):
        taxonomy.classify(pd.DataFrame({"duplicates": [np.nan], "is_templating": [False]}))
    with pytest.raises(ValueError, match="pyarrow.Table or pandas.DataFrame"):
        taxonomy.classify({"duplicates": [1]})


def test_scaling_never_pools_runs():
    a, b = _rows(), _rows()
    b["exact_match"] = ~b["exact_match"]
    out = scaling.shares_across({"EleutherAI/pythia-1.4b@step3000": a, "pythia-70m": b})
    for run, df in (("EleutherAI/pythia-1.4b@step3000", a), ("pythia-70m", b)):
        got = out[out.run == run].set_index("category")
        want = taxonomy.shares(df).set_index("category")
        assert got["memorized"].tolist() == want["memorized"].tolist()
        assert np.allclose(got["share"], want["share"])
    assert scaling.parse_label("EleutherAI/pythia-1.4b@step3000") == (1.4e9, 3000.0)
    size, step = scaling.parse_label("pythia-70m")
    assert size == 70e6 and np.isnan(step)
