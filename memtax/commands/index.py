"""`memtax index`: build a corpus index, count n-grams with it, print its statistics.

    memtax index build --corpus SRC --out DIR [--shard-tokens N --workers K --ray]
                       [--sequence-length 2049] [--dtype uint16|uint32] [--vocab-size V]
                       [--key-batches K]
    memtax index count --index DIR --queries FILE [--out COUNTS.npy] [--profile paper]
                       [--ray [--ray-cpus K] | --ray-address ADDRESS]
    memtax index stats DIR

SRC: a .npy token array (1-D: one document, 2-D: one per row) or a GPT-NeoX .bin/.idx dataset.
Query FILE: a .npy (Q, n) integer array, or a text file with one query per line (token ids
separated by spaces or commas; lines may differ in length). Counts are printed one per line
unless --out is given.

Profiles: an index serves both (`build` takes `--profile` only so that every command of a run
can be given the same flags; the index is the same). `count --profile paper` counts as the
paper's duplicate counts did: an occurrence that ends at its document's last token (the last
window of each training sequence of an index built with --sequence-length) is not counted.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from engine.profiles import PROFILES


def register(subparsers) -> None:
    p = subparsers.add_parser("index", help="build and query a corpus n-gram index")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = sub.add_parser("build", help="build a suffix-array index of a token corpus")
    b.add_argument("--corpus", required=True, help=".npy tokens or a GPT-NeoX .bin/.idx dataset")
    b.add_argument("--out", required=True, help="index folder to create")
    b.add_argument("--shard-tokens", type=int, default=None, help="tokens per shard")
    b.add_argument("--workers", type=int, default=1, help="parallel shard builds")
    b.add_argument("--ray", action="store_true", help="build shards as Ray tasks")
    b.add_argument(
        "--sequence-length",
        type=int,
        default=None,
        help="Pythia semantics: each L-token training sequence is its own document",
    )
    b.add_argument("--dtype", choices=["uint16", "uint32"], default=None)
    b.add_argument("--vocab-size", type=int, default=None)
    b.add_argument("--tokenizer", default=None,
                   help="the corpus's tokenizer (name such as gpt-neox, file or folder): the "
                        "fingerprint of its vocabulary is recorded and checked by features")
    b.add_argument("--overwrite", action="store_true")
    b.add_argument("--key-batches", type=int, default=None,
                   help="batches of the suffix sort's initial key buffer (N/K x 8 bytes; "
                        "each batch rescans the text; default: the library's, 2)")
    b.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="accepted for symmetry with the other commands: the index is the same "
                        "under both profiles (the paper's rule applies when counting)")

    c = sub.add_parser("count", help="count n-gram queries")
    c.add_argument("--index", required=True)
    c.add_argument("--queries", required=True, help=".npy (Q, n) or text, one query per line")
    c.add_argument("--out", default=None, help="write counts (Q,) int64 to this .npy")
    c.add_argument("--no-verify", action="store_true", help="skip checksums on open")
    c.add_argument("--ray", action="store_true",
                   help="count as Ray tasks per (shard, block of queries); the index must lie "
                        "on a file system every worker mounts")
    c.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, host:6379) instead of starting a "
                        "local one; implies --ray")
    c.add_argument("--ray-cpus", type=int, default=None,
                   help="CPUs of the local Ray cluster started without --ray-address "
                        "(default: all)")
    c.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="paper: leave out occurrences that end at their document's last token "
                        "(the paper's duplicate counts skip each sequence's last window)")

    s = sub.add_parser("stats", help="print an index's statistics as JSON")
    s.add_argument("index")


def _read_queries(path: Path) -> list[np.ndarray]:
    """The queries of FILE in file order, each a 1-D int64 array."""
    if not path.is_file():
        raise FileNotFoundError(f"queries file {str(path)!r} not found")
    if path.suffix == ".npy":
        arr = np.load(path)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{str(path)!r}: expected a (Q, n) array, got shape {arr.shape}")
        return list(arr)
    out = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        fields = [f for f in re.split(r"[\s,]+", line.strip()) if f]
        if not fields:
            continue
        try:
            out.append(np.array([int(f) for f in fields], dtype=np.int64))
        except ValueError:
            raise ValueError(
                f"{str(path)!r} line {k}: expected integer token ids, got {line.strip()[:60]!r}"
            ) from None
    return out


def _count(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from features import CorpusIndex

    idx = CorpusIndex.open(args.index, verify=not args.no_verify)
    queries = _read_queries(Path(args.queries))
    counts = np.zeros(len(queries), dtype=np.int64)
    lengths = np.array([q.shape[0] for q in queries], dtype=np.int64)
    ray = {}
    if args.ray or args.ray_address is not None:
        ray = {"cluster": "ray", "ray_address": args.ray_address, "progress": True}
        if args.ray_address is None:
            ray["num_cpus"] = args.ray_cpus
    for n in tqdm(np.unique(lengths), desc="index count", leave=False):
        rows = np.flatnonzero(lengths == n)
        batch = np.stack([queries[r] for r in rows])
        counts[rows] = idx.count(batch, **ray)
        if args.profile == "paper":  # the documents' last windows, found here (one SA search)
            counts[rows] -= idx.count_ending(batch)
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp.npy")
        np.save(tmp, counts)
        tmp.replace(out)
    else:
        print("\n".join(str(int(c)) for c in counts))
    return 0


def run(args: argparse.Namespace) -> int:
    from features import CorpusIndex

    if args.index_command == "build":
        corpus = Path(args.corpus)
        if not corpus.exists() and not Path(str(corpus) + ".bin").exists():
            raise FileNotFoundError(f"corpus {str(corpus)!r} not found")
        # the tokenizer itself, not its name: the index records its vocabulary's fingerprint,
        # which is what `memtax features --tokenizer` compares
        from engine.tokenizers import load_tokenizer

        idx = CorpusIndex.build(
            corpus,
            args.out,
            dtype=args.dtype,
            sequence_length=args.sequence_length,
            vocab_size=args.vocab_size,
            tokenizer=load_tokenizer(args.tokenizer),
            shard_tokens=args.shard_tokens,
            workers=args.workers,
            use_ray=args.ray,
            overwrite=args.overwrite,
            **({} if args.key_batches is None else {"key_batches": args.key_batches}),
        )
        print(json.dumps(idx.stats(), indent=1))
        return 0
    if args.index_command == "count":
        return _count(args)
    print(json.dumps(CorpusIndex.open(args.index).stats(), indent=1))
    return 0
