"""The paper profile of the studies (scaling shares, the KL threshold study, dependencies,
code/NL), the report's profile and the `memtax analyze --profile` flag.

Each paper-profile value is checked against an independent oracle: the paper's own notebook code
ported here (pandas + scipy.stats.entropy for the KL study, pandas sort/rank loops for xicorpy's
xi), hand counts for pooled shares, and scipy for Pearson/Spearman; the default profile's
results against the functions' values without a profile.
"""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from analysis import dependencies, report, scaling, synthetic, taxonomy, thresholds
from engine.profiles import profile_metadata
from memtax.cli import main


def _rows(dups, mem, templ=None, **extra):
    n = len(dups)
    df = pd.DataFrame({"duplicates": dups, "exact_match": mem,
                       "is_templating": templ if templ is not None else [False] * n})
    for k, v in extra.items():
        df[k] = v
    return df


def _tagged(df, profile):
    """A pyarrow table of `df` that records `profile` in its schema metadata."""
    return pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
        profile_metadata(profile))


# ------------------------------------------------------------------ scaling: pooled shares


def _three_runs():
    # 70m at two steps, 160m at one; memorized counts per category planted by hand
    a = _rows([9, 9, 0, 0, 0, 1], [True, True, True, False, True, False],
              [False, False, True, False, False, False])
    # a: recitation 2 memorized (2 candidates), reconstruction 1 (1), recollection 1 (3)
    b = _rows([7, 0, 0, 2], [True, True, False, False], [False, False, False, True])
    # b: recitation 1 (1), reconstruction 0 (1), recollection 1 (2)
    c = _rows([0, 0, 8], [True, True, False], [True, False, False])
    # c: recitation 0 (1), reconstruction 1 (1), recollection 1 (1)
    return {"pythia-70m@step1000": a, "pythia-70m@step2000": b, "pythia-160m@step2000": c}


def test_paper_shares_across_pool_each_size_over_its_steps():
    runs = _three_runs()
    got = scaling.shares_across(runs, profile="paper")
    pooled = got[got.run == "pythia-70m@step1000 + pythia-70m@step2000"].set_index("category")
    # by hand: memorized 2+1, 1+0, 1+1 of 6; candidates 2+1, 1+1, 3+2
    assert pooled["memorized"].tolist() == [3, 1, 2]
    assert pooled["share"].tolist() == pytest.approx([3 / 6, 1 / 6, 2 / 6])
    assert pooled["candidates"].tolist() == [3, 2, 5]
    assert pooled["memorization_rate"].tolist() == pytest.approx([1.0, 0.5, 0.4])
    assert pooled["parameters"].iloc[0] == 70e6 and np.isnan(pooled["step"].iloc[0])
    alone = got[got.run == "pythia-160m@step2000"]
    want = taxonomy.shares(runs["pythia-160m@step2000"])
    assert alone["memorized"].tolist() == want["memorized"].tolist() == [0, 1, 1]
    assert alone["step"].iloc[0] == 2000
    assert got.attrs["profile"] == "paper"


def test_default_shares_across_stay_per_run():
    runs = _three_runs()
    got = scaling.shares_across(runs)
    assert list(dict.fromkeys(got.run)) == list(runs)
    for label, table in runs.items():
        want = taxonomy.shares(table)
        sub = got[got.run == label].reset_index(drop=True)
        pd.testing.assert_frame_equal(sub[want.columns], want)


def test_paper_shares_by_checkpoint_pool_the_models_at_each_step():
    runs = _three_runs()
    ckpt = {"70m": {1000: runs["pythia-70m@step1000"], 2000: runs["pythia-70m@step2000"]},
            "160m": {2000: runs["pythia-160m@step2000"]}}
    got = scaling.shares_by_checkpoint(ckpt, profile="paper")
    assert set(got.model) == {"pooled"}
    at_2000 = got[got.step == 2000].set_index("category")
    assert at_2000["pooled_models"].iloc[0] == "70m + 160m"
    # by hand: b + c memorized 1+0, 0+1, 1+1 of 4
    assert at_2000["memorized"].tolist() == [1, 1, 2]
    assert at_2000["share"].tolist() == pytest.approx([0.25, 0.25, 0.5])
    at_1000 = got[got.step == 1000]
    assert at_1000["pooled_models"].iloc[0] == "70m"
    assert at_1000["memorized"].tolist() == [2, 1, 1]
    default = scaling.shares_by_checkpoint(ckpt)
    assert sorted(set(default.model)) == ["160m", "70m"] and "pooled_models" not in default


