"""memtax.bench arithmetic: the FLOP formula against hand computations and torch's own FLOP
counter, parameter counts against real models, GPU peaks, the Pile projection, memory estimates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from memtax import bench
from memtax.bench import Shape, forward_flops, method_flops
from memtax.testing import build_model

TINY = Shape("tiny", layers=2, hidden=8, heads=2, vocab=10, intermediate=32, max_positions=32)


def test_forward_flops_by_hand():
    # per token: 2 FLOPs x 2 layers x (4*8^2 + 2*8*32 = 768 weights) = 3072
    # 3 tokens from position 0: matmuls 9216; attention 4*8*2*(1+2+3) = 384; head 3*2*8*10 = 480
    assert forward_flops(TINY, 3) == 9216 + 384 + 480
    # 1 token after 5 cached ones (sees 6 keys), head once: 3072 + 4*8*2*6 + 160
    assert forward_flops(TINY, 1, past=5, head_positions=1) == 3072 + 384 + 160
    assert forward_flops(TINY, 2, past=3, head_positions=0) == 2 * 3072 + 4 * 8 * 2 * (4 + 5)


def test_method_flops_by_hand():
    p, c = 2, 2
    one = forward_flops(TINY, 3)                                     # tokens 0..2, head at all 3
    assert method_flops("memtax_exact", TINY, p, c, n_samples=5) == 5 * one
    assert method_flops("hf_forward", TINY, p, c, n_samples=5) == 5 * one
    # cached generate: prefill 2 tokens (head at the last), then 1 token after 2 cached
    cached = (2 * 3072 + 64 * 3 + 160) + (3072 + 64 * 3 + 160)
    assert method_flops("hf_generate", TINY, p, c, n_samples=1) == cached
    # uncached: the whole 2-token and 3-token sequences, head once each
    nocache = (2 * 3072 + 64 * 3 + 160) + (3 * 3072 + 64 * 6 + 160)
    assert method_flops("hf_generate_nocache", TINY, p, c, n_samples=1) == nocache
    with pytest.raises(ValueError, match="unknown method"):
        method_flops("beam", TINY, p, c, n_samples=1)


def test_memtax_generate_flops_decode_only_what_is_needed():
    p, c = 4, 5
    exact = forward_flops(TINY, p + c - 1)
    m = np.array([c, c - 1, 0, 2])
    got = method_flops("memtax_generate", TINY, p, c, match_len=m)
    # brute force: a row that first mismatched at j decodes tokens j+1..c-1, one step each;
    # continuation token k is produced from the input at absolute position p+k-1
    want = len(m) * exact
    for mm in m:
        for k in range(mm + 1, c):
            want += forward_flops(TINY, 1, past=p + k - 1, head_positions=1)
    assert got == want
    assert method_flops("memtax_generate", TINY, p, c, match_len=np.array([c, c - 1])) == 2 * exact
    with pytest.raises(ValueError, match="match_len"):
        method_flops("memtax_generate", TINY, p, c, n_samples=3)


def _model(shape):
    return build_model(shape, torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_flop_formula_matches_torch_flop_counter(attn):
    shape = Shape("t", layers=2, hidden=32, heads=4, vocab=97, intermediate=64, max_positions=64)
    model = _model(shape)
    model.set_attn_implementation(attn)
    T = 11
    x = torch.randint(1, shape.vocab, (3, T))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(input_ids=x)
    causal = 4 * shape.hidden * shape.layers * T * (T + 1) // 2
    ours = 3 * forward_flops(shape, T)
    if attn == "sdpa":  # torch's counter does not count the CPU SDPA kernel: matmuls + head only
        assert fc.get_total_flops() == ours - 3 * causal
    else:  # eager attention multiplies the full T x T square (the mask comes after)
        assert fc.get_total_flops() == ours - 3 * causal + 3 * 4 * shape.hidden * shape.layers * T * T


@pytest.mark.parametrize("name", list(bench.PYTHIA_SHAPES))
def test_pythia_shapes_parameter_counts(name):
    shape = bench.PYTHIA_SHAPES[name]
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(shape.config())
    assert shape.total_params == sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert shape.matmul_params == linear
    assert model.config.rope_parameters["partial_rotary_factor"] == 0.25


def test_pythia_70m_is_70m():
    # the released Pythia-70M has 70,426,624 parameters (embedding + untied head included)
    assert bench.PYTHIA_SHAPES["70m"].total_params == 70_426_624


def test_shape_from_model_counts_linear_weights():
    model = _model(TINY)
    got = bench.shape_from_model(model)
    assert got.matmul_params == TINY.matmul_params
    assert got.total_params == sum(p.numel() for p in model.parameters())
    assert forward_flops(got, 7) == forward_flops(TINY, 7)


def test_build_model_is_random_seeded_and_in_dtype():
    a = build_model(TINY, torch.bfloat16, torch.device("cpu"), seed=3)
    b = build_model(TINY, torch.bfloat16, torch.device("cpu"), seed=3)
    c = build_model(TINY, torch.bfloat16, torch.device("cpu"), seed=4)
    wa, wb, wc = (m.get_output_embeddings().weight for m in (a, b, c))
    assert wa.dtype == torch.bfloat16 and torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert abs(float(wa.detach().float().std()) - 0.02) < 0.005
    ref = transformers.AutoModelForCausalLM.from_config(TINY.config())  # HF's own buffers
    assert torch.allclose(a.gpt_neox.rotary_emb.inv_freq, ref.gpt_neox.rotary_emb.inv_freq)


@pytest.mark.parametrize("name,peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100-PCIE-40GB", 312.0),
    ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0), ("NVIDIA A10G", 70.0), ("NVIDIA A10", 125.0),
    ("NVIDIA GeForce RTX 4090", 165.0), ("Some Future GPU", None),
])
def test_peak_lookup_prefers_the_specific_name(name, peak):
    assert bench.peak_tflops_for(name) == peak


def test_pile_projection_arithmetic():
    assert bench.PILE_SEQUENCES == 146_432_000
    # 146,432,000 sequences at 40,675.55... samples/s is exactly one hour
    assert bench.gpu_hours(146_432_000 / 3600) == pytest.approx(1.0)
    assert bench.gpu_hours(1000.0) == pytest.approx(146_432_000 / 1000 / 3600)
    assert bench.gpu_hours(10.0, n_sequences=36_000) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        bench.gpu_hours(0.0)


def test_memory_estimate_grows_and_counts_the_logits():
    s = bench.PYTHIA_SHAPES["160m"]
    weights = s.total_params * 2
    for m in bench.METHODS:
        small = bench.estimate_memory(s, m, 8, torch.bfloat16)
        big = bench.estimate_memory(s, m, 1024, torch.bfloat16)
        assert weights < small < big
    # hf_forward keeps (B, L-1, V) logits: at least that many bytes beyond the weights
    logits = 1024 * 63 * s.vocab * 2
    assert bench.estimate_memory(s, "hf_forward", 1024, torch.bfloat16) - weights > logits
    assert (bench.estimate_memory(s, "memtax_exact", 1024, torch.bfloat16)
            < bench.estimate_memory(s, "hf_forward", 1024, torch.bfloat16) - logits // 2)
    # 12B in fp32 does not fit a 24 GiB machine before any activation
    assert bench.estimate_memory(bench.PYTHIA_SHAPES["12b"], "memtax_exact", 1,
                                 torch.float32) > 24 * bench.GiB
