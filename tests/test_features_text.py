"""Text features: Huffman length, zlib ratio, templating, code score, against independent oracles."""

import math
import re
import zlib
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.code_score import code_score
from features.compression import huffman_code_length, zlib_ratio
from features.templating import (
    classify,
    is_incrementing,
    is_repeating,
    is_templating,
    smallest_period,
    split_items,
)

# ---------------------------------------------------------------- compression


@pytest.mark.parametrize(
    "text, expected",
    [
        # p(a)=2/3 -> ceil(0.585)=1 bit; p(b)=1/3 -> ceil(1.585)=2 bits: 2/3*1 + 1/3*2 = 4/3
        ("aab", 4 / 3),
        # four equiprobable characters: exactly 2 bits each (the exact power-of-two case)
        ("abcd", 2.0),
        # one character: p = 1 -> 0 bits
        ("zzzzzz", 0.0),
        # p(a)=1/2 -> 1, p(b)=p(c)=1/4 -> 2: 1/2 + 2/4 + 2/4 = 1.5
        ("aabc", 1.5),
        # five distinct: p = 1/5 -> ceil(2.32) = 3 bits
        ("vwxyz", 3.0),
    ],
)
def test_huffman_hand_computed(text, expected):
    assert huffman_code_length(text) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_huffman_matches_exact_rational_oracle(text):
    # Oracle: exact rationals; code length k = smallest k with 2**k >= 1/p, found by doubling.
    n = len(text)
    total = Fraction(0)
    for c in Counter(text).values():
        p = Fraction(c, n)
        k = 0
        while Fraction(2**k) < 1 / p:
            k += 1
        total += p * k
    assert huffman_code_length(text) == pytest.approx(float(total), rel=1e-12, abs=1e-12)


def test_empty_text_is_nan_and_bad_type_raises():
    assert math.isnan(huffman_code_length(""))
    assert math.isnan(zlib_ratio(""))
    with pytest.raises(ValueError, match="str"):
        huffman_code_length(b"bytes")
    with pytest.raises(ValueError, match="str"):
        zlib_ratio(None)


def test_zlib_ratio_is_compressed_over_raw_bytes():
    text = "héllo wörld " * 20
    raw = text.encode("utf-8")
    assert zlib_ratio(text) == len(zlib.compress(raw, 9)) / len(raw)
    assert zlib_ratio("ab" * 200) < zlib_ratio("the quick brown fox jumps over a lazy dog")


def test_replacement_character_text_is_handled():
    # Non-UTF-8 decodes arrive as U+FFFD; both measures treat it as an ordinary character.
    text = "abc\ufffd\ufffd"
    assert huffman_code_length(text) == pytest.approx((3 * 3 + 2 * 2) / 5)
    assert zlib_ratio(text) > 0


# ---------------------------------------------------------------- templating


@pytest.mark.parametrize(
    "text",
    [
        "Chapter 1 Chapter 2 Chapter 3 Chapter 4",
        "0x10, 0x11, 0x12, 0x13",
        "1. 2. 3. 4. 5.",
        "Item 2, Item 4, Item 6, Item 8, Item 10",
    ],
)
def test_incrementing_cases(text):
    assert is_incrementing(text)
    assert not is_repeating(text)  # incrementing wins
    assert is_templating(text)
    assert classify(text) == (True, False)


def test_incrementing_edge_cases():
    # three items: all ints in arithmetic progression; a constant list is not incrementing
    assert is_incrementing("3 5 7")
    assert not is_incrementing("3 5 8")
    assert not is_incrementing("7 7 7")
    # two items can never show a step twice
    assert not is_incrementing("1 2")
    # a phase with only two integers has one step: not confirmed
    assert not is_incrementing("a 1 b 2")
    # descending steps count (nonzero constant)
    assert is_incrementing("10 9 8 7 6 5")
    # whitespace (newlines, tabs) collapses
    assert is_incrementing("line 1\nline 2\n\tline 3\nline 4\nline 5")
    # hex literal parsed as a number, not "0", "x", ...
    assert split_items("0x1F and 12") == [31, "and", 12]