# ------------------------------------------------------------------ the KL threshold study


def test_paper_symmetric_kl_equals_scipy_entropy():
    p = np.array([1.5, 2.0, 7.0, 1.1])
    q = np.array([3.0, 1.2, 1.9, 4.4])
    want = (stats.entropy(p / p.sum(), q / q.sum()) + stats.entropy(q / q.sum(), p / p.sum())) / 2
    assert thresholds.paper_symmetric_kl(p, q) == pytest.approx(want, rel=1e-12)
    assert thresholds.paper_symmetric_kl(p, 3 * p) == pytest.approx(0.0, abs=1e-15)


def _notebook_curve(pile: pd.DataFrame, memories: pd.DataFrame, max_duplicates, n_boot, rng):
    """`ppl_dup_figure.ipynb`'s calculate_symetric_kl_divergence loop, ported as written
    (pandas sampling, scipy entropy), drawing from `rng`; the mean and sd per count."""
    all_memories_and_sample = pd.concat([pile[~pile["Memorized"]], memories])
    out = {}
    for duplication_count in range(1, max_duplicates + 1):
        reps = []
        for _ in range(n_boot):
            at = all_memories_and_sample[
                all_memories_and_sample["sequence_duplicates"] == duplication_count]
            boot = at.sample(frac=1, replace=True, random_state=rng)
            mem_at = memories[memories["sequence_duplicates"] == duplication_count][
                "generation_perplexity"]
            non_at = boot["generation_perplexity"]
            balance_size = min(len(mem_at), len(non_at))
            mem_at = mem_at.sample(balance_size, random_state=rng)
            non_at = non_at.sample(balance_size, random_state=rng)
            mem_at = mem_at / mem_at.sum()
            non_at = non_at / non_at.sum()
            reps.append((stats.entropy(mem_at, non_at) + stats.entropy(non_at, mem_at)) / 2)
        out[duplication_count] = (np.mean(reps), pd.Series(reps).std())
    return out


def test_paper_kl_study_equals_the_notebook():
    rng = np.random.default_rng(5)
    n = 400
    dup = rng.integers(1, 5, n)
    mem = rng.random(n) < 0.3
    ppl = np.where(mem, rng.uniform(1.0, 1.5, n), rng.uniform(1.0, 30.0, n))
    table = pd.DataFrame({"sample_id": np.arange(n), "duplicates": dup, "exact_match": mem,
                          "cont_ppl": ppl * 2, "cont_ppl_paper": ppl})
    k = 60  # the extra memorized split; ten of its ids are already in the sample
    extra = pd.DataFrame({"sample_id": np.r_[np.flatnonzero(mem)[:10], np.arange(n, n + k - 10)],
                          "duplicates": rng.integers(1, 5, k), "exact_match": True,
                          "cont_ppl_paper": rng.uniform(1.0, 1.5, k)})
    extra["cont_ppl"] = extra["cont_ppl_paper"] * 2
    got, _ = thresholds.kl_by_duplicates(table, profile="paper", extra_memorized=extra,
                                         max_duplicates=5, n_boot=6, min_rows=1, seed=11)
    pile = table.rename(columns={"duplicates": "sequence_duplicates",
                                 "cont_ppl_paper": "generation_perplexity",
                                 "exact_match": "Memorized"})
    ext = extra.iloc[10:].rename(columns={"duplicates": "sequence_duplicates",
                                          "cont_ppl_paper": "generation_perplexity",
                                          "exact_match": "Memorized"})
    memories = pd.concat([pile[pile["Memorized"]], ext])
    want = _notebook_curve(pile, memories, 4, 6, np.random.default_rng(11))
    for d in range(1, 5):
        row = got[got.duplicates == d].iloc[0]
        at_d = memories["sequence_duplicates"] == d
        assert row["n_memorized"] == at_d.sum()
        # "memorized vs memorized plus non-memorized": the other group counts both
        assert row["n_other"] == at_d.sum() + ((dup == d) & ~mem).sum()
        mean, sd = want[d]
        assert row["kl"] == pytest.approx(mean, rel=1e-10)
        assert (row["lo"], row["hi"]) == pytest.approx((mean - sd, mean + sd), rel=1e-10)
    # no count 0 (the notebook's np.arange(1, ...)) and none past max_duplicates
    assert got["duplicates"].tolist() == [1, 2, 3, 4, 5]
    assert np.isnan(got.loc[got.duplicates == 5, "kl"]).all()  # no rows at 5


