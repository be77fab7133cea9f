"""`memtax analyze --features DIR [DIR ...] --out REPORT`: taxonomy, models and the HTML report.

Each DIR is a folder of parquet files (read together as one table) or one parquet file: the
feature table of one model or checkpoint. Its label is the `model` (and `revision`) entry of the
parquet schema metadata when present, else the path's name.

`--profile paper` reproduces the paper's code in every study (`--paper` is the same); every
table must have been made under the same profile (a table recording another one is refused,
naming both, and no report is written). `--extra-memorized DIR` adds a feature table of
memorized samples drawn beside the random sample (the paper's memorized split) to the primary
run's analysis.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.profiles import PROFILES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="classify memorized samples, fit the predictive models, write the report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--features",
        nargs="+",
        default=[],
        metavar="DIR",
        help="feature table(s): a folder of parquet files or one .parquet each",
    )
    p.add_argument("--sweep", default=None, metavar="DIR",
                   help="a sweep folder (memtax sweep): adds the memorization dynamics section")
    p.add_argument("--out", required=True, metavar="REPORT", help="report folder to write")
    p.add_argument(
        "--primary",
        default=None,
        help="run label for models/dependencies/threshold (default: the last)",
    )
    p.add_argument("--recitation-threshold", type=float, default=5)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--search", action="store_true", help="also search the optimally partitioned model"
    )
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="definitions: 'default' (the paper's hazards fixed) or 'paper' (the "
                        "paper's code reproduced); default: default")
    p.add_argument("--paper", action="store_true", help="the same as --profile paper")
    p.add_argument("--extra-memorized", default=None, metavar="DIR",
                   help="a feature table of further memorized samples of the primary run "
                        "(folder of parquet files or one .parquet)")
    p.add_argument(
        "--drop-nonfinite",
        action="store_true",
        help="drop rows with NaN/inf features instead of failing",
    )
    p.add_argument("--force", action="store_true", help="replace an existing report folder")
    p.add_argument("--no-progress", action="store_true")


def _label(path: Path, schema_metadata) -> str:
    meta = {k.decode(): v.decode() for k, v in (schema_metadata or {}).items()}
    model = meta.get("model")
    if model:
        try:  # metadata values may be JSON-encoded strings
            model = json.loads(model)
        except (ValueError, TypeError):
            pass
        rev = meta.get("revision")
        if rev:
            try:
                rev = json.loads(rev)
            except (ValueError, TypeError):
                pass
        label = str(model)
        if rev and str(rev) not in ("None", "null", "main") and "@" not in label:
            label = f"{label}@{rev}"
        return label
    return path.stem if path.is_file() else path.name


def load_features(path) -> tuple[str, object]:
    """(label, pyarrow.Table) of a parquet file or a folder of parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature table {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"no .parquet files in folder {path}")
        parts = [pq.read_table(f) for f in files]
        table = pa.concat_tables(parts, promote_options="default")
        return _label(path, parts[0].schema.metadata), table
    if path.suffix != ".parquet":
        raise ValueError(f"expected a folder or a .parquet file, got {path}")
    table = pq.read_table(path)
    return _label(path, table.schema.metadata), table


def run(args) -> int:
    from analysis import report

    if args.sweep:
        return _with_sweep(args)
    if not args.features:
        raise ValueError("give --features DIR [DIR ...], --sweep DIR, or both")
    tables = {}
    for p in args.features:
        label, table = load_features(p)
        base, k = label, 2
        while label in tables:  # same model twice: keep both, distinguishable
            label = f"{base} ({k})"
            k += 1
        tables[label] = table
    try:
        index = _build(report, tables, args)
    except ValueError as exc:
        # the library names its own option; the command's user needs the flag
        raise ValueError(str(exc).replace("pass nan_policy='drop'", "pass --drop-nonfinite")
                         ) from None
    print(index)
    return 0


def profile_of_args(args) -> str:
    """The profile the flags ask for; `--paper` with `--profile default` is a contradiction."""
    if args.paper and args.profile == "default":
        raise ValueError("--paper means --profile paper; it contradicts --profile default")
    return "paper" if args.paper else (args.profile or "default")


def _build(report, tables, args):
    extra = None
    if args.extra_memorized:
        extra = load_features(args.extra_memorized)[1]
    return report.build(
        tables,
        args.out,
        primary=args.primary,
        recitation_threshold=args.recitation_threshold,
        n_boot=args.n_boot,
        seed=args.seed,
        search=args.search,
        profile=profile_of_args(args),
        extra_memorized=extra,
        nan_policy="drop" if args.drop_nonfinite else "raise",
        force=args.force,
        progress=not args.no_progress,
    )


def _with_sweep(args) -> int:
    """The report of the feature tables (if any) with the dynamics section of the sweep; the
    primary feature table's categories give the taxonomy over time."""
    from analysis.dynamics_report import check_sweep_profile, report_sweep

    sweep, args.sweep = args.sweep, None
    check_sweep_profile(sweep, profile_of_args(args))  # before any report is written
    features = None
    if args.features:
        run(args)
        chosen = [t for p in args.features for label, t in [load_features(p)]
                  if args.primary in (None, label)]
        features = chosen[-1] if chosen else None
    print(report_sweep(sweep, args.out, features=features,
                       recitation_threshold=args.recitation_threshold, n_boot=args.n_boot,
                       seed=args.seed, force=args.force, profile=profile_of_args(args)))
    return 0
