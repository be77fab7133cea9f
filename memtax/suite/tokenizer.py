"""The suite's tokenizer: a byte-level BPE (GPT-2/Pythia style) trained on the corpus with the
`tokenizers` library, saved as a standard Hugging Face tokenizer folder. The end-of-text token
is id 0, as in Pythia."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EOT", "train_tokenizer", "load_tokenizer", "TOKENIZER_FILES"]

EOT = "<|endoftext|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_tokenizer(docs: Sequence[str], vocab_size: int, out: str | os.PathLike, *,
                    progress: bool = True) -> Path:
    """Train a byte-level BPE of `vocab_size` tokens (256 bytes + EOT + merges) on `docs` and
    save it as a Hugging Face tokenizer folder `out` (written beside it, then renamed)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 257:
        raise ValueError(f"vocab_size must be >= 257 (256 bytes + end-of-text), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(docs, trainer, length=len(docs))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT
    )
    out = Path(out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fast.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_tokenizer(folder: str | os.PathLike):
    """The saved tokenizer, through `transformers.AutoTokenizer` (what users call)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))
