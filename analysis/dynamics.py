"""Memorization dynamics across checkpoints and sizes: when a sample is memorized, forgotten,
and how well early checkpoints or smaller models predict the final or largest one (Biderman et
al. 2023, "Emergent and Predictable Memorization").

The input is a label table, one row per (model, checkpoint, sample), as `engine.sweep` writes
(`from_sweep`) or built by hand:

    model, step, sample_id, memorized (bool), seen (bool or null; optional), category (optional)

`seen` says whether the checkpoint's training had reached the sample (Pythia: step c has seen
sequences [0, c * 1024)); where it is known, every statistic uses only the checkpoints that have
seen the sample ("not yet seen" is not "seen and not memorized"); null means unknown and keeps
the row. Each model is analysed on its own (never pooled); models are in the table's order,
smallest first.

Definitions (per model, over the checkpoints that have seen the sample, in step order):
- first_memorized / last_memorized: the first / last step where it is memorized;
- flips: changes memorized <-> not between consecutive such checkpoints;
- state: "unseen" (no checkpoint has seen it), "never" (never memorized), "forgotten"
  (memorized at some checkpoint but not the final one), "late" (memorized at the final
  checkpoint only), "stable" (memorized at the final checkpoint and at an earlier one);
- transitions between consecutive checkpoints, over samples both have seen: counts
  memorized -> memorized / not, not -> memorized / not; forget_rate = memorized -> not over
  memorized before; learn_rate = not -> memorized over not memorized before; newly_seen (and
  of those, memorized) for samples seen at the later checkpoint only;
- predictability: "memorized at step s" (or "memorized by the smaller model's final
  checkpoint") as a predictor of "memorized at the final checkpoint" (of the largest model),
  over the samples seen at s (seen by both): precision = both / memorized at s, recall = both /
  memorized at the end; percentile bootstrap intervals over samples (the four cell counts of a
  resample of n rows are multinomial with the observed cell shares, drawn as such);
- categories over steps: the category of each memorized sample at each checkpoint (a category
  per sample, or per sample and step), shares per checkpoint, and the movement of samples
  between "unseen", "not memorized" and the categories from one checkpoint to the next.

The statistics that compare checkpoints need two of them: with one, `transitions`,
`predictability_over_steps` and `category_movement` raise `NeedsTwoCheckpoints` (a ValueError
saying so) and `analyze` records that in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.taxonomy import CATEGORIES

__all__ = ["label_table", "mark_seen", "from_sweep", "per_sample", "transitions",
           "predictability_over_steps", "predictability_over_sizes", "categories_over_steps",
           "category_movement", "analyze", "Dynamics", "NeedsTwoCheckpoints", "STATES",
           "NOT_MEMORIZED", "UNSEEN"]

STATES = ("stable", "forgotten", "late", "never", "unseen")
NOT_MEMORIZED, UNSEEN = "not memorized", "unseen"


class NeedsTwoCheckpoints(ValueError):
    """A statistic that compares checkpoints was asked of a model with fewer than two."""


# ---------------------------------------------------------------------------------------------
# The label table


def label_table(labels) -> pd.DataFrame:
    """The label table checked and in order (see the module docstring): pandas, `memorized`
    bool (from `exact_match` when that is the column given), `seen` nullable bool, models in
    their first-appearance order, rows by (model, step, sample_id). ValueError for missing
    columns, unknown steps, a (model, step, sample) twice, or sample ids that differ between
    the checkpoints of a model."""
    df = labels.to_pandas() if hasattr(labels, "to_pandas") else pd.DataFrame(labels).copy()
    if "memorized" not in df and "exact_match" in df:
        df = df.rename(columns={"exact_match": "memorized"})
    missing = [c for c in ("model", "step", "sample_id", "memorized") if c not in df]
    if missing:
        raise ValueError(f"label table is missing column(s) {missing}; expected model, step, "
                         f"sample_id, memorized (and optionally seen, category)")
    if df["step"].isna().any():
        bad = df.loc[df["step"].isna(), "model"].unique().tolist()
        raise ValueError(f"checkpoints of {bad} have no training step (a revision not named "
                         f"step<N>); dynamics order checkpoints by step")
    df["seen"] = df["seen"].astype("boolean") if "seen" in df else pd.array(
        [pd.NA] * len(df), dtype="boolean")
    df["memorized"] = df["memorized"].astype(bool)
    df["step"] = df["step"].astype(np.int64)
    order = [str(m) for m in pd.unique(df["model"])]
    df["model"] = pd.Categorical(df["model"].astype(str), categories=order, ordered=True)
    df = df.sort_values(["model", "step", "sample_id"], kind="stable").reset_index(drop=True)
    keys = [df["model"].cat.codes.to_numpy(), df["step"].to_numpy(), df["sample_id"].to_numpy()]
    dup = np.zeros(len(df), dtype=bool)
    dup[1:] = np.logical_and.reduce([k[1:] == k[:-1] for k in keys])
    if dup.any():
        r = df[dup].iloc[0]
        raise ValueError(f"label table has {int(dup.sum())} repeated rows, e.g. model "
                         f"{r.model!r} step {r.step} sample_id {r.sample_id}")
    for model in order:
        _check_same_ids(df[df["model"] == model], f"model {model!r}")
    return df


class _Checked:
    """A label table `label_table` has checked, passed between this module's functions so that
    `analyze` checks (and sorts) it once."""

    def __init__(self, df: pd.DataFrame):
        self.df = df


def _checked(labels) -> pd.DataFrame:
    return labels.df if isinstance(labels, _Checked) else label_table(labels)


def _check_same_ids(df: pd.DataFrame, what: str) -> None:
    """Every checkpoint (step) of `df` has the same sample ids."""
    groups = {s: g["sample_id"].to_numpy() for s, g in df.groupby("step", observed=True)}
    steps = list(groups)
    first = groups[steps[0]]
    for s in steps[1:]:
        ids = groups[s]
        if ids.shape != first.shape or not np.array_equal(ids, first):
            extra = np.setdiff1d(ids, first)[:5].tolist()
            lacking = np.setdiff1d(first, ids)[:5].tolist()
            raise ValueError(
                f"sample ids differ between the checkpoints of {what}: step {s} has "
                f"{ids.size} samples, step {steps[0]} {first.size} (in {s} only: {extra}; "
                f"missing there: {lacking}); every checkpoint must score the same samples")


def mark_seen(labels, sequences_per_step: int) -> pd.DataFrame:
    """The label table with `seen` = sample_id < step * sequences_per_step: for samples whose
    ids are training-stream sequence indices (Pythia's and a suite's samples)."""
    df = pd.DataFrame(labels).copy()
    df["seen"] = df["sample_id"].to_numpy() < df["step"].to_numpy() * int(sequences_per_step)
    return df


def from_sweep(sweep) -> pd.DataFrame:
    """The label table of an `engine.sweep` folder (a path or a Sweep): memorized =
    exact_match, with revision, sequences_seen and match_len."""
    import engine

    sw = engine.open_sweep(sweep) if not hasattr(sweep, "labels") else sweep
    return label_table(sw.labels())


@dataclass
class _Matrix:
    """One model's labels as arrays: ids (n,), steps (k,), mem and seen (n, k) bool."""

    model: str
    ids: np.ndarray
    steps: np.ndarray
    mem: np.ndarray
    seen: np.ndarray


