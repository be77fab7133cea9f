"""Code vs natural language: a documented heuristic score in [0, 1] (1 = looks like code).

    code_score("for (int i = 0; i < n; i++) { x[i] = 0; }")   # close to 1
    code_score("The cat sat on the mat and looked outside.")   # close to 0

The paper splits its analyses into code and non-code samples (it used a trained classifier).
We use a transparent logistic score over five text statistics, each in [0, 1]:

    sym    = fraction of non-space characters that are code punctuation  {}[]();=<>+*/\\|&!#$%^~:
    kw     = fraction of words that are programming keywords (a fixed cross-language list)
    ident  = fraction of words that look like identifiers (snake_case, camelCase, dotted a.b,
             or followed by "(")
    indent = fraction of non-empty lines after the first that start with 2+ spaces or a tab
    stop   = fraction of words that are common English function words

    code_score = sigmoid(-2.5 + 14*sym + 9*kw + 5*ident + 1.5*indent - 9*stop)

Weights were set by hand on hand-labelled prose and code snippets (tests/test_features_code.py
holds a labelled set the score must separate). Text with no non-space characters scores the
bias alone (about 0.08).
"""

from __future__ import annotations

import math
import re

__all__ = ["code_score", "code_components", "DEFINITION", "WEIGHTS"]

WEIGHTS = {"bias": -2.5, "sym": 14.0, "kw": 9.0, "ident": 5.0, "indent": 1.5, "stop": -9.0}
DEFINITION = (
    "sigmoid(-2.5 + 14*sym + 9*kw + 5*ident + 1.5*indent - 9*stop) over code-punctuation share, "
    "keyword share, identifier share, indented-line share and English function-word share"
)

_SYMBOLS = frozenset("{}[]();=<>+*/\\|&!#$%^~:")
_KEYWORDS = frozenset(
    """
    def class return import from include if elif else for while switch case break continue
    try catch except finally throw raise new delete void int float double char bool boolean
    long short unsigned const static public private protected var let function fn func lambda
    null nil None True False true false self this struct enum typedef namespace using package
    interface extends implements async await yield pass print printf println echo end begin
    elseif then do goto sizeof template typename auto override virtual final string std
    """.split()
)
_STOPWORDS = frozenset(
    """
    the a an and or but of to in on at by with from that this these those is are was were be
    been being have has had it its as he she they we you i his her their our your which who
    whom what when where there not no so than then also about into over after before such
    """.split()
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\s*\()?")
_IDENT = re.compile(r"[a-z0-9]_[a-z0-9]|[a-z][A-Z]|\.")


def code_components(text: str) -> dict[str, float]:
    """The five statistics of the module docstring, each in [0, 1]."""
    if not isinstance(text, str):
        raise ValueError(f"code_score expects a str, got {type(text).__name__}")
    # str.count and str.split run in C; a Python loop over characters costs 3x more.
    n_non_space = len("".join(text.split()))
    sym = sum(text.count(c) for c in _SYMBOLS) / n_non_space if n_non_space else 0.0
    kw = ident = stop = 0
    words = 0
    for m in _WORD.finditer(text):
        w = m.group(0)
        call = m.group(1) is not None
        if call:
            w = w[: w.index("(")].rstrip()
        words += 1
        low = w.lower()
        if w in _KEYWORDS:
            kw += 1
        elif call or _IDENT.search(w):
            ident += 1
        if low in _STOPWORDS and w not in _KEYWORDS:
            stop += 1
    lines = [ln for ln in text.split("\n")[1:] if ln.strip()]
    indent = sum(ln.startswith(("  ", "\t")) for ln in lines) / len(lines) if lines else 0.0
    if words == 0:
        return {"sym": sym, "kw": 0.0, "ident": 0.0, "indent": indent, "stop": 0.0}
    return {"sym": sym, "kw": kw / words, "ident": ident / words, "indent": indent,
            "stop": stop / words}


def code_score(text: str) -> float:
    """Heuristic probability in [0, 1] that `text` is source code (see the module docstring)."""
    c = code_components(text)
    z = WEIGHTS["bias"] + sum(WEIGHTS[k] * v for k, v in c.items())
    return 1.0 / (1.0 + math.exp(-z))
