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
    stop   = fraction of words that are common English function words (keywords excluded)

    code_score = sigmoid(-2.5 + 14*sym + 9*kw + 5*ident + 1.5*indent - 9*stop)

Weights were set by hand on hand-labelled prose and code snippets (`LABELLED` in
tests/test_features_text.py is a labelled set the score must separate). Text with no non-space
characters scores the bias alone (about 0.08).

Profiles. "default": `code_score` is the score above and code/natural language is cut at 0.5
where a split is needed (`analysis.dependencies`). "paper": the paper split with an uncertain band
between its two thresholds (semantic-memorization `model_parameters.py`:
NATURAL_LANGUAGE_SCORE_THRESHOLDS = [0.525, 0.4] on its classifier's natural-language
probability `nl_scores`; `model_training.py` keeps nl_scores >= 0.525 as natural language and
nl_scores <= 0.4 as code, and leaves the rows between out of both). memtax reads
nl_score = 1 - code_score and carries the band in the column itself: `code_score` is NaN for a
text in the band, so any split at a cut inside it (0.5 included) gives the paper's two subsets
and the band falls out of both (`code_score >= t` and `code_score < t` are both False for NaN).
The paper's classifier (a fine-tuned model, `usvsnsp/code-vs-nl`) is not shipped; the heuristic
score stands in for its probability.
"""

from __future__ import annotations

import math
import re

__all__ = ["code_score", "code_components", "paper_band", "DEFINITION", "PAPER_DEFINITION",
           "WEIGHTS", "PAPER_NL_THRESHOLDS"]

WEIGHTS = {"bias": -2.5, "sym": 14.0, "kw": 9.0, "ident": 5.0, "indent": 1.5, "stop": -9.0}
DEFINITION = (
    "sigmoid(-2.5 + 14*sym + 9*kw + 5*ident + 1.5*indent - 9*stop) over code-punctuation share, "
    "keyword share, identifier share, indented-line share and English function-word share"
)

# (natural language at or above, code at or below), on the natural-language score 1 - code_score
PAPER_NL_THRESHOLDS = (0.525, 0.4)
PAPER_DEFINITION = (
    DEFINITION + "; NaN in the paper's uncertain band 0.4 < 1 - code_score < 0.525 (natural "
    "language at 1 - code_score >= 0.525, code at <= 0.4)"
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
# Stopwords that are also keywords ("this", "then", ...) count as keywords only.
_STOPWORDS = _STOPWORDS - _KEYWORDS
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_WORD = re.compile(_NAME)
_CALL = re.compile(f"({_NAME})\\s*\\(")
_IDENT = re.compile(r"[a-z0-9]_[a-z0-9]|[a-z][A-Z]|\.")


def code_components(text: str) -> dict[str, float]:
    """The five statistics of the module docstring, each in [0, 1]."""
    if not isinstance(text, str):
        raise ValueError(f"code_score expects a str, got {type(text).__name__}")
    # str.count / str.split / re.findall run in C; per-character Python loops cost 3x more.
    n_non_space = len("".join(text.split()))
    sym = sum(text.count(c) for c in _SYMBOLS) / n_non_space if n_non_space else 0.0
    lines = [ln for ln in text.split("\n")[1:] if ln.strip()]
    indent = sum(ln.startswith(("  ", "\t")) for ln in lines) / len(lines) if lines else 0.0
    words = _WORD.findall(text)
    if not words:
        return {"sym": sym, "kw": 0.0, "ident": 0.0, "indent": indent, "stop": 0.0}
    kw = sum(map(_KEYWORDS.__contains__, words))
    stop = sum(map(_STOPWORDS.__contains__, map(str.lower, words)))
    # identifiers: non-keyword words that look like one, plus called names that do not
    search = _IDENT.search
    ident = sum(1 for w in words if w not in _KEYWORDS and search(w))
    ident += sum(1 for w in _CALL.findall(text) if w not in _KEYWORDS and not search(w))
    n = len(words)
    return {"sym": sym, "kw": kw / n, "ident": ident / n, "indent": indent, "stop": stop / n}


def code_score(text: str) -> float:
    """Heuristic probability in [0, 1] that `text` is source code (see the module docstring)."""
    c = code_components(text)
    z = WEIGHTS["bias"] + sum(WEIGHTS[k] * v for k, v in c.items())
    return 1.0 / (1.0 + math.exp(-z))


def paper_band(score: float) -> float:
    """The paper profile's `code_score`: `score` where the paper's thresholds decide (natural
    language: 1 - score >= 0.525; code: 1 - score <= 0.4), NaN in the uncertain band between."""
    nl_score = 1.0 - score
    nl_at_least, code_at_most = PAPER_NL_THRESHOLDS
    return score if (nl_score >= nl_at_least or nl_score <= code_at_most) else math.nan