def test_paper_kl_is_zero_when_every_perplexity_is_equal():
    n = 120
    table = pd.DataFrame({"duplicates": np.r_[[1] * 60, [2] * 60],
                          "exact_match": np.tile([True, False, False], 40),
                          "cont_ppl_paper": 3.0})
    got, _ = thresholds.kl_by_duplicates(table, profile="paper", max_duplicates=2, n_boot=4,
                                         min_rows=5)
    assert got["kl"].tolist() == pytest.approx([0.0, 0.0], abs=1e-15)
    assert got["n_memorized"].tolist() == [20, 20] and got["n_other"].tolist() == [60, 60]
    assert len(table) == n


def test_default_kl_unchanged_by_the_profile_argument():
    df, _ = synthetic.synthetic_table(1500, seed=4)
    df["cont_ppl"] = np.abs(df["cont_ppl"]) + 1
    a, sa = thresholds.kl_by_duplicates(df, n_boot=20, max_duplicates=6)
    b, sb = thresholds.kl_by_duplicates(df, n_boot=20, max_duplicates=6, profile="default")
    pd.testing.assert_frame_equal(a, b)
    assert sa == sb


# ------------------------------------------------------------------ xi as xicorpy computes it


def _xicorpy_direct(x, y):
    """xicorpy 0.5's `compute_xi` for one pair, written out: pandas' default sort of x (its tie
    order), then r = #{j: y_j <= y_i} - 1 and l = #{j: y_j >= y_i} - 1 counted by brute force."""
    order = pd.Series(x).sort_values().index.to_numpy()
    ys = np.asarray(y, dtype=float)[order]
    n = len(ys)
    r = np.array([sum(v <= yi for v in ys) - 1 for yi in ys], dtype=float)
    ell = np.array([sum(v >= yi for v in ys) - 1 for yi in ys], dtype=float)
    xi = 1 - n * np.abs(np.diff(r)).sum() / (2 * (ell * (n - ell)).sum())
    qfr = np.sort(r / n)
    gr = ell / n
    cu = (gr * (1 - gr)).mean()
    ind = np.arange(1, n + 1)
    ind2 = 2 * n - 2 * ind + 1
    ai = (ind2 * qfr * qfr).mean() / n
    ci = (ind2 * qfr).mean() / n
    m = (np.cumsum(qfr) + (n - ind) * qfr) / n
    v = (ai - 2 * (m * m).mean() + ci ** 2) / cu ** 2
    return xi, 1 - stats.norm.cdf(np.sqrt(n) * xi / np.sqrt(v))


@pytest.mark.parametrize("ties", [True, False])
def test_xicorpy_xi_equals_a_brute_force_port(ties):
    rng = np.random.default_rng(7 if ties else 8)
    n = 150
    x = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
    y = (x + rng.normal(size=n) > 1).astype(float)
    xi, p = dependencies.xicorpy_xi(x, y)
    want_xi, want_p = _xicorpy_direct(x, y)
    assert xi == pytest.approx(want_xi, abs=1e-12)
    assert p == pytest.approx(want_p, abs=1e-12)
    # not Chatterjee's own ranks: the "- 1" changes the value
    assert abs(xi - dependencies.xi_correlation(x, y)[0]) > 1e-6


def test_xicorpy_special_cases():
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    assert dependencies.xicorpy_xi(np.ones(5), y) == (0.0, 0.5)  # constant feature
    assert dependencies.xicorpy_xi(y[:2], y[:2]) == (0.0, 0.5)  # n <= 2
    xi, p = dependencies.xicorpy_xi(y, y)  # the feature is the label
    assert xi == 1.0 and p == pytest.approx(1 - stats.norm.cdf(np.sqrt(5) / np.sqrt(2 / 5)))


# ------------------------------------------------------------------ dependency subsets


