"""memtax: the front door. The `memtax` command composes engine, features and analysis."""

__version__ = "0.1.0"
