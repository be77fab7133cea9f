"""analysis.dynamics on hand-made label tables: every statistic equals the value worked out by
hand in the comments (first/last step, flips, states, transitions, precision and recall,
category shares and movement), bootstrap intervals agree with a brute-force row bootstrap, and
bad input (ids that differ, repeated rows, one checkpoint, one model) is refused or noted."""

import numpy as np
import pandas as pd
import pytest

from analysis import dynamics

STEPS = (10, 20, 30, 40)
# sample id -> labels at steps 10..40 (M memorized, N not); sample 5 is seen from step 30 on
SMALL = {0: "MMMM", 1: "NMNM", 2: "MMNN", 3: "NNNM", 4: "NNNN", 5: "MNNM"}
BIG = {0: "NMMM", 1: "NNMM", 2: "MMMM", 3: "NNNN", 4: "NNNN", 5: "NNNM"}
SEEN_FROM = {5: 30}
CATEGORIES = pd.DataFrame({"sample_id": range(6), "category": [
    "recitation", "recollection", "reconstruction", "recitation", "recollection",
    "recollection"]})


def _table(models=(("small", SMALL), ("big", BIG)), steps=STEPS) -> pd.DataFrame:
    rows = []
    for name, labels in models:
        for step in steps:
            j = STEPS.index(step)
            for sid, seq in labels.items():
                rows.append({"model": name, "step": step, "sample_id": sid,
                             "memorized": seq[j] == "M", "seen": step >= SEEN_FROM.get(sid, 0)})
    return pd.DataFrame(rows)


def test_per_sample_first_last_flips_state():
    ps = dynamics.per_sample(_table()).set_index(["model", "sample_id"]).loc["small"]
    # over the checkpoints that have seen each sample (sample 5: steps 30 and 40, "NM")
    assert ps["first_memorized"].tolist() == [10, 20, 10, 40, pd.NA, 40]
    assert ps["last_memorized"].tolist() == [40, 40, 20, 40, pd.NA, 40]
    assert ps["flips"].tolist() == [0, 3, 1, 1, 0, 1]
    assert ps["checkpoints"].tolist() == [4, 4, 4, 4, 4, 2]
    assert ps["state"].tolist() == ["stable", "stable", "forgotten", "late", "never", "late"]
    # without the restriction sample 5 counts its step-10 label: M N N M
    free = dynamics.per_sample(_table(), restrict_to_seen=False).set_index(
        ["model", "sample_id"]).loc[("small", 5)]
    assert (free["first_memorized"], free["flips"], free["state"]) == (10, 2, "stable")
    counts = dynamics.state_counts(dynamics.per_sample(_table()))
    small = counts[counts.model == "small"].set_index("state")
    assert small["samples"].to_dict() == {"stable": 2, "forgotten": 1, "late": 2, "never": 1,
                                          "unseen": 0}
    assert small.loc["late", "share"] == pytest.approx(2 / 6)


def test_transitions_between_consecutive_checkpoints():
    tr = dynamics.transitions(_table())
    small = tr[tr.model == "small"].set_index("step_from")
    cols = ["samples", "mem_to_mem", "mem_to_not", "not_to_mem", "not_to_not", "newly_seen",
            "newly_seen_memorized"]
    # 10->20 over samples 0-4: MM 0,2; NM 1; NN 3,4
    assert small.loc[10, cols].tolist() == [5, 2, 0, 1, 2, 0, 0]
    # 20->30 over samples 0-4: MM 0; MN 1,2; NN 3,4; sample 5 newly seen, not memorized
    assert small.loc[20, cols].tolist() == [5, 1, 2, 0, 2, 1, 0]
    # 30->40 over all six: MM 0; NM 1,3,5; NN 2,4
    assert small.loc[30, cols].tolist() == [6, 1, 0, 3, 2, 0, 0]
    assert small["forget_rate"].tolist() == pytest.approx([0, 2 / 3, 0])
    assert small["learn_rate"].tolist() == pytest.approx([1 / 3, 0, 3 / 5])
    assert small.loc[10, "step_to"] == 20