def _matrices(df: pd.DataFrame, restrict_to_seen: bool = True) -> list[_Matrix]:
    out = []
    for model, g in df.groupby("model", observed=True, sort=True):
        steps = np.sort(g["step"].unique())
        n = int((g["step"] == steps[0]).sum())
        mem = g["memorized"].to_numpy().reshape(len(steps), n).T
        seen = g["seen"].fillna(True).to_numpy(dtype=bool).reshape(len(steps), n).T
        if not restrict_to_seen:
            seen = np.ones_like(seen)
        ids = g["sample_id"].to_numpy()[:n]
        out.append(_Matrix(str(model), ids, steps, mem, seen))
    return out


# ---------------------------------------------------------------------------------------------
# Per sample


def per_sample(labels, *, restrict_to_seen: bool = True) -> pd.DataFrame:
    """model, sample_id, checkpoints (that have seen it), memorized_at (how many of those),
    first_memorized, last_memorized (steps; null if never), flips, state (STATES)."""
    parts = [_per_sample_of(m) for m in _matrices(_checked(labels), restrict_to_seen)]
    return pd.concat(parts, ignore_index=True)


def _per_sample_of(m: _Matrix) -> pd.DataFrame:
    mem = m.mem & m.seen
    k = m.steps.size
    any_mem = mem.any(axis=1)
    first = np.where(any_mem, m.steps[np.argmax(mem, axis=1)], -1)
    last = np.where(any_mem, m.steps[k - 1 - np.argmax(mem[:, ::-1], axis=1)], -1)
    flips, final = _flips_and_final(m.mem, m.seen)
    n_seen = m.seen.sum(axis=1)
    earlier = (mem.sum(axis=1) - final) > 0
    state = np.select([n_seen == 0, ~any_mem, ~final, ~earlier],
                      ["unseen", "never", "forgotten", "late"], "stable")
    return pd.DataFrame({
        "model": m.model, "sample_id": m.ids, "checkpoints": n_seen,
        "memorized_at": mem.sum(axis=1),
        "first_memorized": pd.Series(first, dtype="Int64").mask(~any_mem),
        "last_memorized": pd.Series(last, dtype="Int64").mask(~any_mem),
        "flips": flips, "state": state})


