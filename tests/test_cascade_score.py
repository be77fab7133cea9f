"""engine.score(labels_only=True): the cascade's table holds exactly the full pass's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gen_oracle import build_rows, varied_model

import engine


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
