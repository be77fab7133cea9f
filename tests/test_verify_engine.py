"""engine.score records which head implementation scored a run (`head_impl` in the parquet
metadata) and threads `verify`: a Triton head that fails its first-use check gives the torch
twin's table (equal to head_impl="torch") with one warning; verify=False skips the check.
Kernels under the Triton interpreter."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel import: run Triton on the CPU

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import engine  # noqa: E402
import kernels.fused_head_triton as fused_triton  # noqa: E402
from kernels import verify as kv  # noqa: E402
from memtax.testing import tiny_model  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.usefixtures("one_torch_thread")
interpreted = pytest.mark.skipif(not INTERPRET, reason="needs TRITON_INTERPRET=1")
SCORE_COLUMNS = ["exact_match", "match_len", "tf_accuracy", "prompt_nll", "cont_nll", "seq_nll"]


@pytest.fixture(autouse=True)
def fresh_verdicts():
    kv.reset_verification()
    yield
    kv.reset_verification()


@pytest.fixture(scope="module")
def model_and_rows():
    model = tiny_model("gpt_neox", seed=3)
    rows = np.random.default_rng(0).integers(1, 301, size=(12, 16), dtype=np.int64)
    return model, rows


def _score(model, rows, **kw):
    return engine.score(model, rows, prefix_len=8, cont_len=8, batch_size=6, progress=False,
                        **kw)


def meta(table, key):
    return table.schema.metadata[key.encode()].decode()


@interpreted
def test_a_checked_triton_head_is_recorded(model_and_rows, tmp_path):
    model, rows = model_and_rows
    with warnings.catch_warnings():
        warnings.simplefilter("error", kv.KernelVerificationWarning)
        table = _score(model, rows, head_impl="triton", out=tmp_path / "run")
    assert meta(table, "head_impl") == "triton"
    shard = pq.read_schema(next((tmp_path / "run").glob("*.parquet")))
    assert shard.metadata[b"head_impl"] == b"triton"
    assert meta(_score(model, rows), "head_impl") == "torch"   # "auto" on CPU: the twin


@interpreted
def test_a_failing_triton_head_scores_with_the_twin(model_and_rows, monkeypatch, tmp_path):
    model, rows = model_and_rows
    want = _score(model, rows, head_impl="torch")
    real = fused_triton.fused_head_triton

    def wrong(h, w, t, **kw):
        idx, lse, lp = real(h, w, t, **kw)
        return idx, lse + 0.5, lp - 0.5           # a miscompiled log-sum-exp

    monkeypatch.setattr(fused_triton, "fused_head_triton", wrong)
    with pytest.warns(kv.KernelVerificationWarning, match=r"fused_head on cpu \(float32\)"):
        got = _score(model, rows, head_impl="triton", out=tmp_path / "run")
    for col in SCORE_COLUMNS:
        assert np.array_equal(got.column(col).to_numpy(), want.column(col).to_numpy()), col
    note = meta(got, "head_impl")
    assert note.startswith("torch (triton failed verification: lse differs by up to 0.5")
    shard = pq.read_schema(next((tmp_path / "run").glob("*.parquet")))
    assert shard.metadata[b"head_impl"].decode() == note


@interpreted
def test_verify_off_skips_the_check(model_and_rows, monkeypatch):
    model, rows = model_and_rows
    compare = []
    real_compare = kv._compare
    monkeypatch.setattr(kv, "_compare", lambda *a: compare.append(1) or real_compare(*a))
    table = _score(model, rows, head_impl="triton", verify=False)
    assert compare == [] and meta(table, "head_impl") == "triton (unverified)"
    _score(model, rows, head_impl="triton")
    assert compare == [1]


@interpreted
def test_generate_mode_records_the_decode_head(model_and_rows):
    model, rows = model_and_rows
    table = _score(model, rows, head_impl="triton", mode="generate")
    assert meta(table, "head_impl") == "triton"
    assert meta(table, "decode_head_impl") == "torch"   # the decode step's head on a CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(INTERPRET, reason="run CUDA kernel tests with TRITON_INTERPRET=0")
def test_gpu_score_records_a_checked_triton_head():
    model = tiny_model("gpt_neox", seed=3, vocab_size=50304, hidden=256)
    rows = np.random.default_rng(0).integers(1, 50304, size=(256, 64), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", kv.KernelVerificationWarning)
        table = engine.score(model, rows, device="cuda", dtype="bf16", progress=False,
                             mode="generate")
    assert meta(table, "head_impl") == "triton"
    assert meta(table, "decode_head_impl") == "triton"