def test_repeating_cases():
    assert is_repeating("ab ab ab ab")
    assert classify("ab ab ab ab") == (False, True)
    assert is_repeating("=" * 40)
    assert is_repeating("<tr><td></td></tr>\n<tr><td></td></tr>\n<tr><td></td></tr>")
    assert not is_repeating("abcdefgh")
    assert not is_repeating("ab")  # too short once the first and last are dropped


PROSE = (
    "The committee met on Tuesday to discuss the budget for the next year. Members raised "
    "concerns about the rising cost of housing and asked for a detailed report by March."
)
CODE = (
    "def forward(self, x):\n    h = self.embed(x)\n    for layer in self.layers:\n"
    "        h = layer(h)\n    return self.head(h)\n"
)


@pytest.mark.parametrize("text", [PROSE, CODE, "In 1995 the firm moved; by 2003 it had 40 staff."])
def test_prose_and_code_are_not_templating(text):
    assert classify(text) == (False, False)
    assert not is_templating(text)


def brute_force_has_period(s: str) -> bool:
    n = len(s)
    return any(all(s[i] == s[i - p] for i in range(p, n)) for p in range(1, n // 2 + 1))


def brute_force_smallest_period(s: str) -> int:
    n = len(s)
    for p in range(1, n + 1):
        if all(s[i] == s[i - p] for i in range(p, n)):
            return p
    return 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab ", max_size=40))
def test_smallest_period_and_repeating_match_brute_force(s):
    assert smallest_period(s) == brute_force_smallest_period(s)
    inner = re.sub(r"\s+", " ", s)
    if len(inner) > 4:
        inner = inner[1:-1]
    expected = len(inner) >= 2 and brute_force_has_period(inner)
    if not is_incrementing(s):  # letters only: never incrementing
        assert is_repeating(s) == expected


def brute_force_incrementing(items) -> bool:
    """Oracle written from the definition's words (features.templating's docstring),
    independently of the module's loop structure."""
    if len(items) < 3:
        return False
    if len(items) > 4:
        items = items[1:-1]
    n = len(items)
    for L in range(1, n // 2 + 1):
        phases = [items[r::L] for r in range(L)]
        ok, steps, counts = True, [], []
        for ph in phases:
            kinds = {type(x) for x in ph}
            if len(kinds) > 1:
                ok = False
                break
            if isinstance(ph[0], str):
                ok = len(set(ph)) == 1
                if not ok:
                    break
                continue
            diffs = [b - a for a, b in zip(ph, ph[1:])]
            if len(set(diffs)) > 1:
                ok = False
                break
            if diffs:
                steps.append(diffs[0])
                counts.append(len(diffs))
        if ok:
            return any(s != 0 for s in steps) and any(c >= 2 for c in counts)
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 4), st.sampled_from(["a", "b"])), max_size=14))
def test_incrementing_matches_brute_force(items):
    text = " ".join(str(x) for x in items)
    assert split_items(text) == items
    assert is_incrementing(text) == brute_force_incrementing(items)


# ---------------------------------------------------------------- code score

LABELLED = [
    (PROSE, 0),
    ("She walked slowly along the river, thinking about what her father had said.", 0),
    ("In 1995, the company was acquired by a larger firm, which moved its offices.", 0),
    ('THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED', 0),
    (CODE, 1),
    ("for (int i = 0; i < n; i++) {\n    x[i] = a[i] * b[i];\n}\nreturn 0;", 1),
    ("const app = express();\napp.get('/', (req, res) => {\n  res.send('Hi');\n});", 1),
    ('public static void main(String[] args) {\n    System.out.println("hello");', 1),
    ('<div class="row">\n  <span id="title">Hello</span>\n</div>', 1),
]


def test_code_score_separates_labelled_snippets():
    for text, label in LABELLED:
        s = code_score(text)
        assert 0.0 <= s <= 1.0
        assert (s > 0.5) == bool(label), (text, s)


def test_code_score_of_blank_text_is_the_bias():
    assert code_score("   \n ") == pytest.approx(1 / (1 + math.exp(2.5)))
