"""The label-only cascade gives the full teacher-forced pass's labels on every row.

Oracles: `engine.scoring.score_batch` (the one full pass) and HF `generate`'s first mismatch, on
tiny random GPT-NeoX, Llama, GPT-2 and OPT models over rows memorized on purpose, rows whose
first mismatch is at every position 0..C-1, and random rows; for several stage schedules.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gen_oracle import build_rows, varied_model

from engine.cascade import cascade_match_len, label_columns, stage_bounds
from engine.models import wrap_model
from engine.scoring import score_batch

P, C = 32, 32
SCHEDULES = [(1,), (1, 8), (2, 4, 16), (31,), (5, 40), ()]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=("gpt_neox", "llama", "gpt2", "opt"))
def case(request):
    model = varied_model(request.param, seed=5)
    rows, _, mlen = build_rows(model, n_memorized=3, n_random=6, seed=21)
    return request.param, wrap_model(model), rows, mlen


def test_labels_equal_full_pass(case):
    arch, sm, rows, mlen = case
    with torch.inference_mode():
        full = score_batch(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    np.testing.assert_array_equal(full["match_len"], mlen.numpy())
    for stages in SCHEDULES:
        stats = {}
        ml = cascade_match_len(sm, rows, prefix_len=P, cont_len=C, masked_token=0,
                               stages=stages, stats=stats)
        np.testing.assert_array_equal(ml.numpy(), full["match_len"], err_msg=f"{arch} {stages}")
        # rows entering stage s are exactly those that matched all tokens before it
        starts = [0] + stats["stage_ends"][:-1]
        want = [int((mlen >= s).sum()) for s in starts]
        assert stats["survivors"] == want, (arch, stages)
    cols = label_columns(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    np.testing.assert_array_equal(cols["exact_match"], full["exact_match"])
    np.testing.assert_array_equal(cols["match_len"], full["match_len"])
    assert cols["match_len"].dtype == np.int16 and cols["exact_match"].dtype == np.bool_


def test_labels_do_not_depend_on_batching(case):
    arch, sm, rows, mlen = case
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(1))
    parts = [cascade_match_len(sm, rows[perm][s : s + 7], prefix_len=P, cont_len=C,
                               masked_token=0) for s in range(0, len(rows), 7)]
    assert torch.equal(torch.cat(parts), mlen[perm]), arch


def test_unmasked_eos_and_short_prompt():
    """masked_token=None and a 1-token prompt follow the full pass too."""
    model = varied_model("gpt_neox", seed=6)
    with torch.no_grad():
        model.get_output_embeddings().weight[0] *= 4  # EOS (0) often the greedy choice
    sm = wrap_model(model)
    g = torch.Generator().manual_seed(2)
    rows = torch.randint(0, 301, (20, 9), generator=g)
    for masked in (0, None):
        with torch.inference_mode():
            full = score_batch(sm, rows, prefix_len=1, cont_len=8, masked_token=masked)
        ml = cascade_match_len(sm, rows, prefix_len=1, cont_len=8, masked_token=masked,
                               stages=(1, 3))
        np.testing.assert_array_equal(ml.numpy(), full["match_len"])


def test_stage_bounds_and_bad_input():
    assert stage_bounds((8, 1), 32) == [1, 8, 32]
    assert stage_bounds((), 32) == [32]
    assert stage_bounds((40, 32, 4), 32) == [4, 32]
    with pytest.raises(ValueError, match="stages"):
        stage_bounds((0, 4), 32)
    with pytest.raises(ValueError, match="stages"):
        stage_bounds(("a",), 32)
    sm = wrap_model(varied_model("gpt2"))
    rows = torch.zeros((2, 64), dtype=torch.long)
    with pytest.raises(ValueError, match="prefix_len"):
        cascade_match_len(sm, rows, prefix_len=0, cont_len=32, masked_token=0)
    with pytest.raises(ValueError, match="64"):
        cascade_match_len(sm, rows[:, :-1], prefix_len=32, cont_len=32, masked_token=0)
    with pytest.raises(ValueError, match="integer"):
        cascade_match_len(sm, rows.float(), prefix_len=32, cont_len=32, masked_token=0)
