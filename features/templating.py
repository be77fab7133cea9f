"""Templated text: incrementing and repeating sequences (the paper's "reconstruction").

    is_incrementing("Chapter 1 Chapter 2 Chapter 3 Chapter 4")   # True
    is_repeating("ab ab ab ab")                                   # True
    is_templating(text)                                           # either of the two
    classify(text)                                                # (is_incrementing, is_repeating)

Definitions (memtax's, which follow EleutherAI/semantic-memorization `filters/pattern.py`;
docs/notes/features.md):

Incrementing. Collapse whitespace runs to one space, then cut the text into items: integer
literals (`0x`-hex such as `0x1F`, and decimal digit runs) become ints, maximal runs of letters
(and `_`) become strings; other characters (spaces, punctuation) only separate items. With more
than four items the first and last are dropped (the 64-token window may cut them). Then find the
smallest period L <= len/2 such that for every phase r < L the items r, r+L, r+2L, ... have one
type, the strings among them are equal and the integers among them step by a constant (each
phase its own constant). The text is incrementing when such an L exists, some phase's constant is
not zero and some phase's step was seen at least twice (three integers in that phase). Lists of
fewer than three items are never incrementing.

Repeating. Collapse whitespace, drop the first and last character when there are more than four,
and test whether the characters have a period L <= len/2 (so a unit occurs at least twice). The
smallest period of a string s is len(s) - pi[-1] (pi = the KMP prefix function), and s has a
period <= len/2 exactly when its smallest one is, so the test is linear in len(s). Incrementing
wins when both hold (`classify` returns repeating=False then).

Where we differ from the paper's code, on purpose: punctuation separates items instead of being
items (so "0x10, 0x11, ..." reads as 16, 17, ...); the three-item case uses the same rule as
longer lists (the paper's special case has a sign slip: it accepts any three integers with
c - 2b + a < 1e-5, so "10 7 1" is incrementing); and the repeating test runs on the
whitespace-collapsed text with its first and last character dropped (the paper's runs on the raw
characters, so 64 newlines are repeating). Decimals are parsed by neither: "1.5" is the items 1
and 5 here and in the paper's `split_text` (which only calls int()).

The paper profile (`profile="paper"`, `paper_classify`) reproduces the paper's code instead
(semantic-memorization `filters/pattern.py`: `split_text`, `find_if_incrementing_or_repeating`,
`is_pattern`), quirks included:
- items: whitespace runs collapse to one space; each space-separated word that Python's
  int(word, 0) parses (decimal, 0x/0o/0b literals, a sign) is replaced by its decimal value; the
  rebuilt text is passed through repr(), and each word of that loses the escapes "\\n", "\\x",
  backslashes and quotes, then is cut at ASCII digit runs; digit runs (and any piece int()
  parses) become ints, every other non-blank piece (punctuation included) a string;
- incrementing: exactly three items that are all ints pass when c - 2b + a < 1e-5 with step
  c - b (signed: "10 7 1" passes with step -6); fewer than three never; more than four drop the
  first and last; then periods are tried from the smallest: a period whose phases are
  consistent decides when no step has been seen (not incrementing) or when a step was confirmed
  in it (incrementing); a consistent period with an unconfirmed step does not decide. The step
  is remembered from any earlier period, even one that failed (the paper's `diff` is not reset
  between periods); incrementing needs it nonzero;
- repeating (only when not incrementing): the raw characters, nothing dropped or collapsed, have
  a period <= len/2.
"""

from __future__ import annotations

import re

from engine.profiles import check_profile

__all__ = [
    "split_items",
    "smallest_period",
    "is_incrementing",
    "is_repeating",
    "is_templating",
    "classify",
    "paper_split_items",
    "paper_classify",
    "INCREMENTING_DEFINITION",
    "REPEATING_DEFINITION",
    "PAPER_INCREMENTING_DEFINITION",
    "PAPER_REPEATING_DEFINITION",
]

INCREMENTING_DEFINITION = (
    "items = ints (0x-hex, decimal digit runs) and letter runs of the whitespace-collapsed text, "
    "first/last dropped when > 4; smallest period L <= len/2 where every phase has one type, equal "
    "strings and a constant integer step; incrementing when some step != 0 and some phase's step "
    "was seen twice"
)
REPEATING_DEFINITION = (
    "whitespace-collapsed characters, first/last dropped when > 4, have a period <= len/2 "
    "(smallest period from the KMP prefix function); False when incrementing"
)

