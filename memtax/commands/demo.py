"""`memtax demo`: the whole study on this machine's own text, offline, on a CPU.

    memtax demo                          # a miniature Pythia suite trained here, then the study
    memtax demo --model smollm2          # SmolLM2-135M (the bundled GGUF) over the same text
    memtax demo --model PATH --samples 500 --out /tmp/demo --seed 1

Reads the Python standard library's source and the installed packages' license/readme/metadata
files (one document per file). By default it trains a suite of small GPT-NeoX models on that
text (into OUT/suite; a second run reuses it), scores the first 32 + 32 tokens of every training
sequence with every checkpoint of every size, indexes the exact training stream, computes every
feature, classifies, fits the models and writes OUT/report/index.html. With --model it scores
--samples 64-token windows of the text (a quarter at document starts) with that one model
instead. Prints a summary at the end (also OUT/summary.txt).
"""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _batch(text: str):
    return text if text == "auto" else _positive(text)


def register(subparsers) -> None:
    from memtax.demo import DEFAULT_OUT, DEFAULT_SAMPLES, DEFAULT_SEED, SMOLLM2

    p = subparsers.add_parser(
        "demo", help="run the whole study on a suite trained here (or --model) and this "
        "machine's text",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--samples", type=_positive, default=None, metavar="N",
                   help="samples to score (default: every training sequence of the suite; "
                   f"with --model, {DEFAULT_SAMPLES} windows)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT}/; an earlier demo output there is "
                   "replaced, its trained suite/ kept and reused)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="S",
                   help=f"seed of the window draw and the models' splits (default {DEFAULT_SEED})")
    p.add_argument("--model", default=None,
                   help=f"one model instead of the suite: '{SMOLLM2}' (the bundled "
                   "SmolLM2-135M GGUF), a local folder, a .gguf file or a cached Hugging Face id")
    p.add_argument("--tokenizer", default=None, help="its tokenizer (default: the model's own)")
    p.add_argument("--prefix-len", type=_positive, default=32,
                   help="prompt tokens (default 32, the paper's)")
    p.add_argument("--cont-len", type=_positive, default=32,
                   help="continuation tokens that must be reproduced exactly (default 32)")
    p.add_argument("--batch-size", type=_batch, default="auto")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                   help="scoring dtype (default: fp32 for the suite; with --model, bf16 where "
                   "the CPU has native bf16 matmuls, else fp32)")
    p.add_argument("--n-boot", type=_positive, default=1000,
                   help="bootstrap resamples for the report's intervals (default 1000)")
    p.add_argument("--profile", choices=["default", "paper"], default="default",
                   help="definitions of every stage: 'default' (the paper's hazards fixed) or "
                   "'paper' (the paper's code reproduced; docs/notes/profiles.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    import os
    import signal
    import sys

    from memtax.demo import format_summary, run_demo

    # The demo reads only local files: keep transformers and the embedder off the network, and
    # let the Rust tokenizer use both cores (set for this process, which is the demo's).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    # A plain SIGTERM would kill the process before the demo removes its temporary folder;
    # turned into SystemExit it unwinds through the demo's cleanup like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    result = run_demo(args.out, samples=args.samples, seed=args.seed, model=args.model,
                      tokenizer=args.tokenizer, prefix_len=args.prefix_len,
                      cont_len=args.cont_len, batch_size=args.batch_size,
                      dtype=args.dtype, n_boot=args.n_boot, profile=args.profile,
                      progress=not args.quiet)
    print(format_summary(result), flush=True)
    return 0
