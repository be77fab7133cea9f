"""The suite builder on a generated corpus whose facts are known by construction.

Every document is 64 ASCII characters and the tokenizer has 257 tokens (the 256 bytes and the
end-of-text token, no merges), so each document is exactly one 65-token training sequence. Some
documents are planted k times (k in 1, 2, 4, 8, 16): their sequences occur k * epochs times in
the stream, and a model trained on it memorizes them more often as k grows.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, GPTNeoXForCausalLM

import engine
from features import CorpusIndex
from memtax import suite
from memtax.suite.config import checkpoint_steps

KS = (1, 2, 4, 8, 16)
PER_K = 6
BACKGROUND = 32
EPOCHS = 8
SEED = 7
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
CONFIG = suite.SuiteConfig(
    sizes={"a": (2, 32, 2), "b": (2, 96, 4)}, vocab_size=257, seq_len=65, batch_size=8,
    epochs=EPOCHS, lr=1e-2, warmup=0.05, seed=SEED, checkpoints=3,
)


def _doc(rng) -> str:
    """64 characters of random words (3 bits of entropy per word: a memorizable doc)."""
    text = ""
    while len(text) < 64:
        text += WORDS[rng.integers(len(WORDS))] + " "
    return text[:64]


def make_corpus():
    """(documents, {k: planted documents}) with the planted copies spread over the corpus."""
    rng = np.random.default_rng(123)
    planted = {k: [_doc(rng) for _ in range(PER_K)] for k in KS}
    docs = [_doc(rng) for _ in range(BACKGROUND)]
    docs += [d for k in KS for d in planted[k] for _ in range(k)]
    order = rng.permutation(len(docs))
    return [docs[i] for i in order], planted


@pytest.fixture(scope="module")
def built(tmp_path_factory, one_torch_thread):
    docs, planted = make_corpus()
    root = tmp_path_factory.mktemp("suite") / "s"
    s = suite.build_suite(docs, root, config=CONFIG, progress=False)
    return s, docs, planted


def _weights(folder) -> dict:
    return GPTNeoXForCausalLM.from_pretrained(folder).state_dict()


def _encode(s, texts) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(s.tokenizer_dir)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert {len(i) for i in ids} == {64}  # one token per byte: no merges at 257 tokens
    return np.asarray(ids, dtype=np.int64)


def test_stream_is_the_documents_in_seeded_order(built):
    s, docs, _ = built
    assert s.eot_id == 0 and s.vocab_size == 257
    unique = np.concatenate([_encode(s, docs), np.zeros((len(docs), 1), np.int64)], axis=1)
    rng = np.random.default_rng(SEED)
    order = np.concatenate([rng.permutation(len(docs)) for _ in range(EPOCHS)])
    n = len(order) // s.batch_size * s.batch_size
    np.testing.assert_array_equal(s.sequences().astype(np.int64), unique[order[:n]])
    assert s.manifest["stream"]["sequences"] == n == s.total_steps * s.batch_size
    assert s.sequences_seen(3) == 3 * CONFIG.batch_size


def test_index_counts_equal_planted_k(built, tmp_path):
    s, _, planted = built
    idx = CorpusIndex.build(s.stream_prefix, tmp_path / "idx", sequence_length=s.seq_len,
                            progress=False)
    for k in KS:
        conts = _encode(s, planted[k])[:, 32:64]
        np.testing.assert_array_equal(idx.count(conts), np.full(PER_K, k * EPOCHS))


def test_checkpoints_are_the_steps_trained(built):
    s, _, _ = built
    steps = checkpoint_steps(s.total_steps, 3, True)
    assert s.models == {"a": steps, "b": steps}
    assert s.checkpoint("a") == s.root / "models" / "a" / f"step{steps[-1]}"
    # step 0 is the seeded initialisation
    torch.manual_seed(SEED)
    fresh = GPTNeoXForCausalLM(GPTNeoXForCausalLM.config_class.from_pretrained(
        s.checkpoint("a", 0))).state_dict()
    saved = {step: _weights(s.checkpoint("a", step)) for step in (0, 1, steps[-1])}
    assert fresh.keys() == saved[0].keys()
    for name, w in saved[0].items():
        torch.testing.assert_close(w, fresh[name], rtol=0, atol=0)
    # each step's folder loads (engine's name@stepN resolution) as the weights saved there
    for step in (1, steps[-1]):
        sm = engine.load_model(s.spec("a", step))
        torch.testing.assert_close(sm.weight, saved[step]["lm_head.weight"], rtol=0, atol=0)
    assert not torch.equal(saved[1]["lm_head.weight"], saved[steps[-1]]["lm_head.weight"])
    with pytest.raises(ValueError, match="no checkpoint at step"):
        s.checkpoint("a", steps[-1] + 1)
    with pytest.raises(ValueError, match="not in suite"):
        s.checkpoint("zzz")


def test_first_step_is_adamw_on_the_first_batch(built):
    """Checkpoint 1 = step 0 + one AdamW step (warm-up lr) on sequences [0, batch)."""
    s, _, _ = built
    model = GPTNeoXForCausalLM.from_pretrained(s.checkpoint("a", 0)).float()
    total = s.total_steps
    warmup = max(1, round(CONFIG.warmup * total))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    plain = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": CONFIG.weight_decay},
                             {"params": plain, "weight_decay": 0.0}],
                            lr=CONFIG.lr / warmup, betas=CONFIG.betas, eps=1e-8)
    ids = torch.from_numpy(s.sequences()[: s.batch_size].astype(np.int64))
    from memtax.suite.train import use_bf16

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(CONFIG.autocast)):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CONFIG.grad_clip)
    opt.step()
    saved = _weights(s.checkpoint("a", 1))
    assert saved.keys() == model.state_dict().keys()
    for name, w in model.state_dict().items():
        torch.testing.assert_close(w, saved[name], rtol=1e-5, atol=1e-6)
    assert s.manifest["models"]["a"]["losses"]["1"] == pytest.approx(loss.item(), rel=1e-5)


def test_memorization_rises_with_repetitions(built):
    s, _, planted = built
    rates = []
    for k in KS:
        samples = _encode(s, planted[k])
        table = engine.score(s.checkpoint("b"), samples, mode="exact", progress=False)
        rates.append(float(np.mean(table.column("exact_match").to_numpy())))
    assert all(a <= b for a, b in zip(rates, rates[1:])), rates
    assert rates[0] == 0.0 and rates[-1] >= 1 / 3, rates


def test_resumed_build_equals_unbroken(built, tmp_path):
    s, docs, _ = built
    # bit-equal training needs the fixture's thread count; the index build's Numba OpenMP
    # pool may have changed the OpenMP thread count that torch shares
    torch.set_num_threads(1)
    root = tmp_path / "resumed"
    first = suite.build_suite(docs, root, config=CONFIG, progress=False, stop_after=2)
    assert not first.complete and first.models["a"][-1] == 2 and "b" not in first.models
    with pytest.raises(ValueError, match="has not finished"):
        suite.open_suite(root)
    resumed = suite.build_suite(docs, root, config=CONFIG, progress=False)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("timings", "versions")}  # noqa: E731
    assert strip(resumed.manifest) == strip(s.manifest)
    assert strip(json.loads((root / "suite.json").read_text())) == strip(s.manifest)
    assert resumed.manifest["models"]["b"]["final_loss"] == s.manifest["models"]["b"]["final_loss"]
    for name in ("a", "b"):
        a = load_file(resumed.checkpoint(name) / "model.safetensors")
        b = load_file(s.checkpoint(name) / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in b)
    # a finished suite is reused as it is
    again = suite.build_suite(docs, root, config=CONFIG, progress=False)
    assert again.manifest == resumed.manifest


def test_refuses_another_suite_and_foreign_folders(built, tmp_path):
    s, docs, _ = built
    with pytest.raises(ValueError, match="another suite.*seed"):
        suite.build_suite(docs, s.root, config=CONFIG.replace(seed=8), progress=False)
    with pytest.raises(ValueError, match="another corpus"):
        suite.build_suite(docs[1:], s.root, config=CONFIG, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a suite folder"):
        suite.build_suite(docs, foreign, config=CONFIG, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="is not a suite"):
        suite.open_suite(foreign)
    with pytest.raises(FileNotFoundError):
        suite.open_suite(tmp_path / "missing")


@pytest.mark.parametrize("corpus, match", [
    ([], "corpus is empty"),
    (["", "   \n"], "corpus is empty"),
    (["acgt" * 5, "ac"], "smaller than one sequence"),
])
def test_bad_corpus_leaves_nothing(corpus, match, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(ValueError, match=match):
        suite.build_suite(corpus, out, config=CONFIG, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sizes, match", [
    ("L2-H33-A2", "multiple of"), ("huge", "neither a preset"), ({"a": (2, 32)}, "expected"),
    ("a=L2-H32-A2,a=L2-H32-A2", "given twice"), ("", "at least one"),
])
def test_sizes_that_do_not_parse(sizes, match):
    with pytest.raises(ValueError, match=match):
        suite.SuiteConfig(sizes=sizes)


def test_parse_sizes():
    assert suite.parse_sizes("tiny,x=L3-H48-A4") == {"tiny": suite.SIZE_PRESETS["tiny"],
                                                   "x": (3, 48, 4)}
