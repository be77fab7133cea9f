"""The `memtax` command: dispatches to one module per subcommand under memtax/commands/.

Each subcommand module defines `register(subparsers)` (adds its parser) and `run(args) -> int`.
Modules are imported lazily-by-name so that a broken or heavy subcommand never slows the others.
Errors a user can fix (bad values, missing files) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from memtax import __version__

SUBCOMMANDS = ["score", "sweep", "index", "features", "analyze", "bench", "suite", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memtax",
        description="Measure and explain what a causal language model memorized.",
    )
    parser.add_argument("--version", action="version", version=f"memtax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"memtax.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"memtax.commands.{name}":
                raise
            continue  # subcommand not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Numba's default "omp" threading layer (GNU OpenMP) leaves its threads in a state that makes
    # torch's bfloat16 CPU attention ~25x slower for the rest of the process (measured: MiniLM
    # bf16 92 -> 3.8 texts/s after one index build + count; fp32 unaffected), and `memtax
    # features` and `memtax demo` run both in one process. The "workqueue" layer builds and
    # counts as fast (within noise at 1e8 tokens). It is process-wide, so the command chooses it
    # here, at its entry; a user's explicit NUMBA_THREADING_LAYER wins. Numba reads the variable
    # when imported (and when it compiles), so an already imported Numba re-reads it.
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    if "numba" in sys.modules:
        sys.modules["numba"].config.reload_config()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(f"memtax.commands.{args.command}")
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError, KeyError) as exc:
        # OSError: FileNotFoundError, FileExistsError, PermissionError, a full disk: the
        # user's to fix, so one line naming the file rather than a traceback
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"memtax {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"memtax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
