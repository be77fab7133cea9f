"""Semantic and textual matches: explicit embeddings with brute-force cosine, a plain DP
Levenshtein, and the bundled MiniLM against a hand-written mean-pooling forward pass."""

import json
from pathlib import Path

import numpy as np
import pytest

import features
from features import semantic


def dp_levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def oracle(emb, prompts, ref, ref_prompts, exclude_self):
    sims = emb.astype(np.float64) @ ref.astype(np.float64).T
    sem = np.zeros(len(emb), np.int64)
    txt = np.zeros(len(emb), np.int64)
    for i in range(len(emb)):
        for j in range(len(ref)):
            if exclude_self and i == j:
                continue
            if sims[i, j] >= 0.8:
                sem[i] += 1
                d = dp_levenshtein(prompts[i], ref_prompts[j])
                txt[i] += 0 < d < 20
    return sem, txt


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_matches_against_brute_force():
    rng = np.random.default_rng(0)
    # clusters of near-identical directions (cosine > 0.8 inside) plus scattered points
    centers = unit(rng.normal(size=(4, 16)))
    emb = unit(np.concatenate([
        centers[rng.integers(0, 4, 30)] + 0.15 * rng.normal(size=(30, 16)),
        rng.normal(size=(10, 16)),
    ]))
    words = ["alpha beta gamma", "alpha beta gamma!", "alpha beta gamna", "zzzz" * 10, ""]
    prompts = [words[i % len(words)] + ("x" * (i % 3)) for i in range(40)]
    sem, txt = semantic.matches(emb, prompts, emb, prompts, exclude_self=True, progress=False,
                                chunk=7)
    want_sem, want_txt = oracle(emb, prompts, emb, prompts, True)
    assert want_sem.sum() > 0 and want_txt.sum() > 0  # the case exercises both counts
    assert np.array_equal(sem, want_sem)
    assert np.array_equal(txt, want_txt)


def test_threshold_is_inclusive_and_reference_distinct():
    # cosines 0.8 exactly (in float64), just above and just below
    def at(c):
        return unit([c, np.sqrt(1 - c * c), 0.0])

    q = unit([[1.0, 0.0, 0.0]])
    ref = np.stack([at(0.8), at(0.81), at(0.79), unit([0.0, 0.0, 1.0])])
    sims = (q @ ref.T)[0]
    prompts_ref = ["abc", "abd", "abd", "xyz"]
    sem, txt = semantic.matches(q, ["abc"], ref, prompts_ref, progress=False)
    assert sem[0] == int(np.sum(sims >= np.float32(0.8)))
    # among the neighbours, "abc" has distance 0 (not counted) and "abd" distance 1
    neigh = [p for p, s in zip(prompts_ref, sims) if s >= np.float32(0.8)]
    assert txt[0] == sum(0 < dp_levenshtein("abc", p) < 20 for p in neigh)


def test_levenshtein_cutoff_at_twenty():
    e = unit(np.ones((3, 4)))
    a = "a" * 40
    prompts = [a, "b" * 19 + a[19:], "b" * 20 + a[20:]]  # distances 19 and 20 from the first
    sem, txt = semantic.matches(e[:1], prompts[:1], e[1:], prompts[1:], progress=False)
    assert sem[0] == 2
    assert txt[0] == 1


def test_matches_bad_inputs():
    e = unit(np.ones((2, 4)))
    with pytest.raises(ValueError, match="widths"):
        semantic.matches(e, ["a", "b"], unit(np.ones((2, 5))), ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="prompts"):
        semantic.matches(e, ["a"], e, ["a", "b"], progress=False)
    with pytest.raises(ValueError, match="exclude_self"):
        semantic.matches(e, ["a", "b"], e[:1], ["a"], exclude_self=True, progress=False)
    s, t = semantic.matches(e[:0], [], e, ["a", "b"], progress=False)
    assert s.shape == (0,) and t.shape == (0,)


@pytest.fixture(scope="module")
def minilm():
    return semantic.load_embedder()


