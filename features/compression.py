"""Compressibility of a decoded sample: the paper's "Huffman coding length" and a zlib ratio.

    huffman_code_length("aab")   # -> 1.333... bits per character
    zlib_ratio("aaaa...")        # -> compressed bytes / UTF-8 bytes, small for repetitive text

Both take one string. Empty text has no defined value: both return NaN.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter

__all__ = ["huffman_code_length", "zlib_ratio", "HUFFMAN_DEFINITION", "ZLIB_DEFINITION"]

HUFFMAN_DEFINITION = (
    "sum over distinct characters c of p(c) * ceil(-log2 p(c)), p(c) = count(c) / len(text) "
    "(a Shannon-code length in bits per character, the paper's 'Huffman coding length'); "
    "NaN for empty text"
)
ZLIB_DEFINITION = (
    "len(zlib.compress(utf8, level 9)) / len(utf8) of the decoded text; NaN for empty text"
)


def _code_bits(count: int, total: int) -> int:
    """ceil(-log2(count / total)) in exact integer arithmetic: the smallest k with
    count * 2**k >= total. Floating log2 can land a hair above an integer and add a bit."""
    return (-(-total // count) - 1).bit_length()


def huffman_code_length(text: str) -> float:
    """Expected code length, in bits per character, of a Shannon code for the text's own
    character distribution (the paper's "Huffman coding length").

    Sum over distinct characters c of p(c) * ceil(-log2 p(c)) with p(c) = count(c) / len(text).
    A text of one repeated character has length 0.0; empty text gives NaN.
    """
    if not isinstance(text, str):
        raise ValueError(f"huffman_code_length expects a str, got {type(text).__name__}")
    n = len(text)
    if n == 0:
        return math.nan
    # Integer numerator first, one division at the end: exact up to the final rounding.
    # _code_bits inlined: this runs once per sample on millions of samples.
    return sum(c * (-(-n // c) - 1).bit_length() for c in Counter(text).values()) / n


def zlib_ratio(text: str) -> float:
    """Compressed size over raw size of the UTF-8 text (zlib level 9); NaN for empty text.
    Lower means more compressible; short texts can exceed 1 (zlib's header and trailer)."""
    if not isinstance(text, str):
        raise ValueError(f"zlib_ratio expects a str, got {type(text).__name__}")
    raw = text.encode("utf-8", errors="surrogatepass")
    if not raw:
        return math.nan
    return len(zlib.compress(raw, 9)) / len(raw)
