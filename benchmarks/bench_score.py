"""engine.score against Hugging Face `generate`, with and without its KV cache, on Pythia shapes.

Same random-weight model, same samples, one run: medians and ratios, plus each method's peak
resident memory above the process baseline (sampled every millisecond). The labels of all three
are compared, so the run also checks that they agree.

    .venv/bin/pytest benchmarks/bench_score.py -p no:cacheprovider --benchmark-disable-gc -q -s

Environment: MEMTAX_BENCH_SHAPES (default "70m,160m"), MEMTAX_BENCH_BATCH (32),
MEMTAX_BENCH_REPEATS (3; the uncached recipe runs once per repeat too, it is the slow one),
MEMTAX_BENCH_NOCACHE=0 to skip the uncached recipe, MEMTAX_BENCH_THREADS (torch threads; default
torch's own).

Methods (batch B of P + C = 32 + 32 tokens, fp32, CPU):
    memtax        engine.score(..., mode="exact"): every column (labels, accuracy, 3 NLLs, 6 ppl)
    hf_cache      model.generate(prompt, greedy, KV cache, EOS forbidden): labels only, no NLL
    hf_nocache    Pythia's recipe: generate(use_cache=False, max_length=L, min_length=L)
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import engine
from memtax.bench import PYTHIA_SHAPES
from memtax.bench.measure import PeakRSS
from memtax.testing import build_model, hf_greedy

P = C = 32
# the uncached recipe alone takes minutes on a loaded CPU: lift pyproject's 600 s test timeout
pytestmark = pytest.mark.timeout(7200)


def _env_list(name, default):
    return [s for s in os.environ.get(name, default).split(",") if s]


def _memtax(model, rows):
    t = engine.score(model, rows, prefix_len=P, cont_len=C, batch_size=len(rows), progress=False)
    return t.column("match_len").to_numpy().astype(np.int64)


def _hf(model, rows, use_cache: bool):
    # uncached: Pythia's eval (max_length = min_length = L, use_cache=False)
    gen, true = hf_greedy(model, rows[:, :P], C, use_cache=use_cache), rows[:, P:]
    return np.where((gen != true).any(1), (gen != true).argmax(1), C)


def _time(fn, repeats):
    times, result, mem = [], None, 0
    for _ in range(repeats):
        with PeakRSS() as m:
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        mem = max(mem, m.extra)
    return float(np.median(times)), result, mem


@pytest.mark.parametrize("shape", _env_list("MEMTAX_BENCH_SHAPES", "70m,160m"))
def test_score_vs_hf_generate(benchmark, shape):
    if os.environ.get("MEMTAX_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["MEMTAX_BENCH_THREADS"]))
    batch = int(os.environ.get("MEMTAX_BENCH_BATCH", "32"))
    repeats = int(os.environ.get("MEMTAX_BENCH_REPEATS", "3"))
    model = build_model(PYTHIA_SHAPES[shape], torch.float32, "cpu", seed=0)
    rng = np.random.default_rng(0)
    rows = rng.integers(1, model.config.vocab_size, size=(batch, P + C))
    # half the rows memorized (continuation = the model's own greedy output), so the labels
    # comparison covers both outcomes
    rows[: batch // 2, P:] = hf_greedy(model, rows[: batch // 2, :P], C)

    with torch.inference_mode():
        _memtax(model, rows[:2]), _hf(model, rows[:2], True)  # warm-up
        ours, ml_ours, mem_ours = _time(lambda: _memtax(model, rows), repeats)
        cache, ml_cache, mem_cache = _time(lambda: _hf(model, rows, True), repeats)
        results = {"memtax_ms": ours * 1e3, "hf_cache_ms": cache * 1e3,
                   "speedup_vs_cache": cache / ours,
                   "peak_mb_memtax": mem_ours / 2**20, "peak_mb_hf_cache": mem_cache / 2**20}
        np.testing.assert_array_equal(ml_ours, ml_cache)
        print(f"\n[{shape}] memtax {ours * 1e3:.0f} ms, hf cache {cache * 1e3:.0f} ms", flush=True)
        if os.environ.get("MEMTAX_BENCH_NOCACHE", "1") != "0":
            nocache, ml_nocache, mem_nocache = _time(lambda: _hf(model, rows, False), repeats)
            np.testing.assert_array_equal(ml_ours, ml_nocache)
            results.update(hf_nocache_ms=nocache * 1e3, speedup_vs_nocache=nocache / ours,
                           peak_mb_hf_nocache=mem_nocache / 2**20)
    assert (ml_ours[: batch // 2] == C).all()
    benchmark.extra_info.update({k: round(v, 3) for k, v in results.items()})
    benchmark.extra_info.update(shape=shape, batch=batch, repeats=repeats,
                                threads=torch.get_num_threads())
    print(f"\n[{shape}] " + "  ".join(f"{k}={v:.2f}" for k, v in results.items()))
    # the timed body for pytest-benchmark's own table: one engine.score call
    benchmark.pedantic(lambda: _memtax(model, rows), rounds=1, iterations=1)
