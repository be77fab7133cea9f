"""engine.decode_cache.CheckedReplays: the first replay of each captured decode step is checked
against the eager step; a captured step that disagrees is dropped with one warning and the
decoder runs eagerly (results unchanged: HF generate's); one that agrees is kept and not
checked again; verify=False replays unchecked. On CPU the "captured" steps are injected
functions; the CUDA tests at the end capture real graphs."""

from __future__ import annotations

import warnings

import pytest
import torch
from gen_oracle import build_rows, varied_model

from engine.decode_cache import CheckedReplays, DecodeWorkspace, GraphVerificationWarning
from engine.generate import resume_greedy, teacher_forced_greedy
from engine.models import wrap_model
from engine.options import DecodeOptions

P, C = 32, 32
VOCAB = 101
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Buffers:
    """A toy decode state: cur (next token) and pos (position) for 8 rows, and a step that
    maps them as a decode step would (a new token from the old one and the position)."""

    def __init__(self):
        self.cur = torch.arange(8, dtype=torch.int64) * 13 % VOCAB
        self.pos = torch.arange(8, dtype=torch.int64) + 3
        self.eager_calls = 0

    def eager(self, n):
        self.eager_calls += 1
        self.cur[:n] = (self.cur[:n] * 7 + self.pos[:n]) % VOCAB
        self.pos[:n] += 1

    def expected_after(self, n, steps):
        """The state after `steps` eager steps on rows [0, n), computed on copies."""
        cur, pos = self.cur.clone(), self.pos.clone()
        for _ in range(steps):
            cur[:n] = (cur[:n] * 7 + pos[:n]) % VOCAB
            pos[:n] += 1
        return cur, pos


def captured(buf, *, wrong_token=False, wrong_pos=False):
    """A stand-in for a graph's replay: the eager step's arithmetic, optionally wrong on row 2."""
    calls = []

    def replay(n):
        calls.append(n)
        buf.cur[:n] = (buf.cur[:n] * 7 + buf.pos[:n]) % VOCAB
        buf.pos[:n] += 1
        if wrong_token:
            buf.cur[2] = (buf.cur[2] + 1) % VOCAB
        if wrong_pos:
            buf.pos[2] += 1

    return replay, calls


@pytest.mark.parametrize("wrong", ["token", "pos"])
def test_a_disagreeing_captured_step_falls_back_to_eager(wrong):
    buf = Buffers()
    replay, calls = captured(buf, wrong_token=wrong == "token", wrong_pos=wrong == "pos")
    steps = CheckedReplays(buf.eager, buf.cur, buf.pos)
    steps.add(8, lambda: replay(8))
    want_cur, want_pos = buf.expected_after(8, 3)
    with pytest.warns(GraphVerificationWarning,
                      match=r"captured step for 8 rows disagreed with the eager step on 1 row"):
        steps.step(8)
    assert steps.failure is not None and not steps.replays
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # warned once: the rest is eager, silently
        steps.step(8)
        steps.step(8)
    assert calls == [8] and buf.eager_calls == 3
    assert torch.equal(buf.cur, want_cur) and torch.equal(buf.pos, want_pos)


def test_an_agreeing_captured_step_is_kept_and_checked_once():
    buf = Buffers()
    replay, calls = captured(buf)
    steps = CheckedReplays(buf.eager, buf.cur, buf.pos)
    steps.add(4, lambda: replay(4))
    want_cur, want_pos = buf.expected_after(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            steps.step(4)
    assert steps.failure is None and steps.checked == {4}
    assert calls == [4, 4, 4] and buf.eager_calls == 1     # the first replay's check only
    assert torch.equal(buf.cur, want_cur) and torch.equal(buf.pos, want_pos)
    steps.step(6)                                # no graph for 6 rows: eager
    assert buf.eager_calls == 2 and calls == [4, 4, 4]


def test_verify_off_replays_without_the_check():
    buf = Buffers()
    replay, calls = captured(buf, wrong_token=True)
    steps = CheckedReplays(buf.eager, buf.cur, buf.pos, verify=False)
    steps.add(8, lambda: replay(8))
    want_cur, _ = buf.expected_after(8, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps.step(8)
    assert calls == [8] and buf.eager_calls == 0
    assert int(buf.cur[2]) == (int(want_cur[2]) + 1) % VOCAB     # the wrong token came through


@pytest.fixture(scope="module")
def neox():
    model = varied_model("gpt_neox", seed=9)
    rows, want, _ = build_rows(model, n_memorized=2, n_random=5, seed=51)
    return wrap_model(model), rows, want


def _decode(sm, rows, ws, verify=True):
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    return resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                         tf_argmax=tf, cache=cache, options=DecodeOptions(decoder="lean"),
                         workspace=ws, verify=verify)


def _inject(st, corrupt: bool):
    """Give the (CPU) state a "captured" step per bucket: its own eager step, with every
    row's next token shifted when `corrupt`."""
    st.use_graphs = st.use_buckets = True
    v = st.sm.vocab_size
    for n in st.buckets:
        def replay(n=n):
            st._eager_step(n)
            if corrupt:
                st.cur[:n].add_(1).remainder_(v)
        st.replays.add(n, replay)


@pytest.mark.parametrize("corrupt", [True, False])
def test_the_lean_loop_with_a_captured_step_equals_hf_generate(neox, corrupt):
    sm, rows, want = neox
    ws = DecodeWorkspace()
    assert torch.equal(_decode(sm, rows, ws), want)         # builds the state
    st = ws.state
    _inject(st, corrupt)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = _decode(sm, rows, ws)
    assert ws.state is st and torch.equal(got, want)        # HF generate's tokens either way
    graph_warnings = [w for w in seen if issubclass(w.category, GraphVerificationWarning)]
    if corrupt:
        assert len(graph_warnings) == 1 and "disagreed with the eager step" in str(
            graph_warnings[0].message)
        assert not st.use_graphs and not st.replays.replays
    else:
        assert not graph_warnings and st.use_graphs and st.replays.checked == set(st.buckets)


# --- CUDA ----------------------------------------------------------------------------------

gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@gpu[0]
@gpu[1]
@pytest.mark.parametrize("corrupt", [False, True])
def test_gpu_captured_steps_are_checked(corrupt):
    """Real CUDA graphs pass their first-replay check; a graph made to return wrong tokens is
    dropped and the result is still HF generate's."""
    model = varied_model("gpt_neox", seed=9)
    rows, want, _ = build_rows(model, n_memorized=3, n_random=8, seed=51)
    sm = wrap_model(model.cuda())
    rows = rows.cuda()
    ws = DecodeWorkspace()
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    opts = DecodeOptions(decoder="lean", cuda_graphs=True)
    st = ws.state_for(sm, cache.layers, rows.shape[0], P + C - 1, C - 1, 0, opts)
    assert st.replays.replays, "capture failed"
    if corrupt:
        for n, replay in list(st.replays.replays.items()):
            def bad(replay=replay, n=n):
                replay()
                st.cur[:n].add_(1).remainder_(sm.vocab_size)
            st.replays.add(n, bad)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                            tf_argmax=tf, cache=cache, options=opts, workspace=ws)
    assert torch.equal(got.cpu(), want)
    flagged = [w for w in seen if issubclass(w.category, GraphVerificationWarning)]
    assert len(flagged) == (1 if corrupt else 0)
    assert (st.replays.failure is not None) == corrupt and st.use_graphs == (not corrupt)
