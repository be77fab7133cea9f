"""Classification metrics and their bootstrap confidence intervals, vectorised.

Every metric is computed from *weighted* rows: a bootstrap resample is the same as weighting each
test row by how often it was drawn, so the scores are sorted once and every replicate costs one
cumulative sum per class and a few gathers at precomputed indices over a (replicates, n) weight
matrix; nothing is re-sorted per replicate.
With unit weights the values equal scikit-learn's:

- precision, recall, F1 of the hard labels ``p > threshold`` (scikit-learn's `predict` rule;
  0 when undefined, as `zero_division=0`),
- ROC-AUC (trapezoid over distinct thresholds, ties handled as `roc_auc_score`),
- PR-AUC as average precision, ``sum_k (R_k - R_{k-1}) P_k`` (`average_precision_score`),
- ECE, the paper's definition (semantic-memorization `model_utils.expected_calibration_error`):
  confidence = max(p, 1 - p), prediction = argmax (so p = 0.5 predicts 0), 5 uniform bins
  (lower, upper], ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

The paper profile scores ROC-AUC and PR-AUC from the hard labels, as the paper's code did when it
passed `predict` output to scikit-learn; memtax's default uses the probabilities.

The paper's error bars (`kfold_metrics`): model_training.py `train_and_save_taxonomic_models`
splits the test rows with ``KFold(n_splits=100, shuffle=True)``, computes ROC-AUC and PR-AUC of
the hard labels, precision, recall and ECE on each fold's *training* part (99% of the rows, so
the folds overlap almost entirely), skips folds whose labels are one class, and reports the mean
and `np.std` over folds; its plotting notebook (model_perf_testing.ipynb `set_f1`) derives F1
from the mean precision P and recall R, ``2PR / (P + R)``, with the propagated error
``2 / (P + R)^2 * sqrt(R^4 sP^2 + P^4 sR^2)`` (`paper_f1`). The paper's KFold had no seed; memtax
seeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

METRICS: tuple[str, ...] = ("precision", "recall", "f1", "roc_auc", "pr_auc", "ece")

# Rows * replicates per chunk of the bootstrap: bounds the weight matrix to ~64 MB of float64.
# Measured at 1M test rows: 8 replicates per chunk cost 25 ms each, 32 per chunk 47 ms (cache).
_CHUNK_ELEMENTS = 8_000_000
_MAX_CHUNK = 16


@dataclass
class _Prepared:
    """Test rows split by class, positives in order of decreasing score, with the indices the
    weighted metrics need (all integer arrays are precomputed once per model)."""

    pos: np.ndarray  # (n_pos,) original row of each positive, by decreasing score
    neg: np.ndarray  # (n_neg,) original row of each negative, by decreasing score
    tp_end: np.ndarray  # (n_pos,) positives at or above the end of this positive's tie group
    fp_end: np.ndarray  # (n_pos,) negatives at or above the end of its tie group
    fp_start: np.ndarray  # (n_pos,) negatives strictly above its tie group
    tied: np.ndarray  # positions (into the positives) whose tie group holds negatives too
    pred_pos: np.ndarray  # (n_pos,) hard labels of the positives
    pred_neg: np.ndarray  # (n_neg,)
    ece_pos: np.ndarray  # (n_pos, n_bins) one-hot bin * (confidence - correct)
    ece_neg: np.ndarray  # (n_neg, n_bins)


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
    s_sorted, y_sorted = score[order], y[order]
    n = y.size
    # tie groups in sorted order: start and end position of each position's group
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = s_sorted[1:] != s_sorted[:-1]
    gid = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:] - 1, n - 1)
    pos_at = np.flatnonzero(y_sorted)
    neg_at = np.flatnonzero(~y_sorted)
    g = gid[pos_at]
    conf = np.maximum(p, 1.0 - p)
    correct = (p > 0.5) == y  # argmax of (1 - p, p): a tie predicts class 0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], conf, side="left")  # bin b holds (edges[b], edges[b+1]]
    delta = np.zeros((n, n_bins))
    delta[np.arange(n), bins] = conf - correct
    pos, neg = order[pos_at], order[neg_at]
    fp_end = np.searchsorted(neg_at, ends[g], side="right")
    fp_start = np.searchsorted(neg_at, starts[g], side="left")
    return _Prepared(
        pos=pos,
        neg=neg,
        tp_end=np.searchsorted(pos_at, ends[g], side="right"),
        fp_end=fp_end,
        fp_start=fp_start,
        tied=np.flatnonzero(fp_end > fp_start),
        pred_pos=pred[pos].astype(np.float64),
        pred_neg=pred[neg].astype(np.float64),
        ece_pos=delta[pos],
        ece_neg=delta[neg],
    )


def _cum0(w: np.ndarray) -> np.ndarray:
    """(B, m) -> (B, m + 1) cumulative sums with a leading zero."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def _weighted(prep: _Prepared, w: np.ndarray) -> dict[str, np.ndarray]:
    """All metrics for each row of weights `w` (B, n), in original row order.

    ROC-AUC is the Mann-Whitney form (each positive's weighted count of lower-scored negatives,
    ties counted half); average precision sums each positive's weight times the precision at the
    end of its tie group. Both equal the threshold-curve definitions scikit-learn uses.
    """
    wp, wn = w[:, prep.pos], w[:, prep.neg]
    tpc, fpc = _cum0(wp), _cum0(wn)
    pos, neg = tpc[:, -1], fpc[:, -1]
    tp_e = np.take(tpc, prep.tp_end, axis=1)
    fp_e = np.take(fpc, prep.fp_end, axis=1)
    del tpc
    with np.errstate(invalid="ignore", divide="ignore"):
        # sum_i wp_i (neg - fp_e_i + ties_i / 2) = pos * neg - <wp, fp_e> + <wp, ties> / 2,
        # where only positives sharing a score with negatives have ties
        above = np.einsum("ij,ij->i", wp, fp_e)
        t = prep.tied
        ties = fp_e[:, t] - np.take(fpc, prep.fp_start[t], axis=1)
        half = 0.5 * np.einsum("ij,ij->i", wp[:, t], ties)
        roc = (pos * neg - above + half) / (pos * neg)
        # precision at the end of each positive's tie group (>= 1 positive there when wp > 0)
        denom = tp_e + fp_e
        np.maximum(denom, 1e-300, out=denom)
        np.divide(tp_e, denom, out=denom)
        ap = np.einsum("ij,ij->i", wp, denom) / pos
        roc[(pos == 0) | (neg == 0)] = np.nan
        ap[pos == 0] = np.nan
        tp_h = wp @ prep.pred_pos
        pp = tp_h + wn @ prep.pred_neg
        precision = np.divide(tp_h, pp, out=np.zeros_like(tp_h), where=pp > 0)
        recall = np.divide(tp_h, pos, out=np.zeros_like(tp_h), where=pos > 0)
        denom = pp + pos
        f1 = np.divide(2 * tp_h, denom, out=np.zeros_like(tp_h), where=denom > 0)
        total = pos + neg
        ece = np.abs(wp @ prep.ece_pos + wn @ prep.ece_neg).sum(axis=1) / total
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
    out = _weighted(prep, np.ones((1, prep.pos.size + prep.neg.size)))
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
        y,
        {"m": p},
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
        threshold=threshold,
        n_bins=n_bins,
        hard_auc=hard_auc,
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
    n = np.asarray(y).size
    points = {k: _weighted(pr, np.ones((1, n))) for k, pr in preps.items()}
    reps: dict[str, dict[str, list]] = {k: {m: [] for m in METRICS} for k in preps}
    rng = np.random.default_rng(seed)
    chunk = int(np.clip(_CHUNK_ELEMENTS // n, 1, _MAX_CHUNK))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        w = _replicate_weights(rng, n, b)
        for k, pr in preps.items():
            vals = _weighted(pr, w)
            for m in METRICS:
                reps[k][m].append(vals[m])
        done += b
    out: dict[str, pd.DataFrame] = {}

    def frame(point: dict, rep: dict) -> pd.DataFrame:
        rows = []
        for m in METRICS:
            r = np.concatenate(rep[m]) if rep[m] else np.array([])
            r = r[np.isfinite(r)]
            lo, hi = np.quantile(r, [alpha / 2, 1 - alpha / 2]) if r.size else (np.nan, np.nan)
            rows.append(
                {"metric": m, "value": float(point[m][0]), "lo": float(lo), "hi": float(hi)}
            )
        return pd.DataFrame(rows)

    for k in preps:
        out[k] = frame(points[k], reps[k])
    for a, b in differences:
        point = {m: points[a][m] - points[b][m] for m in METRICS}
        rep = {m: [x - z for x, z in zip(reps[a][m], reps[b][m])] for m in METRICS}
        out[f"{a}-{b}"] = frame(point, rep)
    return out


# ---------------------------------------------------------------------------------------------
# The paper's KFold error bars

KFOLD_METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "precision", "recall", "ece", "f1")


def kfold_folds(n: int, n_splits: int = 100, seed: int = 0) -> np.ndarray:
    """(n,) fold of every row: scikit-learn's ``KFold(n_splits, shuffle=True,
    random_state=seed)`` (at most n folds)."""
    fold = np.zeros(n, dtype=np.int64)
    splits = min(int(n_splits), n)
    if splits < 2:
        return fold
    for k, (_, held) in enumerate(KFold(splits, shuffle=True, random_state=seed).split(
            np.zeros(n))):
        fold[held] = k
    return fold


def paper_f1(precision: float, precision_err: float, recall: float,
             recall_err: float) -> tuple[float, float]:
    """The paper's notebook F1 and its error from KFold means and stds of precision and recall
    (model_perf_testing.ipynb `set_f1`); NaN when precision + recall is 0."""
    total = precision + recall
    if not total > 0:
        return float("nan"), float("nan")
    f1 = 2 * precision * recall / total
    err = 2 / total**2 * np.sqrt(recall**4 * precision_err**2 + precision**4 * recall_err**2)
    return float(f1), float(err)


def _kept_folds(fold: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The folds whose training part holds both classes (the paper's loop skipped the rest)."""
    k = int(fold.max()) + 1
    n = y.size - np.bincount(fold, minlength=k)
    pos = y.sum() - np.bincount(fold, weights=y, minlength=k)
    return np.flatnonzero((pos > 0) & (pos < n))


def _fold_values(prep: _Prepared, fold: np.ndarray, kept: np.ndarray) -> dict[str, np.ndarray]:
    """`_weighted` metrics of each kept fold's training part (0/1 weights), in chunks of folds
    that bound the weight matrix like the bootstrap's."""
    chunk = int(np.clip(_CHUNK_ELEMENTS // max(fold.size, 1), 1, _MAX_CHUNK))
    parts: dict[str, list] = {m: [] for m in METRICS}
    for start in range(0, kept.size, chunk):
        w = (fold[None, :] != kept[start:start + chunk, None]).astype(np.float64)
        for m, v in _weighted(prep, w).items():
            parts[m].append(v)
    return {m: np.concatenate(v) if v else np.array([]) for m, v in parts.items()}


def kfold_metrics(y, probs: dict[str, np.ndarray], *, n_splits: int = 100, seed: int = 0,
                  threshold: float = 0.5, n_bins: int = 5) -> dict[str, pd.DataFrame]:
    """The paper's KFold error bars of each model's test predictions (module docstring).

    Returns:
        name -> DataFrame(metric, value (mean over folds), error (std over folds), folds) with
        one row per KFOLD_METRICS entry (f1 and its error from `paper_f1`).
    """
    y = np.asarray(y).astype(bool)
    fold = kfold_folds(y.size, n_splits, seed)
    kept = _kept_folds(fold, y) if y.size > 1 else np.empty(0, dtype=np.int64)
    out = {}
    for name, p in probs.items():
        vals = _fold_values(_prepare(y, p, threshold, n_bins, True), fold, kept)
        rows = [{"metric": m, "value": float(np.mean(vals[m])) if kept.size else np.nan,
                 "error": float(np.std(vals[m])) if kept.size else np.nan,
                 "folds": int(kept.size)} for m in KFOLD_METRICS[:-1]]
        f1, err = paper_f1(rows[2]["value"], rows[2]["error"], rows[3]["value"],
                           rows[3]["error"])
        rows.append({"metric": "f1", "value": f1, "error": err, "folds": int(kept.size)})
        out[name] = pd.DataFrame(rows)
    return out


def kfold_f1(y: np.ndarray, pred: np.ndarray, fold: np.ndarray) -> float:
    """`paper_f1` of hard predictions `pred` over the folds `fold` (from `kfold_folds`): the
    paper's selection score of a partition, from per-fold counts (no metric loop)."""
    y, pred = np.asarray(y, dtype=bool), np.asarray(pred, dtype=bool)
    k = int(fold.max()) + 1
    n_f = np.bincount(fold, minlength=k)
    pos_f = np.bincount(fold, weights=y, minlength=k)
    pp_f = np.bincount(fold, weights=pred, minlength=k)
    tp_f = np.bincount(fold, weights=y & pred, minlength=k)
    n, pos, pp, tp = y.size - n_f, y.sum() - pos_f, pred.sum() - pp_f, (y & pred).sum() - tp_f
    ok = (pos > 0) & (pos < n)
    if not ok.any():
        return float("nan")
    precision = np.divide(tp, pp, out=np.zeros(k), where=pp > 0)[ok]
    recall = (tp / np.where(pos > 0, pos, 1))[ok]
    return paper_f1(precision.mean(), precision.std(), recall.mean(), recall.std())[0]
