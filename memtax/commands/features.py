"""`memtax features`: the feature table of a scored run.

    memtax features --scores runs/pythia-160m --index idx/ --tokenizer gpt-neox --out feats/

Writes `OUT/features.parquet` (score columns + features, keyed by sample_id; definitions and
versions in the schema metadata). The samples behind the scores are read from `--samples`, or
else from the source the score run recorded (an absolute path and its selection: range,
checkpoint, stride), from any working directory. Scores, samples and index are checked against
each other first: the samples' fingerprint, the windowing (lengths, text stride), the
vocabulary and the tokenizer; a mismatch is refused naming both values. Without --index or
--tokenizer the features that need them are skipped with a warning.

`--profile paper` computes each feature as the paper's code did (features.pipeline; the table
of differences is docs/notes/profiles.md) and records the profile in the table; a score run
recorded under another profile is refused, naming both.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from engine.profiles import PROFILES

OUT_NAME = "features.parquet"


def register(subparsers) -> None:
    p = subparsers.add_parser("features", help="compute per-sample features of a scored run",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--scores", help="score folder (memtax score --out) or .parquet score table")
    p.add_argument("--samples", help="the scored samples (.npy, .bin/.idx, .parquet, ...); "
                   "default: the source the score run recorded")
    p.add_argument("--index", help="corpus index folder (memtax index); needed for duplicates "
                   "and token frequencies")
    p.add_argument("--tokenizer", help="tokenizer name (gpt-neox, gpt2), file or folder; needed "
                   "for text features")
    p.add_argument("--reference", help="samples to count semantic matches against (default: "
                   "the scored samples)")
    p.add_argument("--no-semantic", action="store_true", help="skip semantic/textual matches")
    p.add_argument("--embed-device", default="cpu", help="device for the MiniLM embedder")
    p.add_argument("--embed-dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                   help="MiniLM precision: float32 (default, reference), bfloat16 (~1.6-2x "
                   "faster on CPUs with native bf16, may flip a few pairs at the 0.8 "
                   "threshold), auto (bfloat16 where native)")
    p.add_argument("--stride", type=int, default=None,
                   help="window stride of text samples (default: the score run's)")
    p.add_argument("--prefix-len", type=int, default=None)
    p.add_argument("--cont-len", type=int, default=None)
    p.add_argument("--chunk-size", type=int, default=8192)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", required=True, help="output folder (features.parquet inside)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing features.parquet")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ray", action="store_true",
                   help="compute the chunks as Ray tasks; finished chunks are kept in "
                        "OUT/features.parquet.parts/ so a rerun resumes (index and OUT on a "
                        "file system every worker mounts)")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, host:6379) instead of starting a "
                        "local one; implies --ray")
    p.add_argument("--ray-cpus", type=int, default=None,
                   help="CPUs of the local Ray cluster started without --ray-address")
    p.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="default: the paper's definitions with its code's hazards fixed; paper: "
                        "each feature as the paper's code computed it (Hugging Face decode "
                        "cleanup, its templating tests and code band, no last window in "
                        "duplicates, order-statistic p25/p75, ...); see docs/notes/profiles.md")


def run(args) -> int:
    from engine.output import write_parquet_atomic
    from features.pipeline import compute, read_table

    if args.scores is None and args.samples is None:
        raise ValueError("give --scores (a score folder or table) and/or --samples")
    out = Path(args.out)
    target = out / OUT_NAME
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{str(target)!r} exists; pass --overwrite to replace it")
    table = read_table(args.scores) if args.scores is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show
        tok, samples, index = _checked_inputs(args, table)
        feats = compute(table, samples, index=index, tokenizer=tok, stride=args.stride,
                        reference=args.reference, semantic=not args.no_semantic,
                        prefix_len=args.prefix_len, cont_len=args.cont_len,
                        chunk_size=args.chunk_size, workers=args.workers,
                        embed_device=args.embed_device, embed_dtype=args.embed_dtype,
                        progress=not args.quiet, profile=args.profile,
                        **_cluster(args, target))
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(feats, target)
    if args.ray or args.ray_address is not None:  # the parts were kept for a resume only
        import shutil

        shutil.rmtree(_parts_dir(target), ignore_errors=True)
    print(f"wrote {feats.num_rows} rows x {feats.num_columns} columns to {target}")
    return 0


def _parts_dir(target: Path) -> Path:
    return target.with_name(target.name + ".parts")


def _cluster(args, target: Path) -> dict:
    """compute's cluster arguments for --ray / --ray-address (none without them)."""
    if not args.ray and args.ray_address is None:
        return {}
    options = {"parts_dir": str(_parts_dir(target)), "ray_address": args.ray_address}
    if args.ray_address is None:
        options["num_cpus"] = args.ray_cpus
    return {"cluster": "ray", "cluster_options": options}


def _lengths(args, meta: dict) -> tuple[int, int]:
    """The score run's lengths (given ones must agree with them), else the given ones, else 32
    and 32."""
    out = []
    for name in ("prefix_len", "cont_len"):
        given = getattr(args, name)
        recorded = meta.get(name.encode())
        if given is not None and recorded is not None and int(recorded) != given:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {given} differs from the score run's {name}="
                             f"{int(recorded)}: the samples would be windowed differently")
        out.append(int(given if given is not None else recorded if recorded is not None else 32))
    return out[0], out[1]


def _checked_inputs(args, table):
    """(tokenizer, samples, index): the lengths checked here (to name the flags), the rest by
    `features.compute` (`features.provenance`)."""
    from features.tokenizers import load_tokenizer

    if table is None and args.stride is not None and args.samples is None:
        raise ValueError("--stride applies to text samples; give --scores or --samples")
    if table is not None:
        _lengths(args, table.schema.metadata or {})
    return load_tokenizer(args.tokenizer), args.samples, args.index


def _show(message, category, filename, lineno, file=None, line=None):
    import sys

    print(f"memtax features: warning: {message}", file=sys.stderr)
