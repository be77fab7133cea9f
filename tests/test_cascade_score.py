"""engine.score(labels_only=True): the cascade's table holds exactly the full pass's labels."""

from __future__ import annotations

import numpy as np
import pytest
from gen_oracle import build_rows, varied_model

import engine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_labels_only_table(tmp_path):
    model = varied_model("opt", seed=8)
    rows, _, mlen = build_rows(model, n_memorized=3, n_random=5, seed=41)
    samples = rows.numpy()
    labels = engine.score(model, samples, labels_only=True, batch_size=10, progress=False,
                          out=tmp_path / "labels")
    full = engine.score(model, samples, batch_size=64, progress=False)
    assert labels.schema.names == ["sample_id", "exact_match", "match_len"]
    assert labels.schema.field("match_len").type == "int16"
    for name in labels.schema.names:
        np.testing.assert_array_equal(labels[name].to_numpy(), full[name].to_numpy())
    np.testing.assert_array_equal(labels["match_len"].to_numpy(), mlen.numpy())
    assert labels["exact_match"].to_numpy().sum() == 3
    assert labels.schema.metadata[b"labels_only"] == b"True"


def test_cli_flags(tmp_path, capsys):
    """`memtax score --labels-only` and `--mode generate --keep-tokens` write those tables."""
    from helpers import save_tiny

    from engine.output import read_scores
    from memtax.cli import main

    model = varied_model("gpt_neox", seed=12)
    save_tiny(model, tmp_path / "model")
    rows, want, mlen = build_rows(model, prefix_len=4, cont_len=6, n_memorized=2, n_random=3,
                                  seed=61)
    np.save(tmp_path / "rows.npy", rows.numpy())
    common = ["score", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "rows.npy"),
              "--prefix-len", "4", "--cont-len", "6", "--batch-size", "5", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "labels"), "--labels-only"]) == 0
    labels = read_scores(tmp_path / "labels")
    assert labels.schema.names == ["sample_id", "exact_match", "match_len"]
    np.testing.assert_array_equal(labels["match_len"].to_numpy(), mlen.numpy())
    assert main([*common, "--out", str(tmp_path / "gen"), "--mode", "generate",
                 "--keep-tokens"]) == 0
    gen = read_scores(tmp_path / "gen")
    np.testing.assert_array_equal(np.stack(gen["gen_tokens"].to_numpy(zero_copy_only=False)),
                                  want.numpy())
    assert main([*common, "--out", str(tmp_path / "bad"), "--keep-tokens"]) == 2
    assert "keep_tokens" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