def _flips_and_final(mem: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: changes between consecutive seen checkpoints, and the label at the last seen
    one (False when none is seen). One pass over the k columns, vectorised over the rows."""
    n = mem.shape[0]
    prev = np.full(n, -1, dtype=np.int8)  # label at the last seen checkpoint so far; -1: none
    flips = np.zeros(n, dtype=np.int64)
    for j in range(mem.shape[1]):
        cur, s = mem[:, j].astype(np.int8), seen[:, j]
        flips += s & (prev >= 0) & (cur != prev)
        prev = np.where(s, cur, prev)
    return flips, prev == 1


def state_counts(per_sample_table: pd.DataFrame) -> pd.DataFrame:
    """model, state, samples, share (of the samples some checkpoint has seen; unseen: of all)."""
    rows = []
    for model, g in per_sample_table.groupby("model", sort=False):
        seen = int((g["state"] != "unseen").sum())
        for s in STATES:
            k = int((g["state"] == s).sum())
            denom = len(g) if s == "unseen" else seen
            rows.append({"model": model, "state": s, "samples": k,
                         "share": k / denom if denom else float("nan")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Between checkpoints


def _two_or_more(ms: list[_Matrix], what: str) -> list[_Matrix]:
    keep = [m for m in ms if m.steps.size >= 2]
    if not keep:
        one = ", ".join(f"{m.model} (step {int(m.steps[0])})" for m in ms)
        raise NeedsTwoCheckpoints(f"{what} needs at least two checkpoints of a model; the "
                                  f"table has one per model: {one}")
    return keep


def transitions(labels, *, restrict_to_seen: bool = True) -> pd.DataFrame:
    """Between consecutive checkpoints of each model with two or more: model, step_from,
    step_to, samples (seen by both), mem_to_mem, mem_to_not, not_to_mem, not_to_not,
    forget_rate, learn_rate, newly_seen, newly_seen_memorized."""
    ms = _two_or_more(_matrices(_checked(labels), restrict_to_seen), "transitions")
    rows = []
    for m in ms:
        for j in range(m.steps.size - 1):
            both = m.seen[:, j] & m.seen[:, j + 1]
            a, b = m.mem[both, j], m.mem[both, j + 1]
            new = m.seen[:, j + 1] & ~m.seen[:, j]
            mm, mn = int((a & b).sum()), int((a & ~b).sum())
            nm, nn = int((~a & b).sum()), int((~a & ~b).sum())
            rows.append({"model": m.model, "step_from": int(m.steps[j]),
                         "step_to": int(m.steps[j + 1]), "samples": int(both.sum()),
                         "mem_to_mem": mm, "mem_to_not": mn, "not_to_mem": nm, "not_to_not": nn,
                         "forget_rate": mn / (mm + mn) if mm + mn else float("nan"),
                         "learn_rate": nm / (nm + nn) if nm + nn else float("nan"),
                         "newly_seen": int(new.sum()),
                         "newly_seen_memorized": int((new & m.mem[:, j + 1]).sum())})
    return pd.DataFrame(rows)


def _precision_recall(pred: np.ndarray, target: np.ndarray, rng, n_boot: int, alpha: float
                      ) -> dict:
    """Point precision / recall of `pred` for `target` and percentile bootstrap intervals.

    A resample of n rows puts Multinomial(n, cell shares) rows in the four cells (pred x
    target), so replicates are drawn as cell counts, exactly and in O(n_boot)."""
    cells = np.array([(pred & target).sum(), (pred & ~target).sum(), (~pred & target).sum(),
                      (~pred & ~target).sum()], dtype=np.int64)
    n = int(cells.sum())
    tp, fp, fn = (float(c) for c in cells[:3])
    out = {"samples": n, "predicted": int(tp + fp), "target": int(tp + fn),
           "both": int(tp), "precision": tp / (tp + fp) if tp + fp else np.nan,
           "recall": tp / (tp + fn) if tp + fn else np.nan}
    lo_q, hi_q = 100 * alpha / 2, 100 * (1 - alpha / 2)
    if n and n_boot:
        reps = rng.multinomial(n, cells / n, size=n_boot).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, denom in (("precision", reps[:, 0] + reps[:, 1]),
                                ("recall", reps[:, 0] + reps[:, 2])):
                vals = reps[:, 0] / denom
                vals = vals[np.isfinite(vals)]
                lo, hi = np.percentile(vals, [lo_q, hi_q]) if vals.size else (np.nan, np.nan)
                out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    else:
        out.update(precision_lo=np.nan, precision_hi=np.nan, recall_lo=np.nan, recall_hi=np.nan)
    return out


def predictability_over_steps(labels, *, n_boot: int = 1000, seed: int = 0,
                              alpha: float = 0.05, restrict_to_seen: bool = True
                              ) -> pd.DataFrame:
    """Each earlier checkpoint of a model predicting its final checkpoint: model, step,
    final_step, samples (seen at step), predicted, target, both, precision, recall and their
    bootstrap intervals (precision_lo, precision_hi, recall_lo, recall_hi)."""
    ms = _two_or_more(_matrices(_checked(labels), restrict_to_seen),
                      "predictability over steps")
    rng = np.random.default_rng(seed)
    rows = []
    for m in ms:
        final = m.mem[:, -1]
        for j in range(m.steps.size - 1):
            s = m.seen[:, j] & m.seen[:, -1]
            rows.append({"model": m.model, "step": int(m.steps[j]),
                         "final_step": int(m.steps[-1]),
                         **_precision_recall(m.mem[s, j], final[s], rng, n_boot, alpha)})
    return pd.DataFrame(rows)


def predictability_over_sizes(labels, *, target: str | None = None, n_boot: int = 1000,
                              seed: int = 0, alpha: float = 0.05,
                              restrict_to_seen: bool = True) -> pd.DataFrame:
    """Each other model's final checkpoint predicting the target model's final checkpoint
    (default the last model: the largest): model, step, target_model, target_step, samples
    (seen by both), predicted, target, both, precision, recall and intervals. ValueError with
    a single model, or when the models scored different samples."""
    ms = _matrices(_checked(labels), restrict_to_seen)
    if len(ms) < 2:
        raise ValueError(f"predictability over sizes needs two models or more; the table has "
                         f"{[m.model for m in ms]}")
    names = [m.model for m in ms]
    target = names[-1] if target is None else str(target)
    if target not in names:
        raise ValueError(f"target model {target!r} is not among {names}")
    big = ms[names.index(target)]
    rng = np.random.default_rng(seed)
    rows = []
    for m in ms:
        if m.model == target:
            continue
        if not np.array_equal(m.ids, big.ids):
            raise ValueError(f"sample ids differ between models {m.model!r} and {target!r} "
                             f"({m.ids.size} and {big.ids.size} samples); predicting one from "
                             f"the other needs the same samples")
        s = m.seen[:, -1] & big.seen[:, -1]
        rows.append({"model": m.model, "step": int(m.steps[-1]), "target_model": target,
                     "target_step": int(big.steps[-1]),
                     **_precision_recall(m.mem[s, -1], big.mem[s, -1], rng, n_boot, alpha)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Categories over time


def _with_categories(labels, categories) -> pd.DataFrame:
    """The label table with a `category` column: from the table itself, or joined from
    `categories` (sample_id, category, and optionally model and/or step)."""
    df = _checked(labels)
    if categories is None:
        if "category" not in df:
            raise ValueError("categories over steps need a category per sample: a `category` "
                             "column in the labels or categories=(sample_id, category)")
        return df
    cats = pd.DataFrame(categories)
    keys = ["sample_id"] + [k for k in ("model", "step") if k in cats]
    if "category" not in cats or cats.duplicated(keys).any():
        raise ValueError(f"categories must have one category per {keys}")
    if "model" in cats:
        cats = cats.assign(model=cats["model"].astype(str))
        df = df.assign(model_name=df["model"].astype(str))
        cats = cats.rename(columns={"model": "model_name"})
        keys = ["model_name" if k == "model" else k for k in keys]
    out = df.drop(columns=[c for c in ("category",) if c in df]).merge(
        cats[keys + ["category"]], on=keys, how="left")
    lacking = out.loc[out["category"].isna() & out["memorized"], "sample_id"].unique()
    if lacking.size:
        raise ValueError(f"{lacking.size} memorized samples have no category, e.g. sample_id "
                         f"{lacking[:5].tolist()}")
    return out.drop(columns=[c for c in ("model_name",) if c in out])


def categories_over_steps(labels, categories=None, *, restrict_to_seen: bool = True
                          ) -> pd.DataFrame:
    """Per model and checkpoint (never pooled), per category: memorized (count among the
    samples it has seen), share of its memorized samples, candidates (seen samples of the
    category)."""
    df = _with_categories(labels, categories)
    seen = df["seen"].fillna(True).to_numpy(dtype=bool) if restrict_to_seen else np.ones(
        len(df), bool)
    df = df[seen]
    found = set(df["category"].dropna().unique())
    names = [c for c in CATEGORIES if c in found or found <= set(CATEGORIES)] + sorted(
        found - set(CATEGORIES))
    rows = []
    for (model, step), g in df.groupby(["model", "step"], observed=True, sort=True):
        n_mem = int(g["memorized"].sum())
        for c in names:
            in_c = (g["category"] == c).to_numpy()
            k = int((in_c & g["memorized"].to_numpy()).sum())
            rows.append({"model": str(model), "step": int(step), "category": c,
                         "memorized": k, "share": k / n_mem if n_mem else float("nan"),
                         "candidates": int(in_c.sum())})
    return pd.DataFrame(rows)


def _state_labels(df: pd.DataFrame, restrict_to_seen: bool) -> pd.Series:
    state = np.where(df["memorized"], df["category"].astype(object), NOT_MEMORIZED)
    if restrict_to_seen:
        state = np.where(df["seen"].fillna(True).to_numpy(dtype=bool), state, UNSEEN)
    return pd.Series(state, index=df.index)


def category_movement(labels, categories=None, *, restrict_to_seen: bool = True
                      ) -> pd.DataFrame:
    """How samples move between consecutive checkpoints of each model: model, step_from,
    step_to, from_state, to_state, samples; a state is "unseen", "not memorized" or the
    sample's category while memorized. Pairs with no sample are left out."""
    df = _with_categories(labels, categories)
    df = df.assign(state=_state_labels(df, restrict_to_seen))
    rows = []
    models = [m for m, g in df.groupby("model", observed=True) if g["step"].nunique() >= 2]
    if not models:
        _two_or_more(_matrices(df, restrict_to_seen), "category movement")
    for model in models:
        g = df[df["model"] == model]
        wide = g.pivot(index="sample_id", columns="step", values="state")
        steps = list(wide.columns)
        for a, b in zip(steps, steps[1:]):
            pairs = wide.groupby([a, b]).size()
            for (sa, sb), k in pairs.items():
                rows.append({"model": str(model), "step_from": int(a), "step_to": int(b),
                             "from_state": sa, "to_state": sb, "samples": int(k)})
    return pd.DataFrame(rows, columns=["model", "step_from", "step_to", "from_state",
                                       "to_state", "samples"])


# ---------------------------------------------------------------------------------------------
# Everything at once


@dataclass
class Dynamics:
    """All the dynamics tables of one label table; a table that could not be computed is None
    and `notes` says why."""

    per_sample: pd.DataFrame
    states: pd.DataFrame
    transitions: pd.DataFrame | None = None
    over_steps: pd.DataFrame | None = None
    over_sizes: pd.DataFrame | None = None
    categories: pd.DataFrame | None = None
    movement: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def analyze(labels, categories=None, *, n_boot: int = 1000, seed: int = 0,
            alpha: float = 0.05, restrict_to_seen: bool = True) -> Dynamics:
    """Every table of this module; those that need what the table lacks (two checkpoints, two
    models, categories) are None with a note."""
    df = _Checked(label_table(labels))
    ps = per_sample(df, restrict_to_seen=restrict_to_seen)
    res = Dynamics(per_sample=ps, states=state_counts(ps))
    boot = dict(n_boot=n_boot, seed=seed, alpha=alpha, restrict_to_seen=restrict_to_seen)
    steps = {str(m): g["step"].nunique() for m, g in df.df.groupby("model", observed=True)}
    single = [m for m, k in steps.items() if k < 2]
    if single:
        res.notes.append(f"One checkpoint only for {', '.join(single)}: transitions, "
                         "predictability over steps and category movement need two.")
    attempts = {"transitions": lambda: transitions(df, restrict_to_seen=restrict_to_seen),
                "over_steps": lambda: predictability_over_steps(df, **boot)}
    if len(steps) > 1:
        attempts["over_sizes"] = lambda: predictability_over_sizes(df, **boot)
    else:
        res.notes.append(f"One model only ({next(iter(steps))}): predictability over sizes "
                         "needs two.")
    if categories is not None or "category" in df.df:
        attempts["categories"] = lambda: categories_over_steps(
            df, categories, restrict_to_seen=restrict_to_seen)
        attempts["movement"] = lambda: category_movement(
            df, categories, restrict_to_seen=restrict_to_seen)
    else:
        res.notes.append("No categories given: category shares over steps and movement "
                         "between categories need a category per sample.")
    for name, compute in attempts.items():
        try:
            setattr(res, name, compute())
        except NeedsTwoCheckpoints:
            continue  # said once above
    return res
