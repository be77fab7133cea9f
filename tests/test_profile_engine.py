"""The profiles in scoring: dtype "auto" per config/device/profile, the paper profile's
`*_ppl_paper` columns against the paper's own perplexity code run on HF logits, the profile in
the score table's metadata and in score and sweep manifests (a resume under another profile is
refused), bad profile names, and `--profile` on `memtax score` / `memtax sweep`."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import assert_same_scores, make_hf_cache, save_tiny

import engine
from engine.device import auto_dtype, declared_dtype
from engine.models import _folder_config, _hub_config, resolve_dtype
from engine.output import read_scores
from engine.perplexities import paper_perplexities
from engine.profiles import profile_of
from memtax.cli import main
from memtax.testing import tiny_model

V = 301
CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device name needs no GPU
F16, BF16, F32 = torch.float16, torch.bfloat16, torch.float32


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt_neox", seed=21)


def _paper_calculate_perplexity(logits: torch.Tensor, labels: torch.Tensor):
    """semantic-memorization `inference.py: calculate_perplexity`, transcribed line by line
    (without its debugging comments): the oracle of the paper profile's columns."""
    try:
        token_probs = []
        num_special_tokens = len(labels[labels == 0])
        num_normal_tokens = len(labels) - num_special_tokens
        for token_index in range(num_normal_tokens - 1):
            predicted_probs = torch.softmax(logits[token_index], dim=0, dtype=torch.float64)
            label_prob = predicted_probs[labels[token_index + 1]]
            token_probs.append(label_prob.detach())
        mid_index = len(token_probs) // 2
        log_likelihood = torch.log(torch.stack(token_probs[:mid_index])).sum()
        prompt_ppl = torch.exp(-log_likelihood / len(token_probs)).item()
        log_likelihood = torch.log(torch.stack(token_probs[mid_index:])).sum()
        generation_ppl = torch.exp(-log_likelihood / len(token_probs)).item()
        log_likelihood = torch.log(torch.stack(token_probs)).sum()
        sequence_ppl = torch.exp(-log_likelihood / len(token_probs)).item()
        return prompt_ppl, generation_ppl, sequence_ppl
    except Exception:
        return -1, -1, -1


def _rows_with_zeros(seed: int = 0) -> np.ndarray:
    """64-token rows without token 0, then 0s planted: none, one in the continuation, two in
    the prompt, three at both ends and the middle, five spread, 61 (two log-probs left), 62
    (one left: the paper's code fails) and 64."""
    rows = np.random.default_rng(seed).integers(1, V, size=(8, 64))
    rows[1, 40] = 0
    rows[2, [3, 17]] = 0
    rows[3, [0, 31, 63]] = 0
    rows[4, [2, 9, 33, 50, 60]] = 0
    rows[5, 3:] = 0
    rows[6, 2:] = 0
    rows[7, :] = 0
    return rows


# --------------------------------------------------------------------------- dtype "auto"


def test_auto_dtype_per_config_device_and_profile():
    pythia = {"torch_dtype": "float16"}                 # what Pythia's config.json declares
    new_style = {"dtype": "bfloat16"}
    fp32_ckpt = {"torch_dtype": "float32"}
    # CPU: unchanged, both profiles
    for profile in ("default", "paper"):
        assert auto_dtype(pythia, CPU, profile) == F32
        assert auto_dtype(None, CPU, profile, current=BF16) == BF16
    # CUDA, default: the checkpoint's own 16-bit dtype, else bf16
    assert auto_dtype(pythia, CUDA) == F16
    assert auto_dtype(new_style, CUDA) == BF16
    assert auto_dtype(fp32_ckpt, CUDA) == BF16
    assert auto_dtype(None, CUDA) == BF16
    assert auto_dtype({"torch_dtype": "auto"}, CUDA) == BF16
    assert auto_dtype(transformers.GPTNeoXConfig(dtype="float16"), CUDA) == F16
    assert auto_dtype(None, CUDA, current=F16) == F16            # a loaded 16-bit model stays
    assert auto_dtype(pythia, CUDA, current=F32) == F16          # a loaded fp32 Pythia: its own
    # CUDA, paper: fp16 whatever the checkpoint, as Pythia's eval_memorization.py (.half())
    for config in (pythia, new_style, fp32_ckpt, None):
        assert auto_dtype(config, CUDA, "paper") == F16
    assert auto_dtype(None, CUDA, "paper", current=BF16) == F16
    # an explicit dtype wins in every profile; "auto" goes through auto_dtype
    assert resolve_dtype("bf16", CUDA, profile="paper") == BF16
    assert resolve_dtype("auto", CUDA, config=pythia) == F16
    assert resolve_dtype("auto", CPU, config=pythia, profile="paper") == F32
    with pytest.raises(ValueError, match="'fast'"):
        resolve_dtype("auto", CUDA, profile="fast")


