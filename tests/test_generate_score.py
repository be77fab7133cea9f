"""engine.score(mode="generate"): the table's generation columns equal HF `generate`, the exact
columns are those of mode="exact", and keep_tokens / bad combinations behave."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from gen_oracle import build_rows, levenshtein, varied_model

import engine
from engine.decode_cache import DecodeState
from engine.options import DecodeOptions
from kernels.argmax_head_screened import ScreenedHead

P, C = 32, 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama():
    model = varied_model("llama", seed=7)
    rows, want, mlen = build_rows(model, n_memorized=3, n_random=5, seed=31)
    return model, rows, want, mlen


DECODES = {"default": None, "dynamic": DecodeOptions(decoder="dynamic"),
           "screened": DecodeOptions(screened_head="on"),
           "fp32 head": DecodeOptions(screened_head="off")}


@pytest.mark.parametrize("decode", DECODES.values(), ids=DECODES.keys())
def test_generate_mode_table(llama, tmp_path, decode, monkeypatch):
    """Every decode option gives HF generate's table; each really took its path (the lean
    loop's state or not, the screened step head or not)."""
    model, rows, want, mlen = llama
    states, screens = [], []
    real_init, real_screen = DecodeState.__init__, ScreenedHead.__call__

    def init_spy(self, *a, **k):
        states.append(1)
        real_init(self, *a, **k)

    def screen_spy(self, *a, **k):
        screens.append(1)
        return real_screen(self, *a, **k)

    monkeypatch.setattr(DecodeState, "__init__", init_spy)
    monkeypatch.setattr(ScreenedHead, "__call__", screen_spy)
    gen = engine.score(model, rows.numpy(), mode="generate", keep_tokens=True, batch_size=13,
                       progress=False, out=tmp_path / "gen", decode=decode)
    lean = decode is None or decode.decoder == "lean"
    assert bool(states) == lean and len(states) <= 1       # one state, reused across batches
    if decode is not None and decode.screened_head != "auto":
        assert bool(screens) == (decode.screened_head == "on")
    exact = engine.score(model, rows.numpy(), batch_size=64, progress=False)
    truth = rows[:, P:]
    count = (want == truth).sum(1).numpy()
    np.testing.assert_array_equal(gen["gen_match_count"].to_numpy(), count)
    np.testing.assert_array_equal(gen["gen_score"].to_numpy(), (count / C).astype(np.float32))
    np.testing.assert_array_equal(
        gen["gen_edit_distance"].to_numpy(),
        [levenshtein(a, b) for a, b in zip(want.tolist(), truth.tolist())])
    np.testing.assert_array_equal(np.stack(gen["gen_tokens"].to_numpy(zero_copy_only=False)),
                                  want.numpy())
    np.testing.assert_array_equal(gen["match_len"].to_numpy(), mlen.numpy())
    for name in exact.schema.names:  # generate mode also produces every exact-mode column
        np.testing.assert_allclose(gen[name].to_numpy(), exact[name].to_numpy(), rtol=1e-5,
                                   err_msg=name)
    tok_type = gen.schema.field("gen_tokens").type
    assert pa.types.is_list(tok_type) and tok_type.value_type == pa.int32()
    # resumable: a rerun on the folder reads the same table back
    again = engine.score(model, rows.numpy(), mode="generate", keep_tokens=True, batch_size=13,
                         progress=False, out=tmp_path / "gen", decode=decode)
    assert again.select(gen.schema.names).equals(gen)


def test_bad_combinations(llama):
    model, rows, _, _ = llama
    with pytest.raises(ValueError, match="keep_tokens"):
        engine.score(model, rows.numpy(), keep_tokens=True, progress=False)
    with pytest.raises(ValueError, match="labels_only"):
        engine.score(model, rows.numpy(), mode="generate", labels_only=True, progress=False)
