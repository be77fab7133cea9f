"""Scoring throughput: memtax against HF forward / generate, per Pythia shape
(docs/notes/benchmarks.md).

Run:  .venv/bin/pytest benchmarks/bench_throughput.py -p no:cacheprovider --benchmark-disable-gc -q -s

The suite behind `memtax bench` (memtax/bench/), in pytest-benchmark form: every method of
`memtax.bench.METHODS` scores the same samples with the same random-weight model; the last test
prints samples/s, TFLOP/s (the documented FLOP formula), the ratios against each baseline
measured in the same run, and checks that every method computed the same labels.

Sizes (defaults: the 70M shape, fp32, batch 16 on a CPU; 160M, bf16, batch 1,024 on CUDA):
  MEMTAX_BENCH_SHAPES=160m,410m     Pythia shapes (70m ... 12b)
  MEMTAX_BENCH_BATCH=1024           batch size of every method
  MEMTAX_BENCH_SAMPLES=4096         rows scored per round (default: 2 batches)
  MEMTAX_BENCH_DTYPE=bf16           fp32 / fp16 / bf16
  MEMTAX_BENCH_ROUNDS=3             timed rounds per method (median)
The uncached recipe runs at the same batch and dtype here (`memtax bench` runs it in fp16 at
batch 1,024 on CUDA).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine.device import DTYPES, dtype_name
from engine.models import wrap_model
from memtax import bench
from memtax.testing import build_model, make_samples

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
SHAPES = os.environ.get("MEMTAX_BENCH_SHAPES", "160m" if CUDA else "70m").split(",")
BATCH = int(os.environ.get("MEMTAX_BENCH_BATCH", 1024 if CUDA else 16))
SAMPLES = int(os.environ.get("MEMTAX_BENCH_SAMPLES", 2 * BATCH if CUDA else BATCH))
DTYPE = DTYPES[os.environ.get("MEMTAX_BENCH_DTYPE", "bf16" if CUDA else "fp32")]
ROUNDS = int(os.environ.get("MEMTAX_BENCH_ROUNDS", 3 if CUDA else 1))
P, C = 32, 32

RESULTS: dict[tuple[str, str], dict] = {}


@pytest.fixture(scope="module", params=SHAPES)
def setup(request):
    shape = bench.PYTHIA_SHAPES[request.param]
    model = build_model(shape, DTYPE, DEVICE, seed=0)
    tokens = make_samples(model, SAMPLES, prefix_len=P, cont_len=C, seed=0,
                          memorized_fraction=0.01)
    ctx = bench.Context(model, wrap_model(model), P, C, model.config.eos_token_id)
    yield shape, ctx, tokens
    del model, ctx
    if CUDA:
        torch.cuda.empty_cache()


@pytest.mark.parametrize("method", list(bench.METHODS))
def test_throughput(benchmark, setup, method):
    shape, ctx, tokens = setup
    run = bench.METHODS[method].run
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    labels = benchmark.pedantic(lambda: run(ctx, tokens, BATCH), rounds=ROUNDS, warmup_rounds=1,
                                iterations=1)
    sec = benchmark.stats.stats.median
    flops = bench.method_flops(method, shape, P, C, match_len=labels["match_len"],
                               n_samples=len(tokens))
    info = {"samples_per_s": len(tokens) / sec, "tflops": flops / sec / 1e12,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / bench.GiB if CUDA else None}
    benchmark.extra_info.update(info)
    RESULTS[(shape.name, method)] = {**info, "labels": labels}


def test_ratios_and_agreement():
    if not RESULTS:
        pytest.skip("no throughput measured")
    for shape in sorted({s for s, _ in RESULTS}):
        rows = {m: r for (s, m), r in RESULTS.items() if s == shape}
        print(f"\n{shape} ({dtype_name(DTYPE)}, batch {BATCH}, {SAMPLES} samples, "
              f"{DEVICE.type}):")
        for m, r in rows.items():
            ratios = ", ".join(f"{r['samples_per_s'] / rows[b]['samples_per_s']:.2f}x vs {b}"
                               for b in bench.BASELINES if b in rows and b != m)
            mem = f", peak {r['peak_mem_gib']:.2f} GiB" if r["peak_mem_gib"] is not None else ""
            print(f"  {m:20s} {r['samples_per_s']:10.1f} samples/s {r['tflops']:8.3f} TFLOP/s"
                  f"{mem}  {ratios}")
        ref = rows.get("memtax_exact")
        if ref is None or DTYPE != torch.float32:
            continue  # 16-bit numerics may flip near-ties between implementations
        for m, r in rows.items():
            np.testing.assert_array_equal(r["labels"]["match_len"], ref["labels"]["match_len"],
                                          err_msg=m)
        gens = [r["labels"]["gen_score"] for r in rows.values() if "gen_score" in r["labels"]]
        for g in gens[1:]:
            np.testing.assert_allclose(g, gens[0])