def test_precision_recall_of_earlier_checkpoints():
    pr = dynamics.predictability_over_steps(_table(), n_boot=200).query("model == 'small'")
    pr = pr.set_index("step")
    # final (step 40) memorized: 0, 1, 3, 5
    # step 10, samples 0-4: predicted {0, 2}, target {0, 1, 3}: both {0}
    # step 20, samples 0-4: predicted {0, 1, 2}, target {0, 1, 3}: both {0, 1}
    # step 30, samples 0-5: predicted {0}, target {0, 1, 3, 5}: both {0}
    assert pr["samples"].tolist() == [5, 5, 6]
    assert pr[["predicted", "target", "both"]].values.tolist() == [[2, 3, 1], [3, 3, 2],
                                                                    [1, 4, 1]]
    assert pr["precision"].tolist() == pytest.approx([1 / 2, 2 / 3, 1])
    assert pr["recall"].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 4])
    assert (pr["precision_lo"] <= pr["precision"]).all() and (
        pr["precision"] <= pr["precision_hi"]).all()
    assert (pr["final_step"] == 40).all()
    free = dynamics.predictability_over_steps(_table(), n_boot=0, restrict_to_seen=False)
    row = free[(free.model == "small") & (free.step == 10)].iloc[0]
    # unrestricted, sample 5's step-10 label counts: predicted {0, 2, 5}, target {0, 1, 3, 5}
    assert (row.precision, row.recall) == pytest.approx((2 / 3, 1 / 2))


def test_precision_recall_of_smaller_models():
    sz = dynamics.predictability_over_sizes(_table(), n_boot=100).iloc[0]
    # small's final {0, 1, 3, 5} predicting big's final {0, 1, 2, 5}: both {0, 1, 5}
    assert (sz.model, sz.target_model, sz.step, sz.target_step) == ("small", "big", 40, 40)
    assert (sz.predicted, sz.target, sz.both, sz.samples) == (4, 4, 3, 6)
    assert (sz.precision, sz.recall) == pytest.approx((3 / 4, 3 / 4))
    other = dynamics.predictability_over_sizes(_table(), target="small", n_boot=0).iloc[0]
    assert (other.model, other.precision, other.recall) == ("big", 3 / 4, 3 / 4)


def test_bootstrap_intervals_match_a_row_bootstrap():
    rng = np.random.default_rng(5)
    n = 300
    pred = rng.random(n) < 0.3
    target = np.where(rng.random(n) < 0.8, pred, rng.random(n) < 0.3)
    df = pd.DataFrame({"model": "m", "step": np.repeat([1, 2], n),
                       "sample_id": np.tile(np.arange(n), 2),
                       "memorized": np.concatenate([pred, target])})
    got = dynamics.predictability_over_steps(df, n_boot=4000, seed=1).iloc[0]
    draws = np.random.default_rng(2).integers(0, n, size=(4000, n))
    p, t = pred[draws], target[draws]
    both = (p & t).sum(1)
    precision = np.percentile(both / p.sum(1), [2.5, 97.5])
    recall = np.percentile(both / t.sum(1), [2.5, 97.5])
    assert [got.precision_lo, got.precision_hi] == pytest.approx(precision, abs=0.02)
    assert [got.recall_lo, got.recall_hi] == pytest.approx(recall, abs=0.02)