def test_embed_matches_manual_mean_pooling(minilm):
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = semantic.model_path()
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.",
             "def f(x):\n    return x + 1", "The cat sat on the mat.", "caf\ufffd au lait"]
    got = semantic.embed(texts, model=minilm, progress=False)
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1)
        want = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert got.shape == (5, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.array_equal(got[0], got[3])  # identical texts embedded once
    # the paraphrase pair is a semantic match, the code is not
    sims = got @ got.T
    assert sims[0, 1] >= 0.8 > sims[0, 2]


# --- embedding precision (embed_dtype) -------------------------------------------------------

def real_windows(n_per_file=4):
    """64-token GPT-NeoX windows of real text: Python stdlib source and a license file, as the
    benchmark embeds (code and prose)."""
    import inspect
    import json as json_mod
    import textwrap

    from features.tokenizers import load_tokenizer

    tok = load_tokenizer("gpt-neox")
    sources = [inspect.getsource(textwrap), inspect.getsource(json_mod.decoder)]
    lic = sorted(Path(np.__file__).resolve().parent.glob("../numpy-*.dist-info/LICENSE*"))
    sources += [p.read_text(errors="replace") for p in lic[:1]]
    texts = []
    for src in sources:
        ids = tok.encode(src).ids
        for k in range(n_per_file):
            texts.append(tok.decode(ids[k * 64 : (k + 1) * 64], skip_special_tokens=False))
    return texts


@pytest.fixture(scope="module")
def minilm_bf16():
    return semantic.load_embedder(dtype="bfloat16")


@pytest.mark.filterwarnings("ignore:features:UserWarning")
def test_embed_dtype_is_validated(minilm):
    with pytest.raises(ValueError, match=r"embed dtype.*'fp16'"):
        semantic.resolve_dtype("fp16")
    with pytest.raises(ValueError, match=r"'half'"):
        semantic.embed(["a"], dtype="half", progress=False)
    with pytest.raises(ValueError, match=r"'bfloat16' differs from the model's weights"):
        semantic.embed(["a"], model=minilm, dtype="bfloat16", progress=False)
    with pytest.raises(ValueError, match=r"'int8'"):
        features.compute(None, np.zeros((2, 16), np.int64), tokenizer="gpt-neox",
                         embed_dtype="int8", progress=False, workers=1, prefix_len=8, cont_len=8)


def test_auto_dtype_follows_native_bf16():
    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    else:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert semantic.resolve_dtype("auto", "cpu") == ("bfloat16" if native else "float32")
    assert semantic.resolve_dtype("auto", "meta") == "float32"
    assert semantic.resolve_dtype("bfloat16", "meta") == "bfloat16"  # asked for: honoured


def test_bf16_embeddings_close_to_fp32(minilm, minilm_bf16):
    import torch

    texts = real_windows()
    e32 = semantic.embed(texts, model=minilm, progress=False)
    e16 = semantic.embed(texts, model=minilm_bf16, progress=False)
    assert next(minilm_bf16.parameters()).dtype == torch.bfloat16
    assert e16.dtype == np.float32 and e16.shape == e32.shape
    np.testing.assert_allclose(np.linalg.norm(e16, axis=1), 1.0, atol=1e-5)  # fp32 norm
    cos = (e16 * e32).sum(1)
    assert cos.min() > 0.999, cos
    assert np.abs(e16 - e32).max() > 1e-5  # bfloat16 really ran (not the fp32 model)


def test_embed_batching_does_not_change_results(minilm):
    texts = real_windows(2) + ["short", "a slightly longer text than that", "short"]
    whole = semantic.embed(texts, model=minilm, progress=False)
    small = semantic.embed(texts, model=minilm, batch_size=2, progress=False)
    np.testing.assert_allclose(small, whole, atol=1e-5)


@pytest.mark.filterwarnings("ignore:features:UserWarning")
def test_compute_and_cli_with_bf16_match_brute_force(minilm_bf16, tmp_path):
    import pyarrow.parquet as pq

    from features.tokenizers import decode_batch, load_tokenizer
    from memtax.cli import main

    tok = load_tokenizer("gpt-neox")
    text = ("The committee met on Tuesday to discuss the budget for the next year. " * 3
            + "Members raised concerns about the rising cost of housing. " * 3)
    ids = np.array(tok.encode(text).ids, dtype=np.int64)
    samples = np.lib.stride_tricks.sliding_window_view(ids, 16)[::3].copy()
    np.save(tmp_path / "s.npy", samples)
    argv = ["features", "--samples", str(tmp_path / "s.npy"), "--tokenizer", "gpt-neox",
            "--out", str(tmp_path / "out"), "--embed-dtype", "bfloat16", "--prefix-len", "8",
            "--cont-len", "8", "--workers", "1", "--quiet"]
    assert main(argv) == 0
    got = pq.read_table(tmp_path / "out" / "features.parquet")
    texts = decode_batch(tok, samples)
    prompts = decode_batch(tok, samples[:, :8])
    emb = semantic.embed(texts, model=minilm_bf16, progress=False)
    want_sem, want_txt = oracle(emb, prompts, emb, prompts, True)
    assert want_sem.sum() > 0 and want_txt.sum() > 0
    assert got.column("semantic_matches").to_pylist() == want_sem.tolist()
    assert got.column("textual_matches").to_pylist() == want_txt.tolist()
    meta = json.loads(got.schema.metadata[b"memtax.features"])
    assert meta["run"]["embed_dtype"] == "bfloat16"
    with pytest.raises(SystemExit) as exc:
        main(argv[:-1] + ["--embed-dtype", "fp8"])
    assert exc.value.code == 2


def test_fused_bf16_linears_equal_plain_linear_and_gelu(minilm_bf16):
    """The bf16 CPU model runs its linears through oneDNN's fused kernel (bias and BERT's exact
    GELU inside the matmul): each swapped layer against float32 F.linear (+ F.gelu) on the same
    weights, to bfloat16 rounding."""
    import torch
    from torch.nn import functional as F

    layer = minilm_bf16[0].auto_model.encoder.layer[0]
    up, down = layer.intermediate.dense, layer.output.dense
    if type(up) is torch.nn.Linear:
        pytest.skip("oneDNN fused linear unavailable here: the plain model is used")
    assert isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    x = torch.randn(2, 5, 384, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.inference_mode():
        h = up(x)
        want_h = F.gelu(F.linear(x.float(), up.weight.float(), up.bias.float()))
        y = down(h)
        want_y = F.linear(h.float(), down.weight.float(), down.bias.float())
    assert h.shape == (2, 5, 1536) and y.shape == (2, 5, 384)
    torch.testing.assert_close(h.float(), want_h, atol=0.02, rtol=0.02)
    torch.testing.assert_close(y.float(), want_y, atol=0.02, rtol=0.02)
    assert (h.float() - F.linear(x.float(), up.weight.float(), up.bias.float())).abs().max() > 0.1
