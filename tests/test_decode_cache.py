"""engine.decode_cache and the lean decode loop of engine.generate.

- `PositionalCache.update` writes each row's K/V at the row's own position (brute force).
- The lean loop (static per-row-position cache, own 4-D mask, argmax-only head, prefix-view
  compaction) equals HF `generate` and the first (dynamic) loop on every row, for GPT-NeoX,
  Llama, GPT-2 and OPT, with its own 4-D mask or HF's mask from a 2-D one, with eager
  attention, with bucketed batches (finished rows riding along, as under CUDA graphs) and
  with its state reused across batches of different sizes, and with and without the bf16
  screen on its head (kernels.argmax_head_screened).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from gen_oracle import build_rows, varied_model
from torch.utils._python_dispatch import TorchDispatchMode

import engine.decode_cache as dc
from engine.decode_cache import DecodeWorkspace, PositionalCache, mask_kind, step_mask
from engine.generate import resume_greedy, teacher_forced_greedy
from engine.models import wrap_model
from engine.options import DecodeOptions
from kernels.argmax_head_screened import ScreenedHead, bf16_is_fast

P, C = 32, 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_update_writes_at_each_rows_position():
    g = torch.Generator().manual_seed(0)
    b, h, s, d = 5, 3, 9, 4
    keys = torch.randn(b, h, s, d, generator=g)
    values = torch.randn(b, h, s, d, generator=g)
    cache = PositionalCache([keys.clone()], [values.clone()])
    pos = torch.tensor([0, 8, 3, 3, 5])
    k_new = torch.randn(4, h, 1, d, generator=g)
    v_new = torch.randn(4, h, 1, d, generator=g)
    cache.use_rows(4, pos[:4])   # row 4 is outside the batch: must stay untouched
    k_out, v_out = cache.update(k_new, v_new, 0)
    want_k, want_v = keys.clone(), values.clone()
    for r in range(4):
        want_k[r, :, pos[r]] = k_new[r, :, 0]
        want_v[r, :, pos[r]] = v_new[r, :, 0]
    assert torch.equal(cache.layers[0].full_keys, want_k)
    assert torch.equal(cache.layers[0].full_values, want_v)
    assert k_out.shape == (4, h, s, d) and torch.equal(k_out, want_k[:4])
    assert cache.get_seq_length() == s - 1 and cache.get_mask_sizes(1, 0) == (s, 0)
    # two-token update: positions pos, pos+1
    k2 = torch.randn(2, h, 2, d, generator=g)
    cache.use_rows(2, torch.tensor([1, 6]))
    cache.update(k2, k2, 0)
    assert torch.equal(cache.layers[0].full_keys[1, :, 6:8], k2[1])
    assert torch.equal(cache.layers[0].full_keys[0, :, 1:3], k2[0])


def test_step_masks():
    slots, pos = torch.arange(6), torch.tensor([0, 3, 5])
    ok = slots[None] <= pos[:, None]
    assert torch.equal(step_mask("2d", slots, pos, torch.float32), ok.long())
    assert torch.equal(step_mask("bool4d", slots, pos, torch.float32)[:, 0, 0], ok)
    add = step_mask("float4d", slots, pos, torch.float16)[:, 0, 0]
    assert add.dtype == torch.float16
    assert (add[ok] == 0).all() and (add[~ok] == torch.finfo(torch.float16).min).all()
    with pytest.raises(ValueError, match="mask"):
        mask_kind(varied_model("gpt2"), "3d")


@pytest.fixture(scope="module", params=("gpt_neox", "llama", "gpt2", "opt"))
def case(request):
    model = varied_model(request.param, seed=2)
    rows, want, mlen = build_rows(model, n_memorized=2, n_random=5, seed=21)
    return request.param, model, rows, want, mlen


def _decode(sm, rows, workspace=None, **options):
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    return resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                         tf_argmax=tf, cache=cache, options=DecodeOptions(**options),
                         workspace=workspace)


def test_lean_loop_equals_generate_and_the_dynamic_loop(case):
    arch, model, rows, want, _ = case
    sm = wrap_model(model)
    seen = []
    orig = sm.backbone

    def spy(*a, **k):
        seen.append((type(k.get("past_key_values")).__name__, k.get("attention_mask")))
        return orig(*a, **k)

    sm.backbone = spy
    lean = _decode(sm, rows, decoder="lean")
    assert torch.equal(lean, want), arch
    # it really ran on the positional cache with its own 4-D mask (SDPA: bool)
    steps = [m for name, m in seen if name == "PositionalCache"]
    assert len(steps) == C - 1 and all(m.dim() == 4 and m.dtype == torch.bool for m in steps)
    sm.backbone = orig
    assert torch.equal(_decode(sm, rows, decoder="dynamic"), want), arch
    assert torch.equal(_decode(sm, rows, decoder="lean", mask="2d"), want), arch


def test_eager_attention_takes_an_additive_mask():
    model = varied_model("gpt_neox", seed=3)
    rows, want, _ = build_rows(model, n_memorized=2, n_random=3, seed=5)
    model.set_attn_implementation("eager")
    sm = wrap_model(model)
    assert mask_kind(model) == "float4d"
    assert torch.equal(_decode(sm, rows, decoder="lean"), want)


def test_buckets_and_state_reuse(case):
    """Finished rows riding along in bucketed batches (the CUDA-graph shapes) and a state kept
    across batches of different sizes change nothing."""
    arch, model, rows, want, _ = case
    sm = wrap_model(model)
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    layers = cache.layers
    ws = DecodeWorkspace()
    st = ws.state_for(sm, layers, rows.shape[0], P + C - 1, C - 1, 0)
    st.use_buckets = True
    assert st.bucket(1) == 16 and st.bucket(17) == 32 and st.bucket(rows.shape[0]) == rows.shape[0]
    got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                        tf_argmax=tf, cache=cache, options=DecodeOptions(decoder="lean"),
                        workspace=ws)
    assert ws.state is st and torch.equal(got, want), arch
    # smaller batches reuse the same (bucketed) state; their stale rows ride along harmlessly
    for lo, hi in ((0, 9), (9, 30), (30, rows.shape[0])):
        assert torch.equal(_decode(sm, rows[lo:hi], ws, decoder="lean"), want[lo:hi]), (arch, lo)
    assert ws.state is st


class _HostReads(TorchDispatchMode):
    """Records ops that read tensor data back to the host or have data-dependent shapes:
    under CUDA graph capture these fail (a sync) or bake one batch's values into the graph."""

    BAD = ("_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select",
           "unique", "_unique2")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.BAD:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_decode_step_reads_nothing_back(case):
    """The step a CUDA graph captures (backbone on the positional cache, own mask, argmax head,
    buffer updates) has no host read-back and no data-dependent shape, for every arch. (The
    CPU-only screened head does read back, by design: it never runs on CUDA.)"""
    arch, model, rows, _, _ = case
    sm = wrap_model(model)
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    st = DecodeWorkspace().state_for(sm, cache.layers, rows.shape[0], P + C - 1, C - 1, 0,
                                     DecodeOptions(screened_head="off"))
    st.cache.load(cache.layers, torch.arange(rows.shape[0]), P + C - 1)
    st.pos.copy_(P + ml.clamp(max=C - 2))
    spy = _HostReads()
    with torch.inference_mode(), spy:
        st.step(rows.shape[0])
        st.step(16)
    assert spy.seen == [], (arch, spy.seen)
    # the spy does see a read-back: the fused head's target validation (why the steps use
    # kernels.argmax_head instead)
    with torch.inference_mode(), spy:
        sm.head(torch.zeros(2, sm.hidden_size), torch.zeros(2, dtype=torch.long))
    assert "is_nonzero.default" in spy.seen


