"""The predictive models' inputs: the paper's feature list, the design matrix, class weights and
the stratified train/test split (see `analysis.predict` for the models)."""

from __future__ import annotations

import numpy as np

from analysis import taxonomy
from features import token_stats

__all__ = ["CONTINUOUS", "CATEGORICAL", "FEATURES", "SEARCH_FEATURES", "QUANTILES", "design",
           "balanced_weights", "stratified_split"]

CONTINUOUS: tuple[str, ...] = (
    "duplicates",
    *token_stats.COLUMNS,  # max, mean, min, median, p25, p75
    "cont_ppl",
    "prompt_ppl",
    "seq_ppl",
    "semantic_matches",
    "textual_matches",
    "huffman_code_length",
)
CATEGORICAL: tuple[str, ...] = ("is_templating",)
FEATURES: tuple[str, ...] = CONTINUOUS + CATEGORICAL
# The paper's TAXONOMY_SEARCH_FEATURES in memtax's names.
SEARCH_FEATURES: tuple[str, ...] = (
    "token_freq_max",
    "token_freq_mean",
    "token_freq_min",
    "token_freq_median",
    "semantic_matches",
    "textual_matches",
    "duplicates",
    "huffman_code_length",
    "is_templating",
    "cont_ppl",
)
QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)




def design(
    table, features=FEATURES, label: str = taxonomy.LABEL, nan_policy: str = "raise"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix, labels and kept-row mask.

    Returns:
        X (n_kept, len(features)) float64, y (n_kept,) bool, keep (n,) bool over the input rows.
        With nan_policy="raise" a NaN/inf feature raises ValueError naming the columns;
        with "drop" such rows are left out (keep marks the rest).
    """
    if nan_policy not in ("raise", "drop"):
        raise ValueError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")
    taxonomy.require_columns(table, list(features) + [label], "feature table")
    cols = [np.asarray(taxonomy.column(table, f), dtype=np.float64) for f in features]
    X = np.column_stack(cols) if cols else np.empty((0, 0))
    y = taxonomy.labels(table, label)
    finite = np.isfinite(X)
    keep = finite.all(axis=1)
    if not keep.all():
        bad = {
            f: int((~finite[:, j]).sum()) for j, f in enumerate(features) if not finite[:, j].all()
        }
        if nan_policy == "raise":
            raise ValueError(
                f"non-finite (NaN or infinite) feature values in {bad} (column: rows); "
                "clean them or pass nan_policy='drop'"
            )
        X, y = X[keep], y[keep]
    return X, y, keep


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """scikit-learn's 'balanced' class weights n / (2 n_class), per row, shape (n,)."""
    y = np.asarray(y, dtype=bool)
    n, pos = y.size, int(y.sum())
    if pos == 0 or pos == n:
        raise ValueError("balanced class weights need both classes")
    return np.where(y, n / (2.0 * pos), n / (2.0 * (n - pos)))


def stratified_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test row indices (sorted) with the class prior kept in both parts."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    rng = np.random.default_rng(seed)
    test = []
    for cls in (False, True):
        idx = np.flatnonzero(y == cls)
        k = int(round(idx.size * test_size))
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    mask = np.ones(y.size, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx

