"""`memtax bench`: scoring throughput per model size, side by side with the usual baselines.

    memtax bench --device cuda                          # every Pythia shape, bf16, 64/256/1024
    memtax bench --device cuda --quick --out benchmarks/results     # the GPU-check subset
    memtax bench --device cpu --quick                   # 70M shape, fp32, batch 8, ~1 minute
    memtax bench --model EleutherAI/pythia-160m-deduped --batch-sizes 256,1024

Methods (measured in one run on the same samples): memtax_exact, memtax_generate, hf_forward
(full logits + argmax), hf_generate (KV cache), hf_generate_nocache (Pythia's recipe: fp16,
batch 1,024, use_cache=False). Prints a markdown table (samples/s, tokens/s, TFLOP/s, MFU,
peak memory, speed-ups, GPU-hours to score the Pile's 146M training sequences); with --out
also writes it and a JSON report (GPU, driver, versions, commit) into that folder.
See memtax/bench/shapes.py for the FLOP formula.
"""

from __future__ import annotations

import argparse
import os
import sys

# --quick: what fits in a CI minute on a CPU, and in the GPU check's few minutes on one
# H100/H200 (the uncached recipe costs minutes per batch at large shapes: small shapes only).
QUICK_CPU = {"shapes": ["70m"], "batch_sizes": [8], "n_samples": 8, "repeats": 1,
             "time_budget": 20.0}
QUICK_CUDA = {"shapes": ["160m", "410m", "12b"], "batch_sizes": [256, 1024], "n_samples": 2048,
              "repeats": 3, "time_budget": 10.0,
              "method_shapes": {"hf_generate_nocache": ["160m"], "memtax_generate": ["160m"],
                                "hf_generate": ["160m", "410m"]}}
FULL_CPU = {"shapes": ["70m", "160m"], "batch_sizes": [16, 32]}
FULL_CUDA = {"shapes": None, "batch_sizes": [64, 256, 1024]}


def _list(text: str) -> list[str]:
    items = [t for t in text.replace(",", " ").split() if t]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _ints(text: str) -> list[int]:
    try:
        vals = [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="throughput per model size vs HF forward / generate baselines",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shapes", type=_list, default=None,
                   help="Pythia shapes: 70m,160m,410m,1b,1.4b,2.8b,6.9b,12b (default: all on "
                        "CUDA, 70m,160m on CPU)")
    p.add_argument("--model", default=None,
                   help="benchmark a real checkpoint (HF id or folder, NAME@REV) instead of shapes")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="batch sizes to sweep (default: 64,256,1024 on CUDA, 16,32 on CPU)")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                   help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--methods", type=_list, default=None,
                   help="some of memtax_exact,memtax_generate,hf_forward,hf_generate,"
                        "hf_generate_nocache (default: all)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", default=None, help="folder for the JSON + markdown report")
    p.add_argument("--peak-tflops", type=_positive, default=None,
                   help="the device's dense bf16 peak for MFU (default: known GPUs' table)")
    p.add_argument("--samples", type=int, default=None,
                   help="rows per measurement (default: 2 x the largest batch)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (median)")
    p.add_argument("--time-budget", type=_positive, default=None,
                   help="seconds per measurement; fewer rows/repeats to stay inside (default 30)")
    p.add_argument("--recipe-batch", type=int, default=None,
                   help="batch of the uncached recipe (default 1024 on CUDA, largest sweep on CPU)")
    p.add_argument("--prefix-len", type=int, default=32)
    p.add_argument("--cont-len", type=int, default=32)
    p.add_argument("--memory-limit-gib", type=_positive, default=None,
                   help="skip what is estimated to need more (default: 92%% of the GPU, 80%% "
                        "of free RAM)")
    p.add_argument("--quick", action="store_true",
                   help="a short subset: 70m on CPU; 160m/410m/12b at 256/1024 on CUDA")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from engine.models import resolve_device
    from memtax import bench

    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; expected a folder for the report")
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    preset = dict((QUICK_CUDA if cuda else QUICK_CPU) if args.quick else
                  (FULL_CUDA if cuda else FULL_CPU))
    shapes = args.shapes or preset.pop("shapes", None) or list(bench.PYTHIA_SHAPES)
    preset.pop("shapes", None)
    kwargs = {
        "batch_sizes": args.batch_sizes or preset["batch_sizes"],
        "dtype": args.dtype or ("bf16" if cuda else "fp32"),
        "device": dev,
        "model": args.model,
        "peak_tflops": args.peak_tflops,
        "prefix_len": args.prefix_len,
        "cont_len": args.cont_len,
        "progress": not args.quiet,
        "log": None if args.quiet else (lambda s: print(s, file=sys.stderr)),
    }
    if args.methods:
        kwargs["methods"] = args.methods
    for key, val in (("n_samples", args.samples), ("repeats", args.repeats),
                     ("time_budget", args.time_budget), ("recipe_batch", args.recipe_batch)):
        if val is not None:
            if key != "time_budget" and val < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be a positive integer, got {val}")
            kwargs[key] = val
        elif key in preset:
            kwargs[key] = preset[key]
    if "method_shapes" in preset and not args.shapes and not args.model:
        kwargs["method_shapes"] = preset["method_shapes"]
    if args.memory_limit_gib is not None:
        kwargs["memory_limit"] = int(args.memory_limit_gib * bench.GiB)
    if args.out:  # after every shape: a timed-out run still leaves the shapes it finished
        kwargs["on_shape"] = lambda snapshot: bench.write_report(snapshot, args.out)
    report = bench.run_bench(shapes, **kwargs)
    print(bench.to_markdown(report), end="")
    if args.out:
        js, md = bench.write_report(report, args.out)
        print(f"memtax bench: wrote {js} and {md}", file=sys.stderr)
    if not report["results"]:
        print("memtax bench: nothing was measured (every run skipped)", file=sys.stderr)
        return 1
    return 0
