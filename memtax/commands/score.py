"""`memtax score`: score samples for memorization with one teacher-forced pass per batch.

    memtax score --model EleutherAI/pythia-160m-deduped@step143000 --data pile/document \\
        --out scores/ --checkpoint 143000 --limit 100000

Writes parquet shards + manifest.json to --out (resumable: rerun the same command after a
crash), shows a progress bar in samples/s and prints a one-line summary.

--profile paper reproduces the paper's code where it departs from its definitions (the
*_ppl_paper columns exactly as its perplexity code, fp16 on CUDA): docs/notes/profiles.md.

--mode generate decodes with `engine.options.DecodeOptions`, from --decoder, --screened-head
and --cuda-graphs; without those flags the environment variables MEMTAX_DECODE_SCREEN
(auto|on|off) and MEMTAX_DECODE_GRAPHS (1 = on) still set the last two. They change speed only.
"""

from __future__ import annotations

import argparse
import os
import time

from engine.profiles import PROFILES


def _range(text: str) -> tuple[int, int]:
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP, got {text!r}") from None
    return start, stop


def _batch(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def add_run_arguments(p) -> None:
    """The options every scoring run takes (`memtax score` and `memtax sweep`)."""
    p.add_argument("--prefix-len", type=int, default=32)
    p.add_argument("--cont-len", type=int, default=32)
    p.add_argument("--batch-size", type=_batch, default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto: fp32 on CPU; on CUDA the checkpoint's own 16-bit dtype (fp16 for "
                        "Pythia), else bf16; fp16 with --profile paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--mode", default="exact", choices=["exact", "generate"])
    p.add_argument("--labels-only", action="store_true",
                   help="only exact_match and match_len, by the fast staged cascade (mode exact)")
    p.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="default: the paper's definitions with its code's hazards fixed; paper: "
                        "its code reproduced (the *_ppl_paper columns exactly as its code, "
                        "dtype auto = fp16 on CUDA); see docs/notes/profiles.md")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "score", help="score samples for memorization (exact match, match length, perplexities)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True,
                   help="HF id or local folder, optionally NAME@REVISION, or a .gguf file")
    p.add_argument("--data", required=True,
                   help="samples: .npy, .bin/.idx prefix, .parquet/.arrow, .jsonl/.txt (+--tokenizer)")
    p.add_argument("--out", required=True, help="output folder for parquet shards + manifest")
    add_run_arguments(p)
    p.add_argument("--keep-tokens", action="store_true",
                   help="with --mode generate, also store the greedy continuation (gen_tokens)")
    p.add_argument("--decoder", default="lean", choices=["lean", "dynamic"],
                   help="with --mode generate: the decode loop (default lean)")
    p.add_argument("--screened-head", default=None, choices=["auto", "on", "off"],
                   help="with --mode generate on CPU: screen each step's argmax head in bf16 "
                        "(default auto: where the CPU has bf16 dot products; or "
                        "MEMTAX_DECODE_SCREEN)")
    p.add_argument("--cuda-graphs", default=None, action=argparse.BooleanOptionalAction,
                   help="with --mode generate on CUDA: capture the decode step as CUDA graphs "
                        "(default off, or MEMTAX_DECODE_GRAPHS=1)")
    p.add_argument("--limit", type=int, default=None, help="score at most this many samples")
    p.add_argument("--range", type=_range, default=None, metavar="START:STOP",
                   help="rows (sequence indices for .bin/.idx) to score")
    p.add_argument("--checkpoint", type=int, default=None,
                   help="Pythia step: keep the .bin/.idx sequences seen by this checkpoint")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer for .jsonl/.txt data (default: the model's own)")
    p.add_argument("--stride", type=int, default=None, help="window stride for text data")
    p.add_argument("--column", default=None,
                   help="the token column of .parquet/.arrow data (default: tokens, input_ids, "
                        "token_ids, or the only list column)")
    p.add_argument("--allow-missing-weights", action="store_true",
                   help="score a checkpoint whose weights leave parameters uninitialised "
                        "(missing, unexpected or mis-shaped tensors; refused by default)")
    p.add_argument("--no-mask-eos", dest="mask_eos", action="store_false",
                   help="let the greedy argmax pick the EOS token (Pythia's eval forbade it)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="recompute shards a previous run of the same configuration left")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def decode_options(args, environ=None):
    """The `DecodeOptions` of these arguments: flags first, then MEMTAX_DECODE_SCREEN and
    MEMTAX_DECODE_GRAPHS from `environ` (default os.environ), then the defaults."""
    from engine.options import DecodeOptions

    environ = os.environ if environ is None else environ
    screen = args.screened_head
    if screen is None:
        screen = environ.get("MEMTAX_DECODE_SCREEN", "auto")
    graphs = args.cuda_graphs
    if graphs is None:
        graphs = environ.get("MEMTAX_DECODE_GRAPHS", "0") == "1"
    try:
        return DecodeOptions(decoder=args.decoder, screened_head=screen, cuda_graphs=graphs)
    except ValueError as exc:
        raise ValueError(f"{exc} (from --screened-head or MEMTAX_DECODE_SCREEN)") from None


def run(args) -> int:
    import engine
    from engine.data import open_samples
    from engine.models import load_tokenizer
    from engine.output import check_writable
    from engine.scoring import DEFAULT_SHARD_SIZE

    decode = decode_options(args)
    check_writable(args.out)  # before tokenizing the data or loading the model

    if args.quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    tokenizer = None
    data = str(args.data)
    if data.endswith((".jsonl", ".txt")):
        tokenizer = load_tokenizer(args.tokenizer or args.model,
                                   trust_remote_code=args.trust_remote_code)
    source = open_samples(
        data, prefix_len=args.prefix_len, cont_len=args.cont_len, tokenizer=tokenizer,
        range=args.range, limit=args.limit, checkpoint=args.checkpoint, stride=args.stride,
        column=args.column,
    )
    t0 = time.perf_counter()
    table = engine.score(
        args.model, source, prefix_len=args.prefix_len, cont_len=args.cont_len, mode=args.mode,
        batch_size=args.batch_size, dtype=args.dtype, device=args.device, out=args.out,
        resume=args.resume, progress=not args.quiet, mask_eos=args.mask_eos,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE, trust_remote_code=args.trust_remote_code,
        labels_only=args.labels_only, keep_tokens=args.keep_tokens, decode=decode,
        tokenizer=tokenizer, allow_missing_weights=args.allow_missing_weights,
        profile=args.profile,
    )
    elapsed = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    n = table.num_rows
    memorized = int(table.column("exact_match").to_numpy().sum()) if n else 0
    scored = int((table.schema.metadata or {}).get(b"scored_here", n))
    rate = scored / elapsed if elapsed > 0 else float("nan")
    print(
        f"memtax score: {n} samples, {memorized} memorized ({memorized / max(n, 1):.2%}), "
        f"{elapsed:.1f} s ({rate:.1f} samples/s{'' if scored == n else f', {n - scored} resumed'})"
        f" -> {args.out}"
    )
    return 0
