"""Corpus index: exact n-gram counts over a token corpus from Numba-built suffix arrays.

`CorpusIndex` (corpus_index.py) is the public face; suffix_array.py builds, query.py counts,
lcp.py gives per-position counts, format.py reads and writes the on-disk folders, shards.py
builds shards in process pools or on Ray, corpus.py normalizes inputs.
"""

from features.index.corpus_index import CorpusIndex, tokenizer_fingerprint

__all__ = ["CorpusIndex", "tokenizer_fingerprint"]
