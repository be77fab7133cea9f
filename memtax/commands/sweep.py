"""`memtax sweep`: score the same samples under many checkpoints (and models) of one vocabulary.

    memtax sweep --model EleutherAI/pythia-160m-deduped --revisions step1000,step2000,step143000 \\
        --data pile/document --range 0:100000 --out sweep/
    memtax sweep --model suite/models/small suite/models/large --all-revisions \\
        --data samples.npy --out sweep/ --sequences-per-step 16 --ids-are-positions

Writes one score folder per (model, revision) under --out/scores/ and --out/sweep.json;
rerunning the same command resumes a killed sweep. Checkpoints are looked up on this machine (a
folder of step<N>/ checkpoints, the Hugging Face cache) and the hub is asked only with
--allow-network. Models are listed smallest first. Analyse with `memtax analyze --sweep DIR`.
"""

from __future__ import annotations

import argparse
import time

from memtax.commands.score import _range, add_run_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="score the same samples under every checkpoint of one or more models",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, nargs="+", metavar="MODEL",
                   help="HF id(s) or local folder(s) of checkpoints, smallest first")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--revisions", default=None,
                       help="comma-separated revisions, e.g. step1000,step2000")
    which.add_argument("--all-revisions", action="store_true",
                       help="every revision found locally (step<N> ones, in step order)")
    p.add_argument("--data", required=True,
                   help="samples: .npy, .bin/.idx prefix, .parquet/.arrow, .jsonl/.txt")
    p.add_argument("--out", required=True, help="sweep folder")
    p.add_argument("--sequences-per-step", type=int, default=1024,
                   help="training sequences per step (Pythia 1024; a suite's batch size)")
    pos = p.add_mutually_exclusive_group()
    pos.add_argument("--ids-are-positions", dest="ids_are_positions", action="store_true",
                     default=None, help="sample ids are training-stream sequence indices "
                     "(default for .bin/.idx data)")
    pos.add_argument("--ids-are-not-positions", dest="ids_are_positions", action="store_false")
    p.add_argument("--allow-network", action="store_true",
                   help="let checkpoints missing locally come from the Hugging Face hub")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache to look in")
    add_run_arguments(p)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--range", type=_range, default=None, metavar="START:STOP")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer for .jsonl/.txt data (default: the first checkpoint's)")
    p.add_argument("--no-mask-eos", dest="mask_eos", action="store_false")
    p.add_argument("--no-resume", dest="resume", action="store_false")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="score this many checkpoints at once, one CPU core each (CPU only)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _revisions(args):
    if args.all_revisions:
        return "all"
    return args.revisions


def _tokenizer(args, plan):
    """The tokenizer text data needs: --tokenizer, or the first checkpoint's own files."""
    from engine.models import load_tokenizer

    if not str(args.data).endswith((".jsonl", ".txt")):
        return None
    first = plan[0]
    spec = args.tokenizer or (str(first.location) if first.location is not None else
                              f"{first.model}@{first.revision}")
    return load_tokenizer(spec, trust_remote_code=args.trust_remote_code)


def run(args) -> int:
    import engine
    from engine.sweeping import plan_checkpoints

    if args.quiet:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    plan = plan_checkpoints(args.model, _revisions(args), cache_dir=args.cache_dir,
                            allow_network=args.allow_network)
    t0 = time.perf_counter()
    sw = engine.sweep(
        args.model, args.data, revisions=_revisions(args), out=args.out,
        prefix_len=args.prefix_len, cont_len=args.cont_len, mode=args.mode,
        batch_size=args.batch_size, dtype=args.dtype, device=args.device, resume=args.resume,
        progress=not args.quiet, mask_eos=args.mask_eos, tokenizer=_tokenizer(args, plan),
        range=args.range, limit=args.limit, shard_size=args.shard_size,
        sequences_per_step=args.sequences_per_step, ids_are_positions=args.ids_are_positions,
        allow_network=args.allow_network, cache_dir=args.cache_dir,
        labels_only=args.labels_only, trust_remote_code=args.trust_remote_code,
        workers=args.workers, profile=args.profile)
    labels = sw.labels(columns=("exact_match",)).to_pandas()
    counts = labels.groupby(["model", "revision"], sort=False)["exact_match"].sum()
    print(f"memtax sweep: {len(counts)} checkpoints x {sw.run['n_samples']} samples, "
          f"{time.perf_counter() - t0:.1f} s -> {args.out}")
    for (model, rev), k in counts.items():
        print(f"  {model}@{rev}: {int(k)} memorized")
    return 0
