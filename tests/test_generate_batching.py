"""mode="generate" results do not depend on batch size, row order or which rows share a batch
(fp32), nor on when finished rows are compacted away or which decode loop runs; caches with
sliding windows take the grouped path and still equal HF `generate`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from gen_oracle import INIT_STD, build_rows, hf_greedy, random_prompts, varied_model

from engine.generate import gen_columns, resume_greedy, teacher_forced_greedy
from engine.models import wrap_model
from engine.options import DecodeOptions

P, C = 32, 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def neox():
    model = varied_model("gpt_neox", seed=1)
    rows, want, _ = build_rows(model, n_memorized=4, n_random=6, seed=11)
    return wrap_model(model), rows, want


def _cols(sm, rows, batch):
    parts = [gen_columns(sm, rows[s : s + batch], prefix_len=P, cont_len=C, masked_token=0,
                         keep_tokens=True) for s in range(0, len(rows), batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_batch_size_and_order_do_not_matter(neox):
    sm, rows, want = neox
    ref = _cols(sm, rows, len(rows))
    np.testing.assert_array_equal(np.stack(ref["gen_tokens"]), want.numpy())
    for batch in (1, 5, 16):
        got = _cols(sm, rows, batch)
        for k in ("gen_score", "gen_match_count", "gen_edit_distance"):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{k}, batch {batch}")
        np.testing.assert_array_equal(np.stack(got["gen_tokens"]), want.numpy())
    # shuffled rows: every row meets different neighbours (and first-mismatch positions)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    got = _cols(sm, rows[perm], 7)
    np.testing.assert_array_equal(got["gen_match_count"], ref["gen_match_count"][perm.numpy()])
    np.testing.assert_array_equal(np.stack(got["gen_tokens"]), want[perm].numpy())


def test_compaction_policy_does_not_matter(neox):
    """The dynamic loop's compaction policies and the lean loop (prefix-view compaction)."""
    sm, rows, want = neox
    # 1.01: never compact, finished rows ride along to the end
    for decoder, frac in (("dynamic", 0.0), ("dynamic", 0.5), ("dynamic", 1.01), ("lean", 0.0)):
        tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
        got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                            tf_argmax=tf, cache=cache,
                            options=DecodeOptions(decoder=decoder, compact_fraction=frac))
        assert torch.equal(got, want), (decoder, frac)


def test_nothing_to_decode():
    """All rows memorized or missing only their last token: no decoding step runs."""
    model = varied_model("gpt2", seed=2)
    sm = wrap_model(model)
    prompts = random_prompts(3, P, 301, seed=3)
    g = hf_greedy(model, prompts, C)
    rows = torch.cat([prompts, g], 1)
    rows[2, -1] = (rows[2, -1] + 1) % 301
    calls = []
    orig = sm.backbone

    def counting(*a, **k):
        calls.append(a[0].shape)
        return orig(*a, **k)

    sm.backbone = counting
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                        tf_argmax=tf, cache=cache)
    assert torch.equal(got, g) and ml.tolist() == [C, C, C - 1]
    assert len(calls) == 1  # only the teacher-forced pass


def test_sliding_window_cache_takes_grouped_path():
    torch.manual_seed(0)
    cfg = transformers.MistralConfig(
        vocab_size=301, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
        sliding_window=8, eos_token_id=0, bos_token_id=0, initializer_range=INIT_STD,
    )
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    sm = wrap_model(model)
    rows, want, mlen = build_rows(model, n_memorized=2, n_random=4, seed=4)
    tf, ml, cache = teacher_forced_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0)
    assert any(cache.is_sliding)
    assert torch.equal(ml, mlen)
    got = resume_greedy(sm, rows, prefix_len=P, cont_len=C, masked_token=0, match_len=ml,
                        tf_argmax=tf, cache=cache)
    assert torch.equal(got, want)