def test_categories_over_steps_and_movement():
    cats = dynamics.categories_over_steps(_table(), CATEGORIES)
    s10 = cats[(cats.model == "small") & (cats.step == 10)].set_index("category")
    # step 10 memorized (seen): 0 recitation, 2 reconstruction; seen: 0-4
    assert s10["memorized"].to_dict() == {"recitation": 1, "reconstruction": 1,
                                          "recollection": 0}
    assert s10.loc["recitation", "share"] == 0.5 and s10.loc["recollection", "share"] == 0
    assert s10["candidates"].to_dict() == {"recitation": 2, "reconstruction": 1,
                                           "recollection": 2}
    s40 = cats[(cats.model == "small") & (cats.step == 40)].set_index("category")
    # step 40 memorized: 0, 3 recitation; 1, 5 recollection
    assert s40["memorized"].to_dict() == {"recitation": 2, "reconstruction": 0,
                                          "recollection": 2}
    mv = dynamics.category_movement(_table(), CATEGORIES)
    m = mv[(mv.model == "small") & (mv.step_from == 20)]
    got = {(a, b): k for a, b, k in zip(m.from_state, m.to_state, m.samples)}
    nm = dynamics.NOT_MEMORIZED
    assert got == {("recitation", "recitation"): 1, ("recollection", nm): 1,
                   ("reconstruction", nm): 1, (nm, nm): 2, (dynamics.UNSEEN, nm): 1}
    # categories per step (a sample's category may change as its duplicates are seen):
    # sample 0 is recollection until step 30 and recitation at step 40
    per_step = pd.DataFrame([{"step": st, "sample_id": i,
                              "category": "recitation" if (i, st) == (0, 40) else "recollection"}
                             for st in STEPS for i in range(6)])
    small = _table()[lambda d: d.model == "small"]
    c40 = dynamics.categories_over_steps(small, per_step).query("step == 40")
    assert c40.set_index("category")["memorized"].to_dict() == {
        "recitation": 1, "reconstruction": 0, "recollection": 3}
    mv = dynamics.category_movement(small, per_step).query("step_from == 30")
    got = {(a, b): k for a, b, k in zip(mv.from_state, mv.to_state, mv.samples)}
    # 30 -> 40: 0 recollection -> recitation; 1, 3, 5 not -> recollection; 2, 4 stay not
    assert got == {("recollection", "recitation"): 1, (nm, "recollection"): 3, (nm, nm): 2}


def test_mark_seen_from_the_stream_definition():
    df = pd.DataFrame({"model": "m", "step": [0, 1, 1, 3], "sample_id": [0, 3, 4, 11],
                       "memorized": False})
    # step c has seen sequences [0, 4c)
    assert dynamics.mark_seen(df, 4)["seen"].tolist() == [False, True, False, True]


def test_bad_inputs():
    df = _table()
    with pytest.raises(ValueError, match=r"sample ids differ .* model 'small'.*step 20"):
        dynamics.per_sample(df.drop(df[(df.model == "small") & (df.step == 20)
                                       & (df.sample_id == 3)].index))
    with pytest.raises(ValueError, match="repeated rows.*sample_id 0"):
        dynamics.per_sample(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="missing column"):
        dynamics.per_sample(df.drop(columns="memorized"))
    with pytest.raises(ValueError, match="no training step"):
        dynamics.per_sample(df.assign(step=df.step.astype(float).where(df.step > 10)))
    shifted = df.assign(sample_id=np.where(df.model == "big", df.sample_id + 100, df.sample_id))
    with pytest.raises(ValueError, match="sample ids differ between models"):
        dynamics.predictability_over_sizes(shifted)
    with pytest.raises(ValueError, match="no category"):
        dynamics.categories_over_steps(df, CATEGORIES.iloc[:2])


def test_single_checkpoint_says_what_needs_two():
    one = _table(steps=(40,))
    with pytest.raises(dynamics.NeedsTwoCheckpoints, match="at least two checkpoints"):
        dynamics.transitions(one)
    with pytest.raises(ValueError, match="two checkpoints"):
        dynamics.predictability_over_steps(one)
    with pytest.raises(ValueError, match="two checkpoints"):
        dynamics.category_movement(one, CATEGORIES)
    res = dynamics.analyze(one, CATEGORIES, n_boot=10)
    assert res.transitions is None and res.over_steps is None and res.movement is None
    assert any("One checkpoint only for small, big" in n for n in res.notes)
    # what one checkpoint does tell: sizes, end states, category shares
    assert res.over_sizes.iloc[0].precision == pytest.approx(3 / 4)
    assert res.per_sample.query("model == 'small'")["state"].tolist() == [
        "late", "late", "never", "late", "never", "late"]
    assert res.categories is not None
    solo = dynamics.analyze(_table(models=(("small", SMALL),)), n_boot=10)
    assert solo.over_sizes is None and solo.transitions is not None
    assert any("sizes needs two" in n for n in solo.notes)
    assert any("No categories" in n for n in solo.notes)