PAPER_INCREMENTING_DEFINITION = (
    "the paper's filters/pattern.py is_pattern: items of split_text (int(word, 0) values, repr() "
    "escapes removed, cut at ASCII digit runs, punctuation kept as items); three all-int items "
    "pass when c - 2b + a < 1e-5 (signed); else first/last dropped when > 4 and the smallest "
    "consistent period with a confirmed nonzero step (step kept across periods)"
)
PAPER_REPEATING_DEFINITION = (
    "the paper's filters/pattern.py is_pattern: the raw characters (no whitespace collapse, "
    "nothing dropped) have a period <= len/2; False when incrementing"
)

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")  # one simple class: several times faster than an alternation
_DIGIT = re.compile(r"\d")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_PIECE = re.compile(r"0[xX][0-9a-fA-F]+|\d+|\D+")


def split_items(text: str) -> list[int | str]:
    """Items of `text` in order: ints for 0x-hex literals and decimal digit runs, strings for
    runs of letters and underscores. Whitespace and punctuation only separate items."""
    items: list[int | str] = []
    append = items.append
    for w in _WORD.findall(text):
        if w.isalpha():
            append(w)
        elif w.isdecimal():
            append(int(w))
        elif not _DIGIT.search(w):
            append(w)
        else:  # mixed word: cut into hex literals, digit runs and letter runs
            for piece in _PIECE.findall(w):
                if _HEX.fullmatch(piece):
                    append(int(piece, 16))
                elif piece.isdecimal():
                    append(int(piece))
                else:
                    append(piece)
    return items


def _phases_consistent(items: list, period: int) -> tuple[bool, bool, bool]:
    """For one period L: (consistent, some nonzero step, some step seen twice)."""
    nonzero = confirmed = False
    n = len(items)
    for r in range(period):
        first = items[r]
        is_int = isinstance(first, int)
        step = None
        seen = 0
        prev = first
        for i in range(r + period, n, period):
            cur = items[i]
            if isinstance(cur, int) != is_int:
                return False, False, False
            if is_int:
                d = cur - prev
                if step is None:
                    step = d
                elif d != step:
                    return False, False, False
                seen += 1
            elif cur != first:
                return False, False, False
            prev = cur
        if step:
            nonzero = True
        if seen >= 2:
            confirmed = True
    return True, nonzero, confirmed


