"""memtax.bench.roofline and `run_bench` on CPU without a given peak: each shape's measured bf16
GEMM rate becomes the peak its rows' MFU is taken against."""

from __future__ import annotations

import pytest

from memtax import bench
from memtax.bench import Shape
from memtax.bench import run as bench_run
from memtax.bench.roofline import gemm_gflops, roofline_gflops

TINY = Shape("tiny", layers=2, hidden=64, heads=4, vocab=301, max_positions=64)


def test_cpu_rows_are_measured_against_the_shapes_roofline(monkeypatch):
    asked = []

    def planted(d, d_ff, vocab, tokens, **kw):
        asked.append((d, d_ff, vocab, tokens))
        return {"head": 500.0, "mlp": 250.0, "roofline": 500.0}   # GFLOP/s

    monkeypatch.setattr(bench_run, "roofline_gflops", planted)
    report = bench.run_bench([TINY], batch_sizes=[4], dtype="fp32", device="cpu", n_samples=4,
                             prefix_len=6, cont_len=6, repeats=1, methods=["memtax_exact"],
                             progress=False, seed=1)
    assert asked == [(64, 256, 301, 4 * 11)]
    (row,) = report["results"]
    assert row["roofline_tflops"] == 0.5 and row["load_average"] >= 0
    assert row["mfu"] == pytest.approx(row["tflops"] / 0.5)


def test_a_given_peak_is_used_instead(monkeypatch):
    monkeypatch.setattr(bench_run, "roofline_gflops", lambda *a, **k: pytest.fail("measured"))
    report = bench.run_bench([TINY], batch_sizes=[4], dtype="fp32", device="cpu", n_samples=4,
                             prefix_len=6, cont_len=6, repeats=1, methods=["memtax_exact"],
                             progress=False, peak_tflops=2.0, seed=1)
    (row,) = report["results"]
    assert "roofline_tflops" not in row and row["mfu"] == pytest.approx(row["tflops"] / 2.0)


def test_gemm_rates_are_positive_and_the_roofline_is_their_best():
    rates = roofline_gflops(32, 64, 100, 16, repeats=1)
    assert rates["head"] > 0 and rates["mlp"] > 0
    assert rates["roofline"] == max(rates["head"], rates["mlp"])
    with pytest.raises(ValueError, match="positive sizes"):
        gemm_gflops(0, 4, 4)


def test_markdown_says_what_mfu_is_against(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_run, "roofline_gflops",
                        lambda *a, **k: {"head": 400.0, "mlp": 1.0, "roofline": 400.0})
    report = bench.run_bench([TINY], batch_sizes=[4], dtype="fp32", device="cpu", n_samples=4,
                             prefix_len=6, cont_len=6, repeats=1, methods=["memtax_exact"],
                             progress=False, seed=1)
    _, md = bench.write_report(report, tmp_path)
    text = md.read_text()
    assert "measured in this run per shape: tiny 400 GFLOP/s" in text
