"""The report's figures: every function draws one PNG.

Figures are made with matplotlib's object API (`Figure` on an Agg canvas), never through
pyplot, so drawing them neither needs nor changes the process's matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis import taxonomy

COLORS = {
    "recitation": "#d62728",
    "reconstruction": "#2ca02c",
    "recollection": "#1f77b4",
    "baseline": "#7f7f7f",
    "all": "#7f7f7f",
    "taxonomic": "#9467bd",
    "partition": "#ff7f0e",
    "code": "#8c564b",
    "natural language": "#e377c2",
}


_HATCH = {"natural language": "//", "code": ".."}


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kw):
    """(figure, axes) like pyplot.subplots, on a figure of its own (no pyplot state)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    return path


def shares(df: pd.DataFrame, path) -> Path:
    """Stacked bars of category shares of memorized samples per run (`scaling.shares_across`)."""
    runs = list(dict.fromkeys(df["run"]))
    fig, ax = _subplots(figsize=(max(5, 1.2 * len(runs) + 2), 4))
    bottom = np.zeros(len(runs))
    for c in taxonomy.CATEGORIES:
        vals = np.array(
            [float(df[(df.run == r) & (df.category == c)]["share"].iloc[0]) for r in runs]
        )
        vals = np.nan_to_num(vals)
        ax.bar(range(len(runs)), vals, bottom=bottom, color=COLORS[c], label=c)
        bottom += vals
    ax.set_xticks(range(len(runs)), [_run_tick(r) for r in runs], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel("share of memorized samples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Memorization categories per run")
    return _save(fig, path)


def _run_tick(run: str) -> str:
    """A run's tick label: each pooled run's name without its organisation, one per line."""
    return "\n+ ".join(part.split("/")[-1] for part in run.split(" + "))


def coefficients(coef: pd.DataFrame, path) -> Path:
    """Coefficients with confidence intervals per model/group on a symlog axis."""
    coef = coef[coef.feature != "intercept"]
    feats = list(dict.fromkeys(coef["feature"]))
    groups = list(dict.fromkeys(zip(coef["model"], coef["group"])))
    fig, ax = _subplots(figsize=(7, 0.38 * len(feats) * max(1, len(groups)) ** 0.5 + 2))
    height = 0.8 / max(1, len(groups))
    for k, (model, group) in enumerate(groups):
        sub = coef[(coef.model == model) & (coef.group == group)].set_index("feature")
        ys = np.arange(len(feats)) + (k - (len(groups) - 1) / 2) * height
        val = np.array([sub["coef"].get(f, np.nan) for f in feats], dtype=float)
        lo = np.array([sub["lo"].get(f, np.nan) for f in feats], dtype=float)
        hi = np.array([sub["hi"].get(f, np.nan) for f in feats], dtype=float)
        err = np.vstack([np.nan_to_num(val - lo), np.nan_to_num(hi - val)])
        label = model if group == "all" else f"{model}: {group}"
        ax.errorbar(
            val,
            ys,
            xerr=err,
            fmt="o",
            ms=3,
            capsize=2,
            label=label,
            color=COLORS.get(group, COLORS.get(model)),
        )
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yticks(range(len(feats)), feats, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("coefficient (standardized features), 95% CI")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Logistic regression coefficients")
    return _save(fig, path)


def pr_curves(y: np.ndarray, probs: dict[str, np.ndarray], path) -> Path:
    """Precision-recall curves of each model on the test set."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = _subplots(figsize=(5, 4))
    for name, p in probs.items():
        prec, rec, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(rec, prec, where="post", label=f"{name} (AP {ap:.3f})", color=COLORS.get(name))
    ax.axhline(np.mean(y), ls=":", color="k", lw=0.8, label="prior")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Precision-recall (test set)")
    return _save(fig, path)


def calibration(y: np.ndarray, probs: dict[str, np.ndarray], path, n_bins: int = 5) -> Path:
    """Reliability diagram: observed memorization rate against mean predicted probability."""
    from sklearn.calibration import calibration_curve

    fig, ax = _subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], ls=":", color="k", lw=0.8)
    for name, p in probs.items():
        frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        ax.plot(mean, frac, "o-", label=name, color=COLORS.get(name))
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction memorized")
    ax.legend(fontsize=8)
    ax.set_title(f"Calibration ({n_bins} bins, test set)")
    return _save(fig, path)


def dependencies(dep: pd.DataFrame, path) -> Path:
    """Bars of each dependence measure per feature and subset."""
    methods = list(dict.fromkeys(dep["method"]))
    feats = list(dict.fromkeys(dep["feature"]))
    subsets = list(dict.fromkeys(dep["subset"]))
    # the paper profile's subsets cross categories with code / natural language: taller bars
    # group, each category's colour hatched by code type
    per_feature = 0.3 * max(1.0, len(subsets) / 6)
    fig, axes = _subplots(
        1, len(methods), figsize=(4.2 * len(methods), per_feature * len(feats) + 2), sharey=True
    )
    axes = np.atleast_1d(axes)
    h = 0.8 / max(1, len(subsets))
    for ax, m in zip(axes, methods):
        for k, s in enumerate(subsets):
            sub = dep[(dep.method == m) & (dep.subset == s)].set_index("feature")["statistic"]
            vals = np.nan_to_num(np.array([sub.get(f, np.nan) for f in feats], dtype=float))
            base, _, kind = s.partition(" / ")
            ax.barh(
                np.arange(len(feats)) + (k - (len(subsets) - 1) / 2) * h,
                vals,
                height=h,
                label=s,
                color=COLORS.get(base),
                hatch=_HATCH.get(kind),
                edgecolor="white" if kind else None,
                linewidth=0,
            )
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(m)
    axes[0].set_yticks(range(len(feats)), feats, fontsize=8)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Dependence of memorization on each feature")
    return _save(fig, path)


def threshold_curve(kl: pd.DataFrame, suggested, path) -> Path:
    """Symmetric KL per duplicate count with bootstrap intervals and the suggested threshold."""
    fig, ax = _subplots(figsize=(5.5, 3.8))
    ok = kl["kl"].notna()
    d = kl.loc[ok, "duplicates"].to_numpy()
    v = kl.loc[ok, "kl"].to_numpy()
    ax.plot(d, v, "o-", color="#1f77b4", label="symmetric KL")
    ax.fill_between(d, kl.loc[ok, "lo"], kl.loc[ok, "hi"], alpha=0.25, color="#1f77b4")
    if suggested is not None:
        ax.axvline(
            suggested + 0.5, ls="--", color="#d62728", label=f"suggested threshold: > {suggested}"
        )
    ax.set_xlabel("duplicates of the continuation")
    ax.set_ylabel("KL (nats), memorized vs not")
    ax.legend(fontsize=8)
    ax.set_title("Continuation perplexity divergence by duplicate count")
    return _save(fig, path)


def memorization_vs_duplicates(df: pd.DataFrame, path) -> Path:
    """Memorization rate against duplicate count (log-spaced bins, Wilson intervals), one line
    per run (`scaling.memorization_by_duplicates`)."""
    fig, ax = _subplots(figsize=(6, 4))
    for run in dict.fromkeys(df["run"]):
        sub = df[df.run == run]
        # each bin at the geometric middle of the counts it holds (count 0 drawn at 0.5)
        x = np.sqrt(np.maximum(sub["bin_lo"], 0.5) * np.maximum(sub["bin_hi"], 0.5))
        rate = sub["rate"].to_numpy()
        err = np.clip(np.vstack([rate - sub["lo"].to_numpy(), sub["hi"].to_numpy() - rate]), 0,
                      None)  # the interval's ends may sit a rounding error past the rate
        ax.errorbar(x, rate, yerr=err, fmt="o-", ms=4, capsize=3, label=run.split("/")[-1])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("duplicates of the continuation in the training data (log-spaced bins)")
    ax.set_ylabel("share memorized (95% Wilson interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Memorization rises with duplication")
    return _save(fig, path)


def memorized_by_checkpoint(df: pd.DataFrame, path) -> Path:
    """Memorized count per training step, one line per model (`scaling.memorized_by_checkpoint`)."""
    fig, ax = _subplots(figsize=(6, 4))
    for model in dict.fromkeys(df["model"]):
        sub = df[df.model == model]
        ax.plot(sub["step"], sub["memorized"], "o-", ms=4, label=model)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel("memorized samples")
    ax.legend(fontsize=8)
    ax.set_title("Memorized samples along training")
    return _save(fig, path)


def shares_by_checkpoint(df: pd.DataFrame, path) -> Path:
    """Stacked category shares per checkpoint, one panel per model (never pooled across models;
    `scaling.shares_by_checkpoint`)."""
    models = list(dict.fromkeys(df["model"]))
    fig, axes = _subplots(1, len(models), figsize=(4.5 * len(models) + 1.5, 4), sharey=True,
                          squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = df[df.model == model]
        steps = sorted(dict.fromkeys(sub["step"]))
        bottom = np.zeros(len(steps))
        for c in taxonomy.CATEGORIES:
            vals = np.array([float(sub[(sub.step == s) & (sub.category == c)]["share"].iloc[0])
                             for s in steps])
            vals = np.nan_to_num(vals)
            ax.bar(range(len(steps)), vals, bottom=bottom, color=COLORS[c], label=c)
            bottom += vals
        ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=45, ha="right",
                      fontsize=8)
        ax.set_xlabel("training step")
        ax.set_title(model)
    axes[0][0].set_ylabel("share of memorized samples")
    axes[0][0].set_ylim(0, 1)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)
