"""The report's dynamics section: precision/recall against step and size, transition heatmaps,
first-memorized histograms, category shares over steps and movement between categories, each
figure beside the same numbers as CSV and markdown.

    dyn = analysis.dynamics.analyze(labels, categories)
    write_section(writer, dyn)          # inside analysis.report's page (its ReportWriter)
    write_section("report/", dyn)       # appended to an existing report folder's index.html,
                                        # or a report folder of its own when there is none

Figures are drawn with matplotlib's object API (no backend is chosen or changed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.dynamics import NOT_MEMORIZED, STATES, UNSEEN, Dynamics
from analysis.report import ReportWriter, page_html, publish
from analysis.taxonomy import CATEGORIES
from engine.output import write_atomic
from engine.profiles import same_profile

__all__ = ["write_section", "report_sweep", "check_sweep_profile", "categories_from_features",
           "SECTION_TITLE"]

SECTION_TITLE = "Memorization dynamics"
_COLORS = {"recitation": "#d62728", "reconstruction": "#2ca02c", "recollection": "#1f77b4",
           NOT_MEMORIZED: "#c7c7c7", UNSEEN: "#f0f0f0"}


def categories_from_features(features, recitation_threshold: float = 5) -> pd.DataFrame:
    """(sample_id, category) of a feature table, by `analysis.taxonomy.classify`."""
    from analysis import taxonomy

    return pd.DataFrame({"sample_id": taxonomy.column(features, "sample_id"),
                         "category": taxonomy.classify(features, recitation_threshold)})


# ---------------------------------------------------------------------------------------------
# Figures


def _figure(width: float, height: float, ncols: int = 1, **kw):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False, **kw)[0]


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")


def _band(ax, x, df: pd.DataFrame, name: str, color, label: str) -> None:
    ax.plot(x, df[name], marker="o", color=color, label=label)
    ax.fill_between(x, df[f"{name}_lo"], df[f"{name}_hi"], color=color, alpha=0.2, linewidth=0)


def plot_over_steps(df: pd.DataFrame, path) -> None:
    """Precision and recall of each checkpoint for the final one, one panel per model."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = _figure(4.5 * len(models) + 1, 3.8, len(models), sharey=True)
    for ax, model in zip(axes, models):
        sub = df[df.model == model]
        _band(ax, sub["step"], sub, "precision", "#1f77b4", "precision")
        _band(ax, sub["step"], sub, "recall", "#ff7f0e", "recall")
        ax.set_xlabel("training step")
        ax.set_title(f"{model}: predicting step {int(sub['final_step'].iloc[0])}")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def plot_over_sizes(df: pd.DataFrame, path) -> None:
    """Precision and recall of each smaller model for the largest, models in size order."""
    fig, axes = _figure(max(4.5, 1.2 * len(df) + 2), 3.8)
    x = np.arange(len(df))
    _band(axes[0], x, df, "precision", "#1f77b4", "precision")
    _band(axes[0], x, df, "recall", "#ff7f0e", "recall")
    axes[0].set_xticks(x, [str(m) for m in df["model"]], rotation=30, ha="right")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_title(f"predicting {df['target_model'].iloc[0]}")
    axes[0].legend(fontsize=8)
    _save(fig, path)


def plot_transitions(df: pd.DataFrame, path) -> None:
    """Heatmap per model: share of the samples seen at both checkpoints in each transition,
    per pair of consecutive checkpoints."""
    kinds = ["mem_to_mem", "mem_to_not", "not_to_mem", "not_to_not"]
    models = list(dict.fromkeys(df["model"]))
    fig, axes = _figure(max(5, 0.6 * df["model"].value_counts().max() + 3) * len(models), 3.4,
                        len(models))
    for ax, model in zip(axes, models):
        sub = df[df.model == model]
        shares = sub[kinds].to_numpy(float).T / np.maximum(sub["samples"].to_numpy(float), 1)
        im = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_yticks(range(4), ["M -> M", "M -> not", "not -> M", "not -> not"])
        ax.set_xticks(range(len(sub)), [f"{a}->{b}" for a, b in zip(sub.step_from, sub.step_to)],
                      rotation=45, ha="right", fontsize=7)
        for (i, j), v in np.ndenumerate(np.asarray(sub[kinds]).T):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7, color="w")
        ax.set_title(model)
        fig.colorbar(im, ax=ax, label="share of samples seen at both")
    _save(fig, path)