def _items_incrementing(items: list) -> bool:
    if len(items) < 3:
        return False
    if len(items) > 4:
        items = items[1:-1]
    # A confirmed step needs three integers in one phase: most prose exits here.
    if sum(isinstance(x, int) for x in items) < 3:
        return False
    for period in range(1, len(items) // 2 + 1):
        ok, nonzero, confirmed = _phases_consistent(items, period)
        if ok:
            # The smallest consistent period decides (see the module docstring).
            return nonzero and confirmed
    return False


def is_incrementing(text: str, profile: str = "default") -> bool:
    """True when the text's items repeat with a period whose integers step by constants, at
    least one nonzero and one confirmed (see the module docstring); `profile="paper"`: the
    paper's test."""
    if not isinstance(text, str):
        raise ValueError(f"is_incrementing expects a str, got {type(text).__name__}")
    if check_profile(profile) == "paper":
        return _paper_incrementing(paper_split_items(text))
    return _items_incrementing(split_items(_WS.sub(" ", text)))


def smallest_period(s) -> int:
    """Smallest p >= 1 with s[i] == s[i - p] for all i >= p (len(s) for an aperiodic s, 0 for
    an empty one), from the KMP prefix function in O(len(s))."""
    n = len(s)
    if n == 0:
        return 0
    pi = [0] * n
    k = 0
    for i in range(1, n):
        c = s[i]
        while k and s[k] != c:
            k = pi[k - 1]
        if s[k] == c:
            k += 1
        pi[i] = k
    return n - pi[-1]


def _chars_repeating(s: str) -> bool:
    if len(s) > 4:
        s = s[1:-1]
    n = len(s)
    if n < 2:
        return False
    # Cheap exit for most prose: a period <= n/2 means s[p:] == s[:-p], in particular the
    # last character reappears within the first half.
    if s[-1] not in s[: n // 2 + 1]:
        return False
    return 2 * smallest_period(s) <= n


def is_repeating(text: str, profile: str = "default") -> bool:
    """True when the whitespace-collapsed characters (first and last dropped) consist of a unit
    repeated at least twice (a trailing partial copy allowed) and the text is not incrementing;
    `profile="paper"`: the paper's test on the raw characters."""
    if not isinstance(text, str):
        raise ValueError(f"is_repeating expects a str, got {type(text).__name__}")
    if check_profile(profile) == "paper":
        return paper_classify(text)[1]
    collapsed = _WS.sub(" ", text)
    if not _chars_repeating(collapsed):
        return False
    return not _items_incrementing(split_items(collapsed))


def classify(text: str, profile: str = "default") -> tuple[bool, bool]:
    """(is_incrementing, is_repeating) with one pass over the text; incrementing wins.
    `profile="paper"`: `paper_classify`."""
    if not isinstance(text, str):
        raise ValueError(f"classify expects a str, got {type(text).__name__}")
    if check_profile(profile) == "paper":
        return paper_classify(text)
    collapsed = _WS.sub(" ", text)
    inc = _items_incrementing(split_items(collapsed))
    return inc, (not inc) and _chars_repeating(collapsed)


def is_templating(text: str, profile: str = "default") -> bool:
    """Incrementing or repeating."""
    inc, rep = classify(text, profile)
    return inc or rep


# ---------------------------------------------------------------- the paper profile
# semantic-memorization filters/pattern.py, reproduced step by step (quirks included).

_PAPER_DIGITS = re.compile("([0-9]+)")
_REPR_ESCAPES = ("\\n", "\\x", "\\", "'", '"')  # removed from each word, in this order


def _paper_int(word: str) -> int | None:
    """int(word) or None where Python refuses it."""
    try:
        return int(word)
    except ValueError:
        return None


def _paper_literal(word: str) -> str:
    """str(int(word, 0)) (0x/0o/0b literals, signs, digit separators), else the word itself:
    the paper's try block, str() inside it."""
    try:
        return str(int(word, 0))
    except ValueError:
        return word


def paper_split_items(text: str) -> list[int | str]:
    """The paper's `split_text(text)` items: ints and strings (see the module docstring)."""
    words = [_paper_literal(word) for word in _WS.sub(" ", text).split(" ")]
    pieces: list[str] = []
    for word in repr(" ".join(words).strip()).split(" "):
        for escape in _REPR_ESCAPES:
            word = word.replace(escape, "")
        pieces.extend(_PAPER_DIGITS.split(word))
    items: list[int | str] = []
    for piece in pieces:
        piece = piece.strip("'")
        if piece.strip(" ") == "":
            continue
        value = _paper_int(piece)
        items.append(piece if value is None else value)
    return items


def _paper_three(items: list) -> bool:
    """The paper's three-item case: all ints and c - 2b + a < 1e-5 (signed), step c - b != 0."""
    if not all(type(x) is int for x in items):
        return False
    a, b, c = items
    return (c - 2 * b + a) < 1e-5 and c - b != 0


def _paper_phase(items: list, phase: int, period: int) -> tuple[bool, int | None, bool]:
    """One phase of one period: (consistent, its first step or None, a later step matched it)."""
    step, confirmed = None, False
    for i in range(phase + period, len(items), period):
        cur, prev = items[i], items[i - period]
        if type(cur) is not type(prev):
            return False, step, confirmed
        if isinstance(cur, int):
            if step is None:
                step = cur - prev
            elif abs(cur - prev - step) < 1e-10:
                confirmed = True
            else:
                return False, step, confirmed
        elif cur != prev:
            return False, step, confirmed
    return True, step, confirmed


def _paper_incrementing(items: list) -> bool:
    """The paper's `find_if_incrementing_or_repeating(items)` followed by `is_pattern`'s
    `diff is not None and diff != 0`."""
    if len(items) < 3:
        return False
    if len(items) == 3:
        return _paper_three(items)
    if len(items) > 4:
        items = items[1:-1]
    step = None  # the paper's `diff`: kept from one period to the next
    for period in range(1, len(items) // 2 + 1):
        consistent, confirmed = True, False
        for phase in range(period):
            ok, phase_step, phase_confirmed = _paper_phase(items, phase, period)
            confirmed |= phase_confirmed
            if not ok:
                consistent = False
                break
            if step is None and phase_step:
                step = phase_step
        if consistent and (step is None or confirmed):
            return step is not None  # a period with no step is the paper's (True, None)
    return False


def paper_classify(text: str) -> tuple[bool, bool]:
    """(is_incrementing, is_repeating) as the paper's `is_pattern(text)`: incrementing on the
    paper's items, else repeating on the raw characters."""
    if not isinstance(text, str):
        raise ValueError(f"paper_classify expects a str, got {type(text).__name__}")
    if _paper_incrementing(paper_split_items(text)):
        return True, False
    return False, len(text) >= 2 and 2 * smallest_period(text) <= len(text)