def test_declared_dtype_is_read_from_a_folder_a_revision_and_the_hub_cache(model, tmp_path):
    def pythia_style(folder):
        cfg = json.loads((folder / "config.json").read_text())
        cfg.pop("dtype", None)
        cfg["torch_dtype"] = "float16"
        (folder / "config.json").write_text(json.dumps(cfg))

    save_tiny(model, tmp_path / "plain")
    assert declared_dtype(_folder_config(tmp_path / "plain", None)) == F32  # saved from fp32
    save_tiny(model, tmp_path / "pythia" / "step3")
    pythia_style(tmp_path / "pythia" / "step3")
    assert declared_dtype(_folder_config(tmp_path / "pythia", "step3")) == F16
    assert _folder_config(tmp_path / "pythia", "step4") is None       # the loader names it
    root = make_hf_cache(model, tmp_path / "hub", "Org/tiny", {"main": "a" * 40})
    pythia_style(root / "snapshots" / ("a" * 40))
    config = _hub_config("Org/tiny", "main", True, tmp_path / "hub")
    assert declared_dtype(config) == F16
    assert _hub_config("Org/absent", None, True, tmp_path / "hub") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_model_auto_on_cuda_takes_the_checkpoints_own_half_dtype(model, tmp_path):
    save_tiny(model, tmp_path / "m")
    assert engine.load_model(str(tmp_path / "m"), device="cuda").dtype == BF16    # fp32 ckpt
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = "float16"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    assert engine.load_model(str(tmp_path / "m"), device="cuda").dtype == F16
    assert engine.load_model(str(tmp_path / "m"), device="cuda", profile="paper").dtype == F16
    assert engine.load_model(model, device="cuda", profile="paper").dtype == F16


# --------------------------------------------------------------------------- the paper's ppl


def test_paper_columns_equal_the_papers_code_on_hf_logits(model):
    rows = _rows_with_zeros()
    paper = engine.score(model, rows, batch_size=3, progress=False, profile="paper").to_pandas()
    default = engine.score(model, rows, batch_size=3, progress=False).to_pandas()
    with torch.no_grad():
        logits = model(torch.as_tensor(rows)).logits.double()
    expected = np.array([_paper_calculate_perplexity(logits[i], torch.as_tensor(rows[i]))
                         for i in range(len(rows))])
    got = paper[["prompt_ppl_paper", "cont_ppl_paper", "seq_ppl_paper"]].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-5)
    assert (got[6:] == -1).all() and (got[:6] > 0).all()
    # the planted 0s moved the window: the first row agrees with the plain divide-by-63
    # columns of the default profile, the rows with 0s do not
    np.testing.assert_allclose(got[0], default.loc[0, ["prompt_ppl_paper", "cont_ppl_paper",
                                                       "seq_ppl_paper"]], rtol=1e-6)
    assert not np.allclose(got[1:6, 1], default.cont_ppl_paper[1:6], rtol=1e-3)
    # every other column is the same in both profiles
    for col in default.columns:
        if not col.endswith("_ppl_paper"):
            np.testing.assert_array_equal(paper[col].to_numpy(), default[col].to_numpy())


def test_generate_and_labels_only_runs_carry_the_profile(model):
    rows = _rows_with_zeros(4)[:4]
    exact = engine.score(model, rows, progress=False, profile="paper")
    gen = engine.score(model, rows, mode="generate", progress=False, profile="paper")
    assert profile_of(gen) == "paper"
    for col in ("prompt_ppl_paper", "cont_ppl_paper", "seq_ppl_paper"):
        np.testing.assert_array_equal(gen.column(col).to_numpy(), exact.column(col).to_numpy())
    labels = engine.score(model, rows, labels_only=True, progress=False, profile="paper")
    assert profile_of(labels) == "paper"
    np.testing.assert_array_equal(labels.column("match_len"), exact.column("match_len"))


def test_paper_split_by_hand():
    """lp[t] = -(t + 1) over 63 positions: two 0s keep n = 61 log-probs, split at 30."""
    lp = -torch.arange(1, 64, dtype=torch.float64)[None, :]
    tokens = torch.ones(1, 64, dtype=torch.long)
    tokens[0, [5, 40]] = 0
    cols = paper_perplexities(lp, tokens)
    prompt, cont = sum(range(1, 31)), sum(range(31, 62))   # lp[0:30] and lp[30:61]
    np.testing.assert_allclose(cols["prompt_ppl_paper"].item(), np.exp(prompt / 61))
    np.testing.assert_allclose(cols["cont_ppl_paper"].item(), np.exp(cont / 61))
    np.testing.assert_allclose(cols["seq_ppl_paper"].item(), np.exp((prompt + cont) / 61))


# --------------------------------------------------------------------------- metadata, resume


