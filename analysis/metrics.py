"""Classification metrics and their bootstrap confidence intervals, vectorised.

Every metric is computed from *weighted* rows: a bootstrap resample is the same as weighting each
test row by how often it was drawn, so the scores are sorted once and every replicate costs a few
cumulative sums over a (replicates, n) weight matrix; nothing is re-sorted per replicate.
With unit weights the values equal scikit-learn's:

- precision, recall, F1 of the hard labels ``p > threshold`` (scikit-learn's `predict` rule;
  0 when undefined, as `zero_division=0`),
- ROC-AUC (trapezoid over distinct thresholds, ties handled as `roc_auc_score`),
- PR-AUC as average precision, ``sum_k (R_k - R_{k-1}) P_k`` (`average_precision_score`),
- ECE, the paper's definition (semantic-memorization `model_utils.expected_calibration_error`):
  confidence = max(p, 1 - p), prediction = argmax (so p = 0.5 predicts 0), 5 uniform bins
  (lower, upper], ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

Paper mode scores ROC-AUC and PR-AUC from the hard labels, as the paper's code did when it passed
`predict` output to scikit-learn; memtax's default uses the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS: tuple[str, ...] = ("precision", "recall", "f1", "roc_auc", "pr_auc", "ece")

# Rows * replicates per chunk of the bootstrap: bounds the weight matrix to ~64 MB of float64.
_CHUNK_ELEMENTS = 8_000_000


@dataclass
class _Prepared:
    """Test rows sorted by decreasing score, with everything the weighted metrics need."""

    order: np.ndarray  # (n,) permutation: sorted position -> original row
    y: np.ndarray  # (n,) float64 labels in sorted order
    ends: np.ndarray  # (G,) last sorted position of each group of tied scores
    pred: np.ndarray  # (n,) float64 hard labels in sorted order
    ece_delta: np.ndarray  # (n, n_bins) one-hot bin * (confidence - correct), sorted order


def _check(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"y and p must be 1-D of equal length, got {y.shape} and {p.shape}")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isfinite(p).all():
        raise ValueError("predicted probabilities contain NaN or infinite values")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("predicted probabilities must lie in [0, 1]")
    return y.astype(bool), p


def _prepare(y, p, threshold: float, n_bins: int, hard_auc: bool) -> _Prepared:
    y, p = _check(y, p)
    pred = p > threshold
    score = pred.astype(np.float64) if hard_auc else p
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    ends = np.flatnonzero(np.diff(s_sorted) != 0)
    ends = np.append(ends, s_sorted.size - 1)
    conf = np.maximum(p, 1.0 - p)
    correct = (p > 0.5) == y  # argmax of (1 - p, p): a tie predicts class 0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], conf, side="left")  # bin b holds (edges[b], edges[b+1]]
    delta = np.zeros((y.size, n_bins))
    delta[np.arange(y.size), bins] = conf - correct
    return _Prepared(
        order=order,
        y=y[order].astype(np.float64),
        ends=ends,
        pred=pred[order].astype(np.float64),
        ece_delta=delta[order],
    )


def _weighted(prep: _Prepared, w: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics for each row of weights `w` (B, n), given in *sorted* order."""
    wy = w * prep.y
    tp = np.cumsum(wy, axis=1)[:, prep.ends]
    allc = np.cumsum(w, axis=1)[:, prep.ends]
    fp = allc - tp
    pos, neg = tp[:, -1], fp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / pos[:, None]
        fpr = fp / neg[:, None]
        zeros = np.zeros((w.shape[0], 1))
        tpr0 = np.hstack([zeros, tpr])
        fpr0 = np.hstack([zeros, fpr])
        roc = np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) * 0.5, axis=1)
        prec_curve = np.divide(tp, allc, out=np.zeros_like(tp), where=allc > 0)
        ap = np.sum(np.diff(tpr0, axis=1) * prec_curve, axis=1)
        roc[(pos == 0) | (neg == 0)] = np.nan
        ap[pos == 0] = np.nan
        tp_h = wy @ prep.pred
        pp = w @ prep.pred
        precision = np.divide(tp_h, pp, out=np.zeros_like(tp_h), where=pp > 0)
        recall = np.divide(tp_h, pos, out=np.zeros_like(tp_h), where=pos > 0)
        denom = pp + pos
        f1 = np.divide(2 * tp_h, denom, out=np.zeros_like(tp_h), where=denom > 0)
        total = w.sum(axis=1)
        ece = np.abs(w @ prep.ece_delta).sum(axis=1) / total
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc,
        "pr_auc": ap,
        "ece": ece,
    }