def test_paper_dependencies_cross_categories_with_the_code_band():
    df, _ = synthetic.synthetic_table(3000, seed=3)
    feats = ("cont_ppl", "is_templating")
    out = dependencies.correlations(df, features=feats, profile="paper")
    cats = taxonomy.classify(df)
    expected = []
    for c in ("all",) + taxonomy.CATEGORIES:
        expected += [c, "natural language" if c == "all" else f"{c} / natural language",
                     "code" if c == "all" else f"{c} / code"]
    assert list(dict.fromkeys(out.subset)) == expected
    nl = 1 - df["code_score"].to_numpy()
    y = df["exact_match"].to_numpy().astype(float)
    x = df["cont_ppl"].to_numpy()
    for subset, mask in (("recitation / code", (cats == "recitation") & (nl <= 0.4)),
                         ("recollection / natural language",
                          (cats == "recollection") & (nl >= 0.525)),
                         ("code", nl <= 0.4)):
        got = out[(out.subset == subset) & (out.feature == "cont_ppl")].set_index("method")
        assert got.loc["pearson", "n"] == mask.sum() > 0
        assert got.loc["pearson", "statistic"] == pytest.approx(
            stats.pearsonr(x[mask], y[mask]).statistic)
        assert got.loc["spearman", "pvalue"] == pytest.approx(
            stats.spearmanr(x[mask], y[mask]).pvalue)
        assert got.loc["xi", "statistic"] == pytest.approx(_xicorpy_direct(x[mask], y[mask])[0])
    # is_templating is constant inside recollection: xicorpy's 0 with p 0.5, scipy's NaN
    rec = out[(out.subset == "recollection") & (out.feature == "is_templating")].set_index(
        "method")
    assert (rec.loc["xi", "statistic"], rec.loc["xi", "pvalue"]) == (0.0, 0.5)
    assert np.isnan(rec.loc["pearson", "statistic"])


def test_paper_dependencies_take_the_extra_memorized_rows():
    df, extra, _ = synthetic.synthetic_study(1500, 200, seed=2)
    plain = dependencies.correlations(df, features=("cont_ppl",), profile="paper")
    more = dependencies.correlations(df, features=("cont_ppl",), profile="paper",
                                     extra_memorized=extra)
    n_new = (~np.isin(extra["sample_id"], df["sample_id"])).sum()
    assert n_new > 0
    assert more.loc[more.subset == "all", "n"].iloc[0] == len(df) + n_new
    assert plain.loc[plain.subset == "all", "n"].iloc[0] == len(df)


def test_default_dependencies_unchanged_by_the_profile_argument():
    df, _ = synthetic.synthetic_table(1200, seed=6)
    a = dependencies.correlations(df, features=("cont_ppl", "duplicates"))
    b = dependencies.correlations(df, features=("cont_ppl", "duplicates"), profile="default")
    pd.testing.assert_frame_equal(a, b)
    assert set(a.subset) == {"all", *taxonomy.CATEGORIES, "code", "natural language"}


# ------------------------------------------------------------------ code vs natural language


def test_code_types_follow_each_profiles_cut():
    df = pd.DataFrame({"code_score": [0.3, 0.45, 0.5, 0.55, 0.7, np.nan]})
    # paper: nl = 1 - code_score; NL >= 0.525 (0.3, 0.45), code <= 0.4 (0.7), band otherwise
    assert taxonomy.code_types(df, profile="paper").tolist() == [
        "natural language", "natural language", "uncertain", "uncertain", "code", "uncertain"]
    assert taxonomy.code_types(df).tolist() == [
        "natural language", "natural language", "code", "code", "code", "uncertain"]