@pytest.mark.parametrize("screen", ["on", "off"])
def test_screened_head_decodes_the_same(case, screen, monkeypatch):
    """The decode step's head with the bf16 screen (kernels.argmax_head_screened) and without:
    the same greedy tokens as HF generate on every row, and the screen really ran (on) or not."""
    arch, model, rows, want, _ = case
    calls = []
    orig = ScreenedHead.__call__

    def spy(self, hidden, **kw):
        calls.append(hidden.shape[0])
        return orig(self, hidden, **kw)

    monkeypatch.setattr(ScreenedHead, "__call__", spy)
    sm = wrap_model(model)
    assert torch.equal(_decode(sm, rows, decoder="lean", screened_head=screen), want), (
        arch, screen)
    assert len(calls) == (C - 1 if screen == "on" else 0)
    # "auto" follows the CPU: screened exactly where it has bf16 dot products
    assert (dc._screened_head(sm, torch.float32, "auto") is not None) == bf16_is_fast()
    # never for 16-bit activations or a soft-capped head, and a bad setting is named
    assert dc._screened_head(sm, torch.bfloat16, "on") is None
    with pytest.raises(ValueError, match="screened_head.*'yes'"):
        DecodeOptions(screened_head="yes")
    with pytest.raises(ValueError, match="screened_head.*'yes'"):
        dc._screened_head(sm, torch.float32, "yes")


def test_rebuilt_prefix_cache_is_shorter():
    """Without the scorer's cache only the true prefixes are re-run (cache of P + max m slots
    < P+C-1): the static cache takes it as is and decodes the same."""
    model = varied_model("llama", seed=4)
    rows, want, mlen = build_rows(model, n_memorized=2, n_random=4, seed=8)
    sm = wrap_model(model)
    sub = mlen < 20                                   # the longest true prefix is P + 19 slots
    got = resume_greedy(sm, rows[sub], prefix_len=P, cont_len=C, masked_token=0,
                        match_len=mlen[sub], options=DecodeOptions(decoder="lean"))
    assert torch.equal(got, want[sub])


def test_bad_decoder_option():
    sm = wrap_model(varied_model("gpt2"))
    rows = torch.randint(2, 301, (2, P + C))
    with pytest.raises(ValueError, match="decoder"):
        resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0,
                      options=DecodeOptions(decoder="static"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_equal_hf_generate():
    """The lean loop with CUDA graphs (fp32, Triton argmax head) equals CPU HF generate, over
    two batches of different sizes (graphs captured once, replayed for both)."""
    model = varied_model("gpt_neox", seed=9)
    rows, want, _ = build_rows(model, n_memorized=3, n_random=8, seed=51)
    sm = wrap_model(model.cuda())
    ws = DecodeWorkspace()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # a failed capture warns: fail here
        for lo, hi in ((0, rows.shape[0]), (5, 25)):
            r = rows[lo:hi].cuda()
            tf, ml, cache = teacher_forced_greedy(sm, r, prefix_len=P, cont_len=C,
                                                  masked_token=0)
            got = resume_greedy(sm, r, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                                tf_argmax=tf, cache=cache, workspace=ws,
                                options=DecodeOptions(decoder="lean", cuda_graphs=True))
            assert torch.equal(got.cpu(), want[lo:hi]), lo
    assert ws.state.graphs and ws.state.use_graphs
