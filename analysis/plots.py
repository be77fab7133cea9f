"""The report's figures (matplotlib, Agg backend; every function writes one PNG and closes it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import taxonomy  # noqa: E402

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


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def shares(df: pd.DataFrame, path) -> Path:
    """Stacked bars of category shares of memorized samples per run (`scaling.shares_across`)."""
    runs = list(dict.fromkeys(df["run"]))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(runs) + 2), 4))
    bottom = np.zeros(len(runs))
    for c in taxonomy.CATEGORIES:
        vals = np.array(
            [float(df[(df.run == r) & (df.category == c)]["share"].iloc[0]) for r in runs]
        )
        vals = np.nan_to_num(vals)
        ax.bar(range(len(runs)), vals, bottom=bottom, color=COLORS[c], label=c)
        bottom += vals
    ax.set_xticks(range(len(runs)), [r.split("/")[-1] for r in runs], rotation=30, ha="right")
    ax.set_ylabel("share of memorized samples")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Memorization categories per run")
    return _save(fig, path)


def coefficients(coef: pd.DataFrame, path) -> Path:
    """Coefficients with confidence intervals per model/group on a symlog axis."""
    coef = coef[coef.feature != "intercept"]
    feats = list(dict.fromkeys(coef["feature"]))
    groups = list(dict.fromkeys(zip(coef["model"], coef["group"])))
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(feats) * max(1, len(groups)) ** 0.5 + 2))
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

    fig, ax = plt.subplots(figsize=(5, 4))
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

    fig, ax = plt.subplots(figsize=(5, 4))
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
    fig, axes = plt.subplots(
        1, len(methods), figsize=(4.2 * len(methods), 0.3 * len(feats) + 2), sharey=True
    )
    axes = np.atleast_1d(axes)
    h = 0.8 / max(1, len(subsets))
    for ax, m in zip(axes, methods):
        for k, s in enumerate(subsets):
            sub = dep[(dep.method == m) & (dep.subset == s)].set_index("feature")["statistic"]
            vals = np.nan_to_num(np.array([sub.get(f, np.nan) for f in feats], dtype=float))
            ax.barh(
                np.arange(len(feats)) + (k - (len(subsets) - 1) / 2) * h,
                vals,
                height=h,
                label=s,
                color=COLORS.get(s),
            )
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(m)
    axes[0].set_yticks(range(len(feats)), feats, fontsize=8)
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=7)
    fig.suptitle("Dependence of memorization on each feature")
    return _save(fig, path)


def threshold_curve(kl: pd.DataFrame, suggested, path) -> Path:
    """Symmetric KL per duplicate count with bootstrap intervals and the suggested threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
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