def test_code_shares_by_hand():
    df = _rows([9, 9, 0, 0, 0, 0], [True, True, True, True, False, True],
               [False, False, True, False, False, False],
               code_score=[0.9, 0.1, 0.8, 0.5, 0.9, 0.2])
    got = taxonomy.code_shares(df, profile="paper").set_index(["category", "code_type"])
    # types: code, NL, code, uncertain, code, NL; memorized: rows 0, 1, 2, 3, 5
    assert got.loc[("all memorized", "code"), "memorized"] == 2
    assert got.loc[("all memorized", "natural language"), "memorized"] == 2
    assert got.loc[("all memorized", "code"), "share"] == 0.5
    assert got.loc[("all memorized", "code"), "samples"] == 3
    assert got.loc[("all memorized", "code"), "memorization_rate"] == pytest.approx(2 / 3)
    assert got.loc[("recitation", "code"), "memorized"] == 1
    assert got.loc[("reconstruction", "code"), "share"] == 1.0
    assert got.loc[("recollection", "natural language"), "memorized"] == 1
    assert got.attrs["uncertain"] == 1


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("call", [
    lambda t: scaling.shares_across({"a": t}, profile="Paper"),
    lambda t: scaling.shares_by_checkpoint({"a": {1: t}}, profile="Paper"),
    lambda t: thresholds.kl_by_duplicates(t, profile="Paper"),
    lambda t: dependencies.correlations(t, features=("cont_ppl",), profile="Paper"),
    lambda t: taxonomy.code_types(t, profile="Paper"),
    lambda t: report.build({"a": t}, "/nonexistent/never-written", profile="Paper"),
])
def test_unknown_profile_names_it(call):
    df, _ = synthetic.synthetic_table(200, seed=1)
    with pytest.raises(ValueError, match="'Paper' is not a known profile"):
        call(df)


