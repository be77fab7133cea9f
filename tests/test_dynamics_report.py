"""The report's dynamics section on a hand-made label table: added to an existing report
folder (its page keeps what it had), or through a report writer; every table's CSV holds the
numbers analysis.dynamics computed; a single checkpoint gives notes instead of the figures
that need two."""

import pandas as pd
import pytest
from test_dynamics import CATEGORIES, SMALL, _table

from analysis import dynamics
from analysis.dynamics_report import write_section

PNG = b"\x89PNG\r\n\x1a\n"


def test_section_is_added_to_a_report_folder(tmp_path):
    dyn = dynamics.analyze(_table(), CATEGORIES, n_boot=50)
    (tmp_path / "index.html").write_text("<html><body><h1>report</h1><p>kept</p></body></html>")
    index = write_section(tmp_path, dyn)
    page = index.read_text()
    assert page.index("<p>kept</p>") < page.index("Memorization dynamics") < page.index(
        "</body>")
    for name in ("over_steps", "over_sizes", "transitions", "first_memorized", "categories",
                 "movement"):
        assert (tmp_path / "figures" / f"dynamics_{name}.png").read_bytes()[:8] == PNG
        assert f"figures/dynamics_{name}.png" in page
    steps = pd.read_csv(tmp_path / "tables" / "dynamics_over_steps.csv")
    pd.testing.assert_frame_equal(steps, dyn.over_steps.reset_index(drop=True),
                                  check_dtype=False)
    first = pd.read_csv(tmp_path / "tables" / "dynamics_first_memorized.csv")
    small = first[first.model == "small"].set_index("first_memorized")["samples"].to_dict()
    assert small == {10: 2, 20: 1, 40: 2}  # samples 0, 2 | 1 | 3, 5 (test_dynamics' table)
    assert "| model |" in (tmp_path / "tables" / "dynamics_states.md").read_text()


class Recorder:
    def __init__(self, root):
        self.root, self.calls = root, []

    def heading(self, text):
        self.calls.append(("heading", text))

    def text(self, text):
        self.calls.append(("text", text))

    def note(self, text):
        self.calls.append(("note", text))

    def table(self, name, df, title):
        self.calls.append(("table", name))

    def figure(self, name, draw, title):
        draw(self.root / f"{name}.png")
        self.calls.append(("figure", name))


def test_single_checkpoint_section_says_what_needs_two(tmp_path):
    dyn = dynamics.analyze(_table(steps=(40,)), n_boot=20)
    w = Recorder(tmp_path)
    assert write_section(w, dyn) is None
    names = [n for kind, n in w.calls if kind in ("table", "figure")]
    assert "dynamics_transitions" not in names and "dynamics_over_steps" not in names
    assert "dynamics_over_sizes" in names and "dynamics_states" in names
    notes = [n for kind, n in w.calls if kind == "note"]
    assert any("need two" in n for n in notes) and any("No categories" in n for n in notes)
    assert (tmp_path / "dynamics_over_sizes.png").read_bytes()[:8] == PNG


def test_a_new_folder_becomes_a_report(tmp_path):
    dyn = dynamics.analyze(_table(models=(("small", SMALL),)), n_boot=10)
    index = write_section(tmp_path / "new", dyn)
    assert index.read_text().startswith("<!doctype html>")
    with pytest.raises(ValueError, match="missing column"):
        dynamics.analyze(pd.DataFrame({"model": ["m"], "step": [1]}))

