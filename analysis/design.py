"""The predictive models' inputs: the paper's feature list (per profile), the design matrix, class
weights and the stratified train/test split (see `analysis.predict` for the models).

The profiles differ in the perplexity features only: the default profile's models use the
per-span means (`cont_ppl`, `prompt_ppl`, `seq_ppl`), the paper profile's use the score table's
`*_ppl_paper` columns (the paper's perplexities, every span's log-prob sum over 63).
"""

from __future__ import annotations

import numpy as np

from analysis import taxonomy
from engine.profiles import check_profile
from features import token_stats

__all__ = ["CONTINUOUS", "CATEGORICAL", "FEATURES", "SEARCH_FEATURES", "QUANTILES",
           "PAPER_PERPLEXITIES", "PAPER_FEATURES", "PAPER_SEARCH_FEATURES", "profile_features",
           "profile_search_features", "design", "balanced_weights", "stratified_split"]

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
# The paper profile's perplexity features: its generation/prompt/sequence_perplexity columns are
# exp(-sum of the span's log-probs / 63) (engine.scoring's `*_ppl_paper`).
PAPER_PERPLEXITIES: dict[str, str] = {
    "cont_ppl": "cont_ppl_paper",
    "prompt_ppl": "prompt_ppl_paper",
    "seq_ppl": "seq_ppl_paper",
}
PAPER_FEATURES: tuple[str, ...] = tuple(PAPER_PERPLEXITIES.get(f, f) for f in FEATURES)
PAPER_SEARCH_FEATURES: tuple[str, ...] = tuple(PAPER_PERPLEXITIES.get(f, f)
                                               for f in SEARCH_FEATURES)


def profile_features(profile: str = "default") -> tuple[str, ...]:
    """The model features of a profile: FEATURES, or PAPER_FEATURES (paper perplexities)."""
    return PAPER_FEATURES if check_profile(profile) == "paper" else FEATURES


def profile_search_features(profile: str = "default") -> tuple[str, ...]:
    """The partition search's features of a profile (SEARCH_FEATURES or PAPER_SEARCH_FEATURES)."""
    return PAPER_SEARCH_FEATURES if check_profile(profile) == "paper" else SEARCH_FEATURES



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


def stratified_split(y: np.ndarray, test_size: float, seed: int,
                     strata: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train/test row indices (sorted) with the class prior kept in both parts.

    With `strata` (n,) (e.g. each row's category) the split is stratified by label x stratum:
    each cell gives round(size x test_size) rows to the test part.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    if strata is not None:
        return _split_cells(np.asarray(y, dtype=bool), np.asarray(strata), test_size, seed)
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


def _split_cells(y: np.ndarray, strata: np.ndarray, test_size: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`stratified_split` by label x stratum, cells in sorted order."""
    if strata.shape != y.shape:
        raise ValueError(f"strata must have one entry per row: {strata.shape} vs {y.shape}")
    _, codes = np.unique(strata, return_inverse=True)
    _, cell = np.unique(np.stack([codes.ravel(), y.astype(np.int64)]), axis=1,
                        return_inverse=True)
    rng = np.random.default_rng(seed)
    test = []
    for c in range(int(cell.max()) + 1 if cell.size else 0):
        idx = np.flatnonzero(cell == c)
        test.append(rng.permutation(idx)[: int(round(idx.size * test_size))])
    test_idx = np.sort(np.concatenate(test)) if test else np.empty(0, dtype=np.int64)
    mask = np.ones(y.size, dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask), test_idx