def test_mixed_profiles_are_refused_naming_both(tmp_path):
    df, _ = synthetic.synthetic_table(600, seed=1)
    tables = {"pythia-70m": _tagged(df, "paper"), "pythia-160m": _tagged(df, "default")}
    with pytest.raises(ValueError, match="'pythia-160m'.*'default'.*'paper'"):
        scaling.shares_across(tables, profile="paper")
    with pytest.raises(ValueError, match="profile 'paper'.*profile 'default'"):
        thresholds.kl_by_duplicates(_tagged(df, "paper"))
    with pytest.raises(ValueError, match="extra memorized table.*'default'"):
        dependencies.correlations(_tagged(df, "paper"), features=("cont_ppl",), profile="paper",
                                  extra_memorized=_tagged(df[df.exact_match], "default"))
    out = tmp_path / "rep"
    with pytest.raises(ValueError, match="profile mismatch"):
        report.build(tables, out, profile="paper", n_boot=5, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_extra_rows_must_be_memorized():
    df, _ = synthetic.synthetic_table(300, seed=1)
    with pytest.raises(ValueError, match="rows with exact_match False"):
        thresholds.kl_by_duplicates(df, extra_memorized=df)


# ------------------------------------------------------------------ the report and the CLI


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile-report")
    df, extra, _ = synthetic.synthetic_study(2500, 400, seed=3)
    for col in ("cont_ppl_paper", "cont_ppl"):  # perplexities are positive
        df[col] = np.abs(df[col]) + 1
        extra[col] = np.abs(extra[col]) + 1
    files = {}
    for name, frame, prof in (("paper", df, "paper"), ("default", df, "default"),
                              ("extra", extra, "paper")):
        files[name] = root / f"{name}.parquet"
        pq.write_table(_tagged(frame, prof), files[name])
    return root, files, df, extra


def _analyze(files, out, *flags):
    return main(["analyze", "--features", *map(str, files), "--out", str(out), "--n-boot", "10",
                 "--no-progress", *flags])


def test_cli_paper_profile_report_records_it(study_files):
    root, files, df, extra = study_files
    out = root / "paper-report"
    assert _analyze([files["paper"]], out, "--profile", "paper", "--extra-memorized",
                    str(files["extra"])) == 0
    run = json.loads((out / "tables" / "run.json").read_text())
    assert run["profile"] == "paper" and run["extra_memorized_rows"] == len(extra)
    settings = pd.read_csv(out / "tables" / "settings.csv").set_index("setting")["value"]
    assert settings["profile"] == "paper"
    dep = pd.read_csv(out / "tables" / "dependencies.csv")
    assert "recitation / code" in set(dep.subset)
    n_new = (~np.isin(extra["sample_id"], df["sample_id"])).sum()
    assert dep.loc[dep.subset == "all", "n"].max() == len(df) + n_new
    kl = pd.read_csv(out / "tables" / "threshold.csv")
    assert kl["duplicates"].min() == 1
    assert (out / "tables" / "paper_lrt.csv").is_file()
    assert "profile" in (out / "index.html").read_text()


def test_cli_paper_flag_is_the_paper_profile(study_files):
    root, files, _, _ = study_files
    out = root / "alias-report"
    assert _analyze([files["paper"]], out, "--paper") == 0
    assert json.loads((out / "tables" / "run.json").read_text())["profile"] == "paper"


def test_cli_unknown_profile_exits_2(study_files, capsys):
    root, files, _, _ = study_files
    with pytest.raises(SystemExit) as exc:
        _analyze([files["paper"]], root / "never", "--profile", "papr")
    assert exc.value.code == 2
    assert "'papr'" in capsys.readouterr().err
    assert not (root / "never").exists()


def test_cli_profile_mismatch_writes_no_report(study_files, capsys):
    root, files, _, _ = study_files
    out = root / "mixed"
    assert _analyze([files["paper"], files["default"]], out, "--profile", "paper") != 0
    err = capsys.readouterr().err
    assert "'default'" in err and "'paper'" in err
    assert not out.exists() and not list(root.glob(".mixed.tmp-*"))
    # a default-profile analysis of a paper table is refused too
    assert _analyze([files["paper"]], out) != 0
    assert not out.exists()


def test_paper_report_without_paper_perplexities_says_so(tmp_path):
    df, _ = synthetic.synthetic_table(600, seed=2)
    df = df.drop(columns=["cont_ppl_paper", "prompt_ppl_paper", "seq_ppl_paper"])
    index = report.build({"r": df}, tmp_path / "rep", profile="paper", n_boot=5,
                         progress=False)
    run = json.loads((index.parent / "tables" / "run.json").read_text())
    assert run["missing_features"] == ["cont_ppl_paper", "prompt_ppl_paper", "seq_ppl_paper"]
    assert [n for n in run["notes"] if "reads cont_ppl_paper" in n]
    assert not (index.parent / "tables" / "threshold.csv").exists()


def test_a_sweep_of_another_profile_is_refused():
    from analysis.dynamics_report import check_sweep_profile

    class FakeSweep:  # what check_sweep_profile reads of an engine.Sweep
        def __init__(self, run):
            self.run = run

        def labels(self):
            raise AssertionError("not read")

    paper = FakeSweep({"profile": "paper"})
    assert check_sweep_profile(paper, "paper") is paper
    with pytest.raises(ValueError, match="the sweep was made with profile 'paper'.*'default'"):
        check_sweep_profile(paper, "default")
    old = FakeSweep({})  # a sweep from before profiles: accepted by either
    assert check_sweep_profile(old, "paper") is old
    df, _ = synthetic.synthetic_table(50, seed=1)
    with pytest.raises(ValueError, match="the feature table was made with profile 'default'"):
        check_sweep_profile(paper, "paper", features=_tagged(df, "default"))


def test_paper_report_pools_checkpoints_per_step(tmp_path):
    frames = [synthetic.synthetic_table(400, seed=s)[0] for s in (1, 2, 3)]
    ckpt = {"70m": {10: frames[0], 20: frames[1]}, "160m": {20: frames[2]}}
    index = report.build({"pythia-160m": frames[2]}, tmp_path / "rep", profile="paper",
                         n_boot=5, progress=False, by_duplicates=True, checkpoints=ckpt)
    shares = pd.read_csv(index.parent / "tables" / "shares_by_checkpoint.csv")
    assert set(shares.model) == {"pooled"}
    at_20 = shares[shares.step == 20]
    assert set(at_20.pooled_models) == {"70m + 160m"}
    want = (taxonomy.shares(frames[1])["memorized"].to_numpy()
            + taxonomy.shares(frames[2])["memorized"].to_numpy())
    assert at_20["memorized"].tolist() == want.tolist()
    counts = pd.read_csv(index.parent / "tables" / "memorized_by_checkpoint.csv")
    assert len(counts) == 3  # counts stay per model and step


def test_default_kl_counts_the_extra_memorized_rows_as_memorized():
    df, extra, _ = synthetic.synthetic_study(1500, 300, seed=5)
    for frame in (df, extra):
        frame["cont_ppl"] = np.abs(frame["cont_ppl"]) + 1
    plain, _ = thresholds.kl_by_duplicates(df, n_boot=5, max_duplicates=5)
    more, _ = thresholds.kl_by_duplicates(df, n_boot=5, max_duplicates=5, extra_memorized=extra)
    new = extra[~np.isin(extra["sample_id"], df["sample_id"])]
    for d in range(6):
        assert (more.loc[d, "n_memorized"] - plain.loc[d, "n_memorized"]
                == (new["duplicates"] == d).sum())
        assert more.loc[d, "n_other"] == plain.loc[d, "n_other"]  # the sample's own
