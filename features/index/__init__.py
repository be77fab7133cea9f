"""Corpus index: exact n-gram counts over a token corpus from Numba-built suffix arrays.

`CorpusIndex` (corpus_index.py) is the public face; suffix_array.py builds, query.py counts,
lcp.py gives per-position counts, format.py reads and writes the on-disk folders, shards.py
builds shards in process pools or on Ray, corpus.py normalizes inputs.
"""

import os

import numba

# Numba's default "omp" threading layer (GNU OpenMP) leaves its threads in a state that makes
# torch's bfloat16 CPU attention ~25x slower for the rest of the process (measured: MiniLM bf16
# 92 -> 3.8 texts/s after one index build + count; fp32 unaffected), and features.compute runs
# both in one process. The "workqueue" layer builds and counts as fast here (measured within
# noise at 1e8 tokens). A user's explicit NUMBA_THREADING_LAYER wins; the layer is chosen at
# the first parallel call, so setting the config now is early enough.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from features.index.corpus_index import CorpusIndex, tokenizer_fingerprint  # noqa: E402

__all__ = ["CorpusIndex", "tokenizer_fingerprint"]
