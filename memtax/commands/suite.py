"""`memtax suite`: build a miniature Pythia-like suite on a CPU, or describe one.

    memtax suite build --corpus PATH --out DIR [--sizes tiny,small] [--epochs 1.5 ...]
    memtax suite build --corpus demo --out DIR          # this machine's text, the demo's config
    memtax suite info DIR

PATH: a .txt file, a .jsonl file (one JSON object with a "text" field per line) or a folder of
them (several --corpus add up); `demo` is the demo's corpus (the standard library's source and
the installed packages' license and metadata files). Options not given take the demo's
configuration with `--corpus demo` and SuiteConfig's defaults otherwise. A build that was
killed resumes when run again with the same corpus and options; a folder holding another suite
is refused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_OPTIONS = [  # (flag, SuiteConfig field, type, help)
    ("--vocab-size", "vocab_size", int, "BPE vocabulary size"),
    ("--seq-len", "seq_len", int, "tokens per training sequence (Pythia: 2049)"),
    ("--batch-size", "batch_size", int, "sequences per step"),
    ("--epochs", "epochs", float, "passes over the unique sequences"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--warmup", "warmup", float, "warm-up share of the steps"),
    ("--seed", "seed", int, "seed of the shuffle, share and initialisation"),
    ("--corpus-share", "corpus_share", float, "seeded share of the documents used"),
    ("--max-sequences", "max_sequences", int, "cap on unique sequences"),
    ("--checkpoints", "checkpoints", int, "evenly spaced checkpoints"),
]


def register(subparsers) -> None:
    p = subparsers.add_parser("suite", help="build or describe a miniature Pythia-like suite",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="suite_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="train a tokenizer, write the stream, train the models")
    b.add_argument("--corpus", action="append", required=True, metavar="PATH",
                   help="text corpus (file, .jsonl, folder) or `demo`; repeatable")
    b.add_argument("--out", required=True, metavar="DIR", help="suite folder")
    b.add_argument("--sizes", default=None,
                   help="comma-separated presets or NAME=L<layers>-H<hidden>-A<heads>")
    for flag, dest, typ, text in _OPTIONS:
        b.add_argument(flag, dest=dest, type=typ, default=None, help=text)
    b.add_argument("--autocast", choices=["auto", "bf16", "off"], default=None)
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    i = sub.add_parser("info", help="print a suite's manifest summary as JSON")
    i.add_argument("suite")


def _corpus(paths: list[str]):
    if paths == ["demo"]:
        try:
            from memtax.demo.corpus import gather_files, read_text
        except ImportError:
            from memtax.demo_corpus import gather_files, read_text

        return [read_text(f.path) for f in gather_files()]
    if "demo" in paths:
        raise ValueError("--corpus demo cannot be combined with other corpus paths")
    return [Path(p) for p in paths]


def _config(args):
    from memtax import suite

    base = suite.DEMO_CONFIG if args.corpus == ["demo"] else suite.SuiteConfig()
    changes = {dest: getattr(args, dest) for _, dest, _, _ in _OPTIONS
               if getattr(args, dest) is not None}
    if args.sizes is not None:
        changes["sizes"] = suite.parse_sizes(args.sizes)
    if args.autocast is not None:
        changes["autocast"] = args.autocast
    return base.replace(**changes)


def _info(s) -> dict:
    m = s.manifest
    return {
        "root": str(s.root), "complete": s.complete, "seq_len": s.seq_len,
        "batch_size": s.batch_size, "vocab_size": s.vocab_size, "eot_id": s.eot_id,
        "stream": m.get("stream"),
        "models": {n: {k: e[k] for k in ("layers", "hidden", "heads", "parameters", "steps",
                                          "final_loss", "complete")}
                   for n, e in m.get("models", {}).items()},
        "timings": m.get("timings"),
    }


def run(args) -> int:
    from memtax import suite

    if args.suite_command == "info":
        print(json.dumps(_info(suite.open_suite(args.suite, require_complete=False)), indent=1))
        return 0
    config = _config(args)
    s = suite.build_suite(_corpus(args.corpus), args.out, config=config,
                          progress=not args.quiet)
    print(json.dumps(_info(s), indent=1))
    return 0