def plot_first_memorized(per_sample: pd.DataFrame, path) -> None:
    """Histogram of the first step at which each sample is memorized, one panel per model."""
    models = list(dict.fromkeys(per_sample["model"]))
    fig, axes = _figure(4.5 * len(models) + 1, 3.6, len(models))
    for ax, model in zip(axes, models):
        first = per_sample.loc[per_sample.model == model, "first_memorized"].dropna()
        counts = first.astype(int).value_counts().sort_index()
        ax.bar(range(len(counts)), counts.to_numpy(), color="#9467bd")
        ax.set_xticks(range(len(counts)), [str(s) for s in counts.index], rotation=45,
                      ha="right", fontsize=8)
        ax.set_xlabel("first step memorized")
        ax.set_title(model)
    axes[0].set_ylabel("samples")
    _save(fig, path)


def plot_category_shares(df: pd.DataFrame, path) -> None:
    """Stacked category shares of memorized samples per checkpoint, one panel per model."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = _figure(4.5 * len(models) + 1.5, 4, len(models), sharey=True)
    for ax, model in zip(axes, models):
        wide = df[df.model == model].pivot(index="step", columns="category", values="share")
        bottom = np.zeros(len(wide))
        for c in wide.columns:
            vals = np.nan_to_num(wide[c].to_numpy(float))
            ax.bar(range(len(wide)), vals, bottom=bottom, color=_COLORS.get(c), label=c)
            bottom += vals
        ax.set_xticks(range(len(wide)), [str(s) for s in wide.index], rotation=45, ha="right",
                      fontsize=8)
        ax.set_xlabel("training step")
        ax.set_title(model)
    axes[0].set_ylabel("share of memorized samples")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def plot_movement(df: pd.DataFrame, path) -> None:
    """Heatmap per model of samples moving between states, summed over consecutive pairs."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = _figure(5 * len(models) + 1, 4.2, len(models))
    for ax, model in zip(axes, models):
        tab = df[df.model == model].pivot_table(index="from_state", columns="to_state",
                                                values="samples", aggfunc="sum", fill_value=0)
        states = [s for s in (UNSEEN, NOT_MEMORIZED, *CATEGORIES)
                  if s in tab.index or s in tab.columns]
        states += sorted((set(tab.index) | set(tab.columns)) - set(states))
        tab = tab.reindex(index=states, columns=states, fill_value=0)
        shade = np.log1p(tab.to_numpy(float))
        ax.imshow(shade, cmap="magma_r")
        for (i, j), v in np.ndenumerate(tab.to_numpy()):
            dark = shade[i, j] > 0.6 * shade.max()
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                    color="w" if dark else "k")
        ax.set_xticks(range(len(states)), states, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(states)), states, fontsize=8)
        ax.set_xlabel("state at the next checkpoint")
        ax.set_ylabel("state")
        ax.set_title(model)
    _save(fig, path)


# ---------------------------------------------------------------------------------------------
# The section


def _first_memorized_table(per_sample: pd.DataFrame) -> pd.DataFrame:
    first = per_sample.dropna(subset=["first_memorized"])
    out = first.groupby(["model", "first_memorized"], sort=False).size().reset_index(
        name="samples")
    return out.astype({"first_memorized": int})


def write_section(target, dyn: Dynamics, *, title: str = SECTION_TITLE) -> Path | None:
    """Add the dynamics section to `target`: a report writer (analysis.report's, with
    heading/text/note/table/figure), or a report folder (its index.html gains the section
    before </body>; a missing folder becomes a report of its own). Returns the index.html of
    a folder target, None for a writer."""
    if hasattr(target, "heading"):
        _section(target, dyn, title)
        return None
    folder = _FolderSection(Path(target), title)
    _section(folder, dyn, title)
    return folder.finish()


