"""Benchmarks of kernels.fused_head against the unfused torch sequence.

Two ways to run it:

* pytest-benchmark (CPU, and CUDA when present), a few minutes:
      .venv/bin/pytest benchmarks/bench_kernels.py -p no:cacheprovider --benchmark-disable-gc -q
  MEMTAX_BENCH_BIG=1 adds the Pythia-160M head (d=768) and a larger batch on CPU.
* the GPU table (benchmarks/gpu_check.sh calls it), Pythia head shapes in bf16:
      python benchmarks/bench_kernels.py --table --out benchmarks/results [--sweep]
  prints time, achieved TFLOP/s, speed-up and peak extra memory per shape and writes
  <gpu>_<date>_fused_head.{json,md}. --sweep (or MEMTAX_BENCH_SWEEP=1) also times other block
  configurations, to update the table in kernels/fused_head_triton.py.
* without a GPU, `python benchmarks/bench_kernels.py --ptxas 90` compiles the kernel for sm_90a
  (80 for Ampere) and prints shared memory, registers and spills of each swept configuration.

The unfused baseline is what a correct unfused implementation does: `logits = hidden @
weight.T` in the input dtype, log-sum-exp and the target logit in fp32 (16-bit log-sum-exp loses
about three digits), and the argmax with the masked token excluded. "matmul only" is the
lower bound of any unfused method.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

from kernels import fused_head, fused_head_torch

VOCAB = 50304  # Pythia's padded vocabulary
PYTHIA_D = [512, 768, 1024, 2048, 4096, 5120]  # 70M, 160M, 410M, 1.4B, 6.9B, 12B
GPU_N = [8192, 32768]
EOS = 0
BIG = os.environ.get("MEMTAX_BENCH_BIG") == "1"


def make_inputs(n, d, v, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, device=device, dtype=torch.float32).to(dtype)
    weight = (torch.randn(v, d, generator=g, device=device) * (2.0 / d**0.5)).to(dtype)
    targets = torch.randint(0, v, (n,), generator=g, device=device)
    return hidden, weight, targets


def unfused(hidden, weight, targets, masked_token=EOS):
    """The unfused torch sequence: full logits, then argmax and log-sum-exp."""
    logits = hidden @ weight.T
    lse = torch.logsumexp(logits.float(), dim=-1)
    tgt = logits.gather(1, targets[:, None]).squeeze(1).float() - lse
    logits[:, masked_token] = float("-inf")
    return logits.argmax(dim=-1), lse, tgt


# --- pytest-benchmark --------------------------------------------------------------------

CPU_SHAPES = [(2016, 512)] + ([(2016, 768), (8192, 512)] if BIG else [])  # 32 x 63 positions


@pytest.mark.parametrize("n,d", CPU_SHAPES)
@pytest.mark.parametrize("impl", ["fused_torch", "unfused"])
def test_cpu_head(benchmark, impl, n, d):
    benchmark.group = f"cpu head fp32 N={n} d={d} V={VOCAB}"
    hidden, weight, targets = make_inputs(n, d, VOCAB, torch.float32, "cpu")
    fn = {
        "fused_torch": lambda: fused_head_torch(hidden, weight, targets, masked_token=EOS),
        "unfused": lambda: unfused(hidden, weight, targets),
    }[impl]
    out = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    ref = unfused(hidden, weight, targets)
    assert (out[0] == ref[0]).float().mean() > 0.999
    assert (out[1] - ref[1]).abs().max() < 1e-3


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("d", PYTHIA_D)
@pytest.mark.parametrize("impl", ["fused_triton", "unfused"])
def test_gpu_head(benchmark, impl, d):
    n = GPU_N[-1]
    benchmark.group = f"gpu head bf16 N={n} d={d}"
    hidden, weight, targets = make_inputs(n, d, VOCAB, torch.bfloat16, "cuda")
    if impl == "fused_triton":

        def fn():
            return fused_head(hidden, weight, targets, masked_token=EOS, impl="triton",
                              verify=False)
    else:

        def fn():
            return unfused(hidden, weight, targets)

    def synced():
        out = fn()
        torch.cuda.synchronize()
        return out

    benchmark.pedantic(synced, rounds=10, iterations=1, warmup_rounds=2)


# --- the GPU table (gpu_check.sh) ----------------------------------------------------------


def _time_ms(fn):
    """Median milliseconds of fn on CUDA (triton.testing.do_bench: L2 flushed, CUDA events)."""
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def _peak_extra_mb(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _row(n, d, dtype):
    hidden, weight, targets = make_inputs(n, d, VOCAB, dtype, "cuda")

    def fused():
        return fused_head(hidden, weight, targets, masked_token=EOS, impl="triton", verify=False)

    def base():
        return unfused(hidden, weight, targets)

    def mm():
        return hidden @ weight.T

    a, b = fused(), base()  # also compiles the kernel outside the timings
    agree = (a[0] == b[0]).float().mean().item()
    lse_err = (a[1] - b[1]).abs().max().item()
    t_fused, t_base, t_mm = _time_ms(fused), _time_ms(base), _time_ms(mm)
    flop = 2.0 * n * VOCAB * d
    row = {
        "d": d,
        "N": n,
        "V": VOCAB,
        "dtype": str(dtype).removeprefix("torch."),
        "fused_ms": round(t_fused, 3),
        "fused_tflops": round(flop / t_fused / 1e9, 1),
        "unfused_ms": round(t_base, 3),
        "unfused_tflops": round(flop / t_base / 1e9, 1),
        "matmul_only_ms": round(t_mm, 3),
        "speedup": round(t_base / t_fused, 2),
        "speedup_vs_matmul_only": round(t_mm / t_fused, 2),
        "fused_peak_extra_mib": round(_peak_extra_mb(fused), 1),
        "unfused_peak_extra_mib": round(_peak_extra_mb(base), 1),
        "argmax_agreement": round(agree, 6),
        "lse_max_abs_diff": lse_err,
    }
    return row  # the inputs go with this frame; the caller empties the CUDA cache


SWEEP = [  # (block_n, block_v, block_k, num_warps, num_stages)
    (128, 128, 64, 8, 4),
    (128, 128, 64, 8, 3),
    (128, 256, 64, 8, 3),
    (128, 128, 32, 8, 4),
    (64, 256, 64, 4, 3),
    (64, 128, 64, 4, 4),
    (128, 64, 64, 4, 4),
    (256, 128, 64, 8, 3),
]


def _sweep_shape(n, d, dtype):
    from kernels.fused_head_triton import HeadConfig, fused_head_triton

    hidden, weight, targets = make_inputs(n, d, VOCAB, dtype, "cuda")
    ref = fused_head(hidden, weight, targets, masked_token=EOS, impl="triton", verify=False)
    rows = []
    for bn, bv, bk, w, s in SWEEP:
        for splits in (None, 1):
            cfg = HeadConfig(bn, bv, bk, num_warps=w, num_stages=s, splits=splits)

            def fn(cfg=cfg):
                return fused_head_triton(hidden, weight, targets, masked_token=EOS, config=cfg)

            try:
                same = bool(torch.equal(fn()[0], ref[0]))
                ms = _time_ms(fn)
            except Exception as exc:  # out of shared memory etc.: record and go on
                rows.append({"N": n, "d": d, "config": str(cfg), "error": str(exc)[:200]})
                continue
            tf = 2.0 * n * VOCAB * d / ms / 1e9
            rows.append({"N": n, "d": d, "config": str(cfg), "ms": round(ms, 3),
                         "tflops": round(tf, 1), "same_argmax": same})
            print(f"  sweep N={n} d={d} {cfg}: {ms:.3f} ms {tf:.0f} TFLOP/s", flush=True)
    return rows


def _sweep(dtype):
    rows = []
    for n, d in [(8192, 512), (32768, 512), (32768, 2048), (32768, 5120)]:
        rows += _sweep_shape(n, d, dtype)
        torch.cuda.empty_cache()
    return rows


def ptxas_report(configs=None, arch=90, dtype="bf16", mask=True, bias=False, softcap=False,
                 split=False, even_k=True):
    """Compile the kernel ahead of time for one GPU arch (no GPU needed) and return, per block
    configuration, shared memory and the registers and spills that `ptxas -v` reports.

    Uses the ptxas bundled with Triton; the JIT's specialisations (unit strides, 16-byte
    alignment) are given explicitly so that loads are pipelined as at run time."""
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.fused_head_triton import HeadConfig, _fused_head_kernel

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next((p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists()), None)
    configs = configs or [HeadConfig(*c) for c in SWEEP]
    pointers = ["h_ptr", "w_ptr", "b_ptr", "t_ptr", "idx_ptr", "lse_ptr", "lp_ptr", "part_ptr",
                "part_idx_ptr"]
    ptypes = [f"*{dtype}", f"*{dtype}", "*fp32", "*i64", "*i64", "*fp32", "*fp32", "*fp32", "*i32"]
    scalars = {"N": "i32", "V": "i32", "D": "i32", "stride_hn": "i32", "stride_wv": "i32",
               "tiles_per_split": "i32", "logit_scale": "fp32", "softcap": "fp32",
               "masked_token": "i32"}
    out = []
    for cfg in configs:
        const = dict(stride_hd=1, stride_wd=1, HAS_BIAS=bias, HAS_SCALE=False,
                     HAS_SOFTCAP=softcap, HAS_MASK=mask, UPCAST=False,
                     DOT_PRECISION="ieee" if dtype == "fp32" else "tf32", EVEN_K=even_k,
                     SPLIT=split, BLOCK_N=cfg.block_n, BLOCK_V=cfg.block_v, BLOCK_K=cfg.block_k)
        params = list(_fused_head_kernel.arg_names)
        types = dict(zip(pointers, ptypes)) | scalars | {c: "constexpr" for c in const}
        sig = {p: types[p] for p in params}
        aligned = pointers + ["stride_hn", "stride_wv", "D"]
        src = ASTSource(
            fn=_fused_head_kernel, signature=sig,
            constexprs={(params.index(c),): v for c, v in const.items()},
            attrs={(params.index(a),): [["tt.divisibility", 16]] for a in aligned},
        )
        cc = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
        row = {"config": str(cfg), "arch": arch, "shared_bytes": cc.metadata.shared}
        if ptxas is not None:
            with tempfile.TemporaryDirectory() as tmp:
                ptx = Path(tmp) / "k.ptx"
                ptx.write_text(cc.asm["ptx"])
                target = "sm_90a" if arch == 90 else f"sm_{arch}"
                res = subprocess.run([str(ptxas), "-v", f"-arch={target}", str(ptx), "-o",
                                      str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
            regs = re.search(r"Used (\d+) registers", res.stderr)
            spill = re.search(r"(\d+) bytes spill stores", res.stderr)
            row |= {"registers": int(regs.group(1)) if regs else None,
                    "spill_store_bytes": int(spill.group(1)) if spill else None}
        out.append(row)
        print(row, flush=True)
    return out


def _markdown(meta, rows, sweep):
    cols = ["d", "N", "fused_ms", "fused_tflops", "unfused_ms", "matmul_only_ms", "speedup",
            "fused_peak_extra_mib", "unfused_peak_extra_mib", "argmax_agreement"]
    lines = [f"# fused_head on {meta['gpu']} ({meta['date']})", "",
             f"dtype {meta['dtype']}, V={VOCAB}, masked token {EOS}; torch {meta['torch']}, "
             f"triton {meta['triton']}. Times are medians (triton.testing.do_bench).", "",
             "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    if sweep:
        lines += ["", "## Block-size sweep", "", "| N | d | config | ms | TFLOP/s |",
                  "| --- | --- | --- | --- | --- |"]
        for r in sweep:
            lines.append(f"| {r['N']} | {r['d']} | {r['config']} | {r.get('ms', r.get('error'))} "
                         f"| {r.get('tflops', '')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", action="store_true", help="run the GPU table")
    p.add_argument("--out", default="benchmarks/results", help="folder for JSON and markdown")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    p.add_argument("--sweep", action="store_true",
                   default=os.environ.get("MEMTAX_BENCH_SWEEP") == "1")
    p.add_argument("--ptxas", type=int, metavar="ARCH",
                   help="no GPU needed: compile for sm_ARCH (80, 90) and report spills")
    args = p.parse_args(argv)
    if args.ptxas:
        ptxas_report(arch=args.ptxas)
        return 0
    if not args.table:
        p.print_help()
        return 2
    if not torch.cuda.is_available():
        print("bench_kernels --table: no CUDA GPU visible", file=sys.stderr)
        return 3
    import triton

    dtype = getattr(torch, args.dtype)
    gpu = torch.cuda.get_device_name()
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    meta = {"gpu": gpu, "date": date, "dtype": args.dtype, "torch": torch.__version__,
            "triton": triton.__version__, "capability": list(torch.cuda.get_device_capability())}
    rows = []
    hdr = (f"{'d':>5} {'N':>6} {'fused ms':>9} {'TFLOP/s':>8} {'unfused ms':>10} "
           f"{'mm ms':>8} {'speedup':>7} {'fused MiB':>9} {'unfused MiB':>11} {'agree':>7}")
    print(hdr)
    start = time.perf_counter()
    for n in GPU_N:
        for d in PYTHIA_D:
            r = _row(n, d, dtype)
            torch.cuda.empty_cache()
            rows.append(r)
            print(f"{d:>5} {n:>6} {r['fused_ms']:>9.3f} {r['fused_tflops']:>8.1f} "
                  f"{r['unfused_ms']:>10.3f} {r['matmul_only_ms']:>8.3f} {r['speedup']:>7.2f} "
                  f"{r['fused_peak_extra_mib']:>9.1f} {r['unfused_peak_extra_mib']:>11.1f} "
                  f"{r['argmax_agreement']:>7.4f}", flush=True)
    at_32k = [r["speedup"] for r in rows if r["N"] == 32768]
    print(f"median speed-up at N=32768: {statistics.median(at_32k):.2f}x "
          f"(target >= 1.2x); table took {time.perf_counter() - start:.0f} s")
    sweep = _sweep(dtype) if args.sweep else []

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower() + f"_{date}_fused_head"
    payload = {"meta": meta, "rows": rows, "sweep": sweep}
    for suffix, text in ((".json", json.dumps(payload, indent=2)),
                         (".md", _markdown(meta, rows, sweep))):
        tmp = out / (stem + suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / (stem + suffix))  # no partial file on failure
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