def test_profile_in_metadata_and_manifest_and_resume_under_another_refused(model, tmp_path):
    rows = _rows_with_zeros(1)[:6]
    plain = engine.score(model, rows, progress=False)
    assert profile_of(plain) == "default" and b"profile" not in plain.schema.metadata
    out = tmp_path / "scores"
    table = engine.score(model, rows, out=out, shard_size=4, progress=False, profile="paper")
    assert profile_of(table) == "paper" and profile_of(read_scores(out)) == "paper"
    assert json.loads((out / "manifest.json").read_text())["run"]["profile"] == "paper"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"another run \(profile 'paper' != 'default'"):
        engine.score(model, rows, out=out, shard_size=4, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = engine.score(model, rows, out=out, shard_size=4, progress=False, profile="paper")
    assert again.schema.metadata[b"scored_here"] == b"0"
    assert_same_scores(again, table)


def test_a_folder_from_before_profiles_resumes_as_the_default(model, tmp_path):
    rows = _rows_with_zeros(2)[:5]
    out = tmp_path / "old"
    first = engine.score(model, rows, out=out, shard_size=2, progress=False)
    man = json.loads((out / "manifest.json").read_text())
    del man["run"]["profile"]
    (out / "manifest.json").write_text(json.dumps(man))
    again = engine.score(model, rows, out=out, shard_size=2, progress=False)
    assert again.schema.metadata[b"scored_here"] == b"0"
    assert_same_scores(again, first)
    with pytest.raises(ValueError, match=r"profile 'default' != 'paper'"):
        engine.score(model, rows, out=out, shard_size=2, progress=False, profile="paper")


def test_bad_profile_names_are_refused_before_any_work(model, tmp_path):
    rows = _rows_with_zeros()[:2]
    with pytest.raises(ValueError, match=r"'Paper'.*'default', 'paper'"):
        engine.score(model, rows, out=tmp_path / "x", progress=False, profile="Paper")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="'fast'"):
        engine.load_model(model, profile="fast")
    with pytest.raises(ValueError, match="None"):
        engine.sweep(str(tmp_path / "nothing"), rows, out=tmp_path / "y", profile=None)
    assert not (tmp_path / "y").exists()
    with pytest.raises(ValueError, match="'x'"):
        auto_dtype(None, CPU, "x")


# --------------------------------------------------------------------------- sweep and CLI


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("profile_cli")
    save_tiny(model, root / "model")
    save_tiny(model, root / "ckpts" / "step1")
    save_tiny(tiny_model("gpt_neox", seed=22), root / "ckpts" / "step2")
    np.save(root / "rows.npy", _rows_with_zeros(3)[:6])
    return root


def test_sweep_records_the_profile_and_refuses_another(folder, tmp_path):
    rows = np.load(folder / "rows.npy")
    sw = engine.sweep(str(folder / "ckpts"), rows, revisions="all", out=tmp_path / "sw",
                      progress=False, profile="paper")
    assert sw.run["profile"] == "paper" and sw.run["dtype"] == "fp32"
    assert sw.profile == "paper" and profile_of(sw.labels()) == "paper"
    for e in sw.checkpoints:
        scores = sw.scores(e["label"], e["revision"])
        assert profile_of(scores) == "paper" and e["dtype"] == "fp32"
        assert scores.schema.metadata[b"dtype"] == b"fp32"
    ref = engine.score(str(folder / "ckpts" / "step2"), rows, progress=False, profile="paper")
    assert_same_scores(sw.scores("ckpts", "step2"), ref)
    with pytest.raises(ValueError, match=r"another sweep \(profile 'paper' != 'default'"):
        engine.sweep(str(folder / "ckpts"), rows, revisions="all", out=tmp_path / "sw",
                     progress=False)
    man = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    del man["run"]["profile"]  # a sweep from before profiles: the default's
    (tmp_path / "sw" / "sweep.json").write_text(json.dumps(man))
    with pytest.raises(ValueError, match=r"profile 'default' != 'paper'"):
        engine.sweep(str(folder / "ckpts"), rows, revisions="all", out=tmp_path / "sw",
                     progress=False, profile="paper")


def test_cli_profile_flag(folder, tmp_path, capsys):
    args = ["--data", str(folder / "rows.npy"), "--quiet"]
    assert main(["score", "--model", str(folder / "model"), "--out", str(tmp_path / "s"),
                 "--profile", "paper", *args]) == 0
    table = read_scores(tmp_path / "s")
    assert profile_of(table) == "paper"
    ref = engine.score(str(folder / "model"), np.load(folder / "rows.npy"), progress=False,
                       profile="paper")
    assert_same_scores(table, ref)
    assert main(["sweep", "--model", str(folder / "ckpts"), "--all-revisions",
                 "--out", str(tmp_path / "sw"), "--profile", "paper", *args]) == 0
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["run"]["profile"] == "paper"
    capsys.readouterr()
    for command, model in (("score", folder / "model"), ("sweep", folder / "ckpts")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--model", str(model), "--out", str(tmp_path / "bad"),
                  "--profile", "papers", *args])
        assert exit_.value.code == 2
        assert "'papers'" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