def _section(w, dyn: Dynamics, title: str) -> None:
    w.heading(title)
    w.text("Per model and checkpoint, over the samples each checkpoint has seen (where the "
           "training-stream position is known). States: stable (memorized at the final "
           "checkpoint and before), late (at the final checkpoint only), forgotten (memorized "
           "before, not at the final checkpoint), never.")
    for note in dyn.notes:
        w.note(note)
    w.table("dynamics_states", dyn.states, "End states per model")
    first = _first_memorized_table(dyn.per_sample)
    if len(first):
        w.figure("dynamics_first_memorized", lambda p: plot_first_memorized(dyn.per_sample, p),
                 "First step at which each sample is memorized")
        w.table("dynamics_first_memorized", first, "Samples by first step memorized")
    if dyn.over_steps is not None:
        w.figure("dynamics_over_steps", lambda p: plot_over_steps(dyn.over_steps, p),
                 "Precision and recall of each checkpoint's memorized set for the final "
                 "checkpoint's (95% bootstrap intervals)")
        w.table("dynamics_over_steps", dyn.over_steps, "Predicting the final checkpoint")
    if dyn.over_sizes is not None:
        w.figure("dynamics_over_sizes", lambda p: plot_over_sizes(dyn.over_sizes, p),
                 "Precision and recall of smaller models' memorized sets for the largest's")
        w.table("dynamics_over_sizes", dyn.over_sizes, "Predicting the largest model")
    if dyn.transitions is not None:
        w.figure("dynamics_transitions", lambda p: plot_transitions(dyn.transitions, p),
                 "Transitions between consecutive checkpoints (counts; colour: share)")
        w.table("dynamics_transitions", dyn.transitions, "Transitions and rates")
    if dyn.categories is not None:
        w.figure("dynamics_categories", lambda p: plot_category_shares(dyn.categories, p),
                 "Category shares of memorized samples per checkpoint, each model on its own")
        w.table("dynamics_categories", dyn.categories, "Categories per checkpoint")
    if dyn.movement is not None and len(dyn.movement):
        w.figure("dynamics_movement", lambda p: plot_movement(dyn.movement, p),
                 "Samples moving between states from one checkpoint to the next (summed)")
        w.table("dynamics_movement", dyn.movement, "Movement between states")


class _FolderSection(ReportWriter):
    """The report writer on an existing (or new) report folder: files into figures/ and
    tables/, the HTML collected and spliced into index.html by `finish()` (written
    atomically)."""

    def __init__(self, root: Path, title: str):
        super().__init__(root, exist_ok=True)
        self.title = title

    def finish(self) -> Path:
        index = self.root / "index.html"
        section = "\n".join(self.sections)
        if index.is_file():
            page = index.read_text(encoding="utf-8")
            cut = page.rfind("</body>")
            page = page[:cut] + section + page[cut:] if cut >= 0 else page + section
        else:
            page = page_html(self.title, section, heading=False)
        write_atomic(index, lambda tmp: tmp.write_text(page, encoding="utf-8"))
        (self.root / "tables" / "dynamics.json").write_text(json.dumps(
            {"notes": self.notes, "states": list(STATES)}, indent=1))
        return index


# ---------------------------------------------------------------------------------------------
# A sweep folder into a report


def check_sweep_profile(sweep, profile: str, *, features=None):
    """The opened sweep (a path or a Sweep) after checking that it and `features` record
    `profile` or none (ValueError naming both otherwise)."""
    import engine

    sw = engine.open_sweep(sweep) if not hasattr(sweep, "labels") else sweep
    recorded = sw.run.get("profile")
    inputs = {"the sweep": {"memtax.profile": recorded} if recorded else {}}
    if features is not None:
        inputs["the feature table"] = features
    same_profile(inputs, expected=profile)
    return sw


def report_sweep(sweep, out, *, features=None, recitation_threshold: float = 5,
                 n_boot: int = 1000, seed: int = 0, force: bool = False,
                 profile: str = "default") -> Path:
    """The dynamics section of an `engine.sweep` folder in report folder `out`.

    features: the feature table of the samples (e.g. the report's primary run): its categories
    (`categories_from_features`) give the taxonomy over time; its report folder `out` gains the
    section. Without features, `out` becomes a report of its own (FileExistsError when it holds
    one, unless force). profile: the analysis's profile; the sweep (its manifest's run) and the
    feature table must record the same one or none (ValueError naming both). Returns the
    index.html path."""
    from analysis import dynamics

    sw = check_sweep_profile(sweep, profile, features=features)
    labels = dynamics.from_sweep(sw)
    cats, note = None, None
    if features is not None:
        cats = categories_from_features(features, recitation_threshold)
        lacking = np.setdiff1d(labels.loc[labels["memorized"], "sample_id"], cats["sample_id"])
        if lacking.size:
            cats, note = None, (f"Categories over steps left out: {lacking.size} memorized sweep "
                                f"samples are not in the feature table (e.g. sample_id "
                                f"{lacking[:3].tolist()}).")
    dyn = dynamics.analyze(labels, cats, n_boot=n_boot, seed=seed)
    if note:
        dyn.notes.append(note)
    out = Path(out)
    if features is not None:
        return write_section(out, dyn)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"report folder {out} already exists (use force=True / --force)")
    publish(out, lambda folder: write_section(folder, dyn))
    return out / "index.html"
