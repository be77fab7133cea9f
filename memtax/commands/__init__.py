"""One module per `memtax` subcommand; each defines `register(subparsers)` and `run(args)`."""