def evaluate(
    y, p, *, threshold: float = 0.5, n_bins: int = 5, hard_auc: bool = False
) -> dict[str, float]:
    """Point estimates of METRICS for labels `y` (n,) and probabilities `p` (n,)."""
    prep = _prepare(y, p, threshold, n_bins, hard_auc)
    out = _weighted(prep, np.ones((1, prep.y.size)))
    return {k: float(v[0]) for k, v in out.items()}


def _replicate_weights(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """(b, n) draw counts of b bootstrap resamples of n rows (indices drawn once per replicate)."""
    w = np.empty((b, n))
    for i in range(b):
        w[i] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return w


def bootstrap(
    y,
    p,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
    n_bins: int = 5,
    hard_auc: bool = False,
) -> pd.DataFrame:
    """Metrics with percentile bootstrap intervals over the test rows.

    Returns:
        DataFrame with columns `metric`, `value`, `lo`, `hi` (a (1 - alpha) interval), one row per
        entry of METRICS.
    """
    return paired_bootstrap(
        y, {"m": p}, n_boot=n_boot, alpha=alpha, seed=seed, threshold=threshold,
        n_bins=n_bins, hard_auc=hard_auc,
    )["m"]


def paired_bootstrap(
    y,
    probs: dict[str, np.ndarray],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
    n_bins: int = 5,
    hard_auc: bool = False,
    differences: tuple[tuple[str, str], ...] = (),
) -> dict[str, pd.DataFrame]:
    """Bootstrap several models' predictions on the *same* resamples of the test rows.

    Args:
        y: (n,) labels. probs: name -> (n,) probabilities.
        differences: pairs (a, b); adds an entry "a-b" with intervals of metric(a) - metric(b)
            (paired: both computed on each resample).

    Returns:
        name (and "a-b") -> DataFrame(metric, value, lo, hi).
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    preps = {k: _prepare(y, v, threshold, n_bins, hard_auc) for k, v in probs.items()}
    n = next(iter(preps.values())).y.size
    points = {k: _weighted(pr, np.ones((1, n))) for k, pr in preps.items()}
    reps: dict[str, dict[str, list]] = {k: {m: [] for m in METRICS} for k in preps}
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        w = _replicate_weights(rng, n, b)
        for k, pr in preps.items():
            vals = _weighted(pr, w[:, pr.order])
            for m in METRICS:
                reps[k][m].append(vals[m])
        done += b
    out: dict[str, pd.DataFrame] = {}

    def frame(point: dict, rep: dict) -> pd.DataFrame:
        rows = []
        for m in METRICS:
            r = np.concatenate(rep[m]) if rep[m] else np.array([])
            r = r[np.isfinite(r)]
            lo, hi = (
                np.quantile(r, [alpha / 2, 1 - alpha / 2]) if r.size else (np.nan, np.nan)
            )
            rows.append({"metric": m, "value": float(point[m][0]), "lo": float(lo),
                         "hi": float(hi)})
        return pd.DataFrame(rows)

    for k in preps:
        out[k] = frame(points[k], reps[k])
    for a, b in differences:
        point = {m: points[a][m] - points[b][m] for m in METRICS}
        rep = {
            m: [x - z for x, z in zip(reps[a][m], reps[b][m])] for m in METRICS
        }
        out[f"{a}-{b}"] = frame(point, rep)
    return out
