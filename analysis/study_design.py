"""Which rows the predictive models are fitted, selected and tested on.

Two designs (`analysis.predict.fit(design=...)`):

- **study** (the paper's study design, `model_training.py` `main`): the feature table is a random
  sample of the training data; `extra_memorized` is a second feature table of memorized samples
  (the paper's "memories" set) that enters *training only*. The test set is `test_size` (20%) of
  the random sample, stratified by label x category; the training set is the rest of the random
  sample plus every extra row. Each model is fitted on an inner `1 - validation_size` (80%) of the
  training set, stratified by label x category; the remaining training rows are the validation
  set. (The paper split each model's own training rows by label with scikit-learn's
  `train_test_split`; one split stratified by label x category is label-stratified inside every
  category too.) Extra rows whose `sample_id` also occurs in the random sample are dropped, as the
  paper's `drop_duplicates("sequence_id")` kept the random sample's copy; both tables must then
  number samples the same way (both scored from the same training stream).
- **split** (memtax's single-table design): one table, a label-stratified `test_size` split, the
  models fitted on all training rows (no validation rows; the partition search holds out part of
  the training rows itself).

`StudyRows` holds the modelled rows (random sample first, then the extra rows) with index arrays
for each part, and `accounting()` counts them by part, source, label and category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import taxonomy
from analysis.design import design, stratified_split

__all__ = ["DESIGNS", "StudyRows", "split_rows", "study_rows"]

DESIGNS = ("study", "split")


@dataclass
class StudyRows:
    """The modelled rows and their parts (indices into X, sorted)."""

    X: np.ndarray  # (n, k) raw features: the random sample's rows, then the extra rows
    y: np.ndarray  # (n,) bool
    cats: np.ndarray  # (n,) category of each row
    extra: np.ndarray  # (n,) bool: the row comes from extra_memorized
    fit: np.ndarray  # rows the models are fitted on
    validation: np.ndarray  # training rows held out of fitting (empty in the split design)
    test: np.ndarray  # test rows (random sample only)
    design: str

    @property
    def train(self) -> np.ndarray:
        """All training rows (fit and validation)."""
        return np.sort(np.concatenate([self.fit, self.validation]))

    def accounting(self) -> pd.DataFrame:
        """Row counts by part (fit, validation, test), source (random, extra), label and
        category: columns part, source, memorized, category, rows."""
        parts = [("fit", self.fit), ("validation", self.validation), ("test", self.test)]
        frames = [pd.DataFrame({"part": name, "source": np.where(self.extra[idx], "extra",
                                                                 "random"),
                                "memorized": self.y[idx], "category": self.cats[idx]})
                  for name, idx in parts]
        df = pd.concat(frames, ignore_index=True)
        return (df.groupby(["part", "source", "memorized", "category"]).size()
                .rename("rows").reset_index())


def split_rows(table, features, recitation_threshold, test_size, seed, nan_policy,
               notes: list[str]) -> StudyRows:
    """The split design: the design matrix's rows split stratified by label into training and
    test sets; ValueError when a class is too small to model. Dropped non-finite rows are noted
    in `notes`."""
    X, y, keep = design(table, features, nan_policy=nan_policy)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows with non-finite features")
    _need_both_classes(y, "the feature table")
    cats = taxonomy.classify(table, recitation_threshold)[keep]
    train, test = stratified_split(y, test_size, seed)
    if y[train].sum() < 2 or y[test].sum() < 1:
        raise ValueError("too few memorized rows to split into training and test sets")
    return StudyRows(X, y, cats, np.zeros(y.size, dtype=bool), train, train[:0], test, "split")


def study_rows(table, extra_memorized, features, recitation_threshold, test_size,
               validation_size, seed, nan_policy, notes: list[str]) -> StudyRows:
    """The study design's rows (see the module docstring); ValueError when the random sample's
    test part would hold no memorized row or a class is too small to fit."""
    if not 0 < validation_size < 1:
        raise ValueError(f"validation_size must be in (0, 1), got {validation_size}")
    X, y, keep = design(table, features, nan_policy=nan_policy)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} rows of the random sample with non-finite "
                     "features")
    cats = taxonomy.classify(table, recitation_threshold)[keep]
    if y.sum() < 1 or y.size - y.sum() < 2:
        raise ValueError(
            f"the random sample needs memorized and non-memorized rows to test on, got "
            f"{int(y.sum())} and {int(y.size - y.sum())} (a single class cannot be tested)")
    rest, test = stratified_split(y, test_size, seed, strata=cats)
    if y[test].sum() < 1:
        raise ValueError(f"no memorized row in the test set ({int(y.sum())} memorized rows in "
                         "the random sample); give a larger random sample")
    Xe, ce = _extra_rows(table, extra_memorized, features, recitation_threshold, nan_policy,
                         keep, notes)
    n = y.size
    X_all = np.vstack([X, Xe])
    y_all = np.concatenate([y, np.ones(Xe.shape[0], dtype=bool)])
    cats_all = np.concatenate([cats, ce])
    extra = np.arange(y_all.size) >= n
    train = np.concatenate([rest, np.arange(n, y_all.size)])
    _need_both_classes(y_all[train], "the training set")
    inner, held = stratified_split(y_all[train], validation_size, seed + 1, strata=cats_all[train])
    return StudyRows(X_all, y_all, cats_all, extra, np.sort(train[inner]), np.sort(train[held]),
                     test, "study")


def _extra_rows(table, extra, features, recitation_threshold, nan_policy, keep,
                notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(X, categories) of the extra memorized rows not in the random sample (none: empty)."""
    if extra is None:
        return np.empty((0, len(features))), np.empty(0, dtype=str)
    Xe, ye, keep_e = design(extra, features, nan_policy=nan_policy)
    if not ye.all():
        raise ValueError(f"extra_memorized must hold memorized samples only; {int((~ye).sum())} "
                         f"of its {ye.size} rows have exact_match False")
    if not keep_e.all():
        notes.append(f"dropped {int((~keep_e).sum())} extra memorized rows with non-finite "
                     "features")
    cats = taxonomy.classify(extra, recitation_threshold)[keep_e]
    names = set(taxonomy.column_names(table)) & set(taxonomy.column_names(extra))
    if "sample_id" in names:
        ids = np.asarray(taxonomy.column(table, "sample_id"))[keep]
        fresh = ~np.isin(np.asarray(taxonomy.column(extra, "sample_id"))[keep_e], ids)
        if not fresh.all():
            notes.append(f"dropped {int((~fresh).sum())} extra memorized rows whose sample_id "
                         "is in the random sample (the random sample's row is kept)")
        Xe, cats = Xe[fresh], cats[fresh]
    return Xe, cats


def _need_both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos < 2 or y.size - n_pos < 2:
        raise ValueError(
            f"need at least 2 memorized and 2 non-memorized rows in {what}, got {n_pos} and "
            f"{y.size - n_pos} (a single class cannot be modelled)"
        )
