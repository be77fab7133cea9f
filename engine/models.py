"""Model loading and the `ScoringModel` adapter: backbone hidden states + the output head's parts.

Scoring never asks a model for logits. It runs the backbone (everything up to and including the
final norm) to get hidden states, then reduces the head `hidden @ W.T (+ b)` chunk by chunk in
`kernels.fused_head`. `ScoringModel` hides the per-architecture differences behind that split:

    sm = load_model("EleutherAI/pythia-160m-deduped@step143000")   # or a folder, a .gguf, a model
    out = sm.backbone(input_ids)               # BackboneOutput(hidden (B, T, d), past_key_values)
    argmax, lse, tgt_logprob = sm.head(out.hidden.reshape(-1, d), targets.reshape(-1),
                                       masked_token=sm.eos_token_id)

Greedy decoding with a KV cache (what `mode="generate"` builds on) uses the same two calls:

    out = sm.backbone(prompt_ids, use_cache=True)             # prefill, prompt_ids (B, P)
    tok, _, _ = sm.head(out.hidden[:, -1], dummy_targets, masked_token=sm.eos_token_id)
    for step in range(cont_len - 1):
        out = sm.backbone(tok[:, None], past_key_values=out.past_key_values, use_cache=True)
        tok, _, _ = sm.head(out.hidden[:, -1], dummy_targets, masked_token=sm.eos_token_id)

Rows of one batch all have the same length (no padding), so no attention mask is needed and the
model derives positions from the cache length itself (`position_ids` / `cache_position` may
still be passed through for other uses). `head(...)` with `masked_token=None` is the model's own
argmax; `sm.eos_token_id` is what Pythia's `min_length` forbade.

Supported: any `AutoModelForCausalLM` whose `base_model` returns the final hidden states (after
the final norm) and whose `get_output_embeddings()` is a linear head: GPT-NeoX (Pythia), Llama,
Mistral, OLMo, GPT-2, OPT, Qwen, Gemma (soft-capping), Cohere (`logit_scale`), Granite
(`logits_scaling`) and similar. Tied input/output embeddings are shared tensors in HF, so the
head weight is simply `get_output_embeddings().weight`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch

from engine.device import DTYPES, auto_dtype, dtype_name
from engine.model_specs import is_hub_id, local_revision_folder, parse_model_spec
from engine.profiles import check_profile
from engine.tokenizers import load_tokenizer

__all__ = [
    "ScoringModel",
    "BackboneOutput",
    "load_model",
    "load_tokenizer",
    "parse_model_spec",
    "resolve_device",
    "resolve_dtype",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else cpu; anything else -> torch.device(device)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None,
                  current: torch.dtype | None = None, *, config=None,
                  profile: str = "default") -> torch.dtype:
    """'fp32'/'fp16'/'bf16' (or torch dtypes) as asked, in every profile; 'auto' ->
    `engine.device.auto_dtype(config, device, profile, current)`: on CPU the dtype `current`
    of an already-loaded model when it is fp32/fp16/bf16, else fp32; on CUDA fp16 in the paper
    profile, else a loaded model's own 16-bit dtype, the 16-bit dtype the checkpoint's `config`
    declares (fp16 for Pythia), or bf16."""
    check_profile(profile)
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be a floating dtype fp32/fp16/bf16, got {dtype}")
        return dtype
    if dtype == "auto":
        return auto_dtype(config, device if device is not None else torch.device("cpu"),
                          profile, current)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto', 'fp32', 'fp16' or 'bf16', got {dtype!r}")
    return DTYPES[dtype]


class BackboneOutput(NamedTuple):
    """hidden: (B, T, d) final hidden states after the final norm; past_key_values: the model's
    cache object when `use_cache=True`, else None."""

    hidden: torch.Tensor
    past_key_values: Any


@dataclasses.dataclass
class ScoringModel:
    """A causal LM split into backbone and head, plus what scoring needs to know about it.

    Attributes:
        model: the HF `PreTrainedModel` (eval mode, on `device`, in `dtype`).
        weight: (V, d) output embedding (the input embedding when tied).
        bias: (V,) output bias or None.
        logit_scale: multiplier applied to the logits before soft-capping (1.0 for most models).
        softcap: final-logit soft-capping value or None.
        eos_token_id: the id greedy scoring excludes from the argmax (None if the config has
            none); `eos_token_ids` holds all of them when the config lists several.
        vocab_size: number of rows of `weight` (ids >= vocab_size are invalid input).
        name, revision: where the model came from (for run metadata); arch: config.model_type.
    """

    model: Any
    weight: torch.Tensor
    bias: torch.Tensor | None
    logit_scale: float
    softcap: float | None
    eos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    vocab_size: int
    name: str
    revision: str | None
    arch: str
    # the backbone's forward parameters, looked up on first use (set to None at construction,
    # so using a ScoringModel never adds attributes to it)
    _params: frozenset[str] | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._params = None

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            val = getattr(cfg, key, None)
            if isinstance(val, int) and val > 0:
                return val
        return None

    def backbone(
        self,
        input_ids: torch.Tensor,
        *,
        past_key_values: Any = None,
        use_cache: bool = False,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Final hidden states (B, T, d) of `input_ids` (B, T), continuing `past_key_values`.

        Optional arguments are passed on only when given, so every architecture sees the call
        it expects. `cache_position` is dropped for models whose forward no longer takes it
        (transformers 5.2x derives it from the cache).
        """
        params = self._forward_params()
        kwargs: dict[str, Any] = {"use_cache": use_cache, "return_dict": True}
        if past_key_values is not None:
            # transformers >= 5.2x renamed `past_key_values` to `cache`; older ones use the former.
            kwargs["cache" if "cache" in params else "past_key_values"] = past_key_values
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if cache_position is not None and "cache_position" in params:
            kwargs["cache_position"] = cache_position
        out = self.model.base_model(input_ids=input_ids, **kwargs)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        return BackboneOutput(out.last_hidden_state, cache if use_cache else None)

    def _forward_params(self) -> frozenset[str]:
        params = self._params
        if params is None:
            import inspect

            params = frozenset(inspect.signature(self.model.base_model.forward).parameters)
            self._params = params
        return params

    def head(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        *,
        masked_token: int | None = None,
        impl: str = "auto",
        cpu_block_rows: int | None = None,
        verify: bool = True,
    ):
        """(argmax int64, lse fp32, target_logprob fp32), each (N,), of hidden (N, d) against
        targets (N,), through `kernels.fused_head` (never the (N, V) logits). cpu_block_rows:
        on CPU, reduce at most this many rows per call (the callers' measured block sizes).
        verify: check the Triton kernel against its twin on first use (`kernels.verify`)."""
        from kernels import fused_head

        def reduce(rows: slice):
            return fused_head(
                hidden[rows], self.weight, targets[rows], bias=self.bias,
                logit_scale=self.logit_scale, softcap=self.softcap, masked_token=masked_token,
                impl=impl, verify=verify,
            )

        n = hidden.shape[0]
        if cpu_block_rows is None or hidden.device.type != "cpu" or n <= cpu_block_rows:
            return reduce(slice(None))
        parts = [reduce(slice(s, s + cpu_block_rows)) for s in range(0, n, cpu_block_rows)]
        return tuple(torch.cat(p) for p in zip(*parts))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full logits (..., V) of hidden (..., d) in fp32: for tests and small inputs only."""
        logits = (hidden @ self.weight.T).float()
        if self.bias is not None:
            logits = logits + self.bias.float()
        logits = logits * self.logit_scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def metadata(self) -> dict[str, str]:
        return {
            "model": self.name,
            "revision": self.revision or "",
            "arch": self.arch,
            "dtype": dtype_name(self.dtype),
            "vocab_size": str(self.vocab_size),
            "eos_token_id": "" if self.eos_token_id is None else str(self.eos_token_id),
        }


# --------------------------------------------------------------------------------------------
# Building the adapter from a loaded model


def _head_scaling(config) -> tuple[float, float | None]:
    """(logit_scale, softcap) the config declares. Cohere multiplies the logits by
    `logit_scale`; Granite divides them by `logits_scaling`; Gemma 2/3 soft-cap them."""
    scale = 1.0
    if getattr(config, "model_type", "") in ("cohere", "cohere2"):
        scale *= float(getattr(config, "logit_scale", 1.0) or 1.0)
    if getattr(config, "logits_scaling", None):
        scale /= float(config.logits_scaling)
    softcap = getattr(config, "final_logit_softcapping", None)
    return scale, (float(softcap) if softcap else None)


def _eos_ids(model) -> tuple[int, ...]:
    ids = getattr(model.config, "eos_token_id", None)
    if ids is None:
        gen = getattr(model, "generation_config", None)
        ids = getattr(gen, "eos_token_id", None) if gen is not None else None
    if ids is None:
        return ()
    if isinstance(ids, int):
        return (ids,)
    return tuple(int(i) for i in ids)


def wrap_model(model, *, name: str | None = None, revision: str | None = None) -> ScoringModel:
    """A `ScoringModel` around a loaded HF causal LM (no copy; the model is put in eval mode)."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        PreTrainedModel = ()  # type: ignore[assignment]
    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"model must be a HF id, a local folder, a .gguf file or a transformers "
            f"PreTrainedModel, got {type(model).__name__}"
        )
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise ValueError(
            f"{type(model).__name__} has no linear output embedding (get_output_embeddings()); "
            "expected a causal LM such as AutoModelForCausalLM"
        )
    if getattr(model, "base_model", None) is None or model.base_model is model:
        raise ValueError(f"{type(model).__name__} exposes no separate backbone (base_model)")
    model.eval()
    scale, softcap = _head_scaling(model.config)
    eos = _eos_ids(model)
    bias = getattr(head, "bias", None)
    return ScoringModel(
        model=model,
        weight=head.weight,
        bias=bias if isinstance(bias, torch.Tensor) else None,
        logit_scale=scale,
        softcap=softcap,
        eos_token_id=eos[0] if eos else None,
        eos_token_ids=eos,
        vocab_size=int(head.weight.shape[0]),
        name=name or str(getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
                         or type(model).__name__),
        revision=revision,
        arch=str(getattr(model.config, "model_type", type(model).__name__)),
    )


# --------------------------------------------------------------------------------------------
# Loading from a name, a folder or a GGUF file

def _check_loading_info(info: dict, target: str, what: str, allow: bool) -> None:
    """Refuse weights that leave a parameter of the model uninitialised (missing, unexpected or
    mis-shaped tensors), naming them; `allow` lets it through on purpose."""
    found = {k: sorted(info.get(k) or ()) for k in ("missing_keys", "unexpected_keys",
                                                     "mismatched_keys")}
    if allow or not any(found.values()):
        return
    parts = [f"{k.replace('_keys', '')}: {', '.join(map(str, v[:8]))}"
             + (f" (+{len(v) - 8} more)" if len(v) > 8 else "") for k, v in found.items() if v]
    raise ValueError(
        f"{what} {target!r} does not match its config: its weights leave parameters "
        f"uninitialised ({'; '.join(parts)}); scores would come from random weights. Pass "
        "allow_missing_weights=True (memtax score: --allow-missing-weights) to score it anyway"
    )


def _from_pretrained(target: str, *, torch_dtype, revision, trust_remote_code, local_files_only,
                     gguf_file=None, cache_dir=None, what: str, allow_missing_weights=False):
    import transformers

    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "trust_remote_code": bool(trust_remote_code),
        "local_files_only": bool(local_files_only),
        "output_loading_info": True,
        "ignore_mismatched_sizes": True,   # reported by name below, not as a bare RuntimeError
    }
    if revision is not None:
        kwargs["revision"] = revision
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(target, **kwargs)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{what} {target!r}: its pickle checkpoint (.bin/.pt) holds objects other than "
            "tensors, which safe loading (torch.load weights_only) refuses; use a safetensors "
            f"checkpoint ({str(exc).splitlines()[-1][:200]})"
        ) from None
    except OSError as exc:
        rev = f" at revision {revision!r}" if revision else ""
        hint = " (only local files were searched)" if local_files_only else ""
        raise FileNotFoundError(f"could not load {what} {target!r}{rev}{hint}: {exc}") from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise ValueError(
                f"{what} {target!r} needs its own code; pass trust_remote_code=True only if "
                f"you trust it ({exc})"
            ) from exc
        raise
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        raise ValueError(f"{what} {target!r}: a safetensors weight file is corrupt or not "
                         f"safetensors ({exc})") from None
    _check_loading_info(info, target, what, allow_missing_weights)
    return model


def _load_gguf(path: Path, gguf_file, want: torch.dtype, trust_remote_code: bool,
               allow_missing_weights: bool = False):
    """A GGUF file (`path`, or `gguf_file` inside the folder `path`), loaded in fp32 and cast:
    asking transformers for a 16-bit GGUF load keeps the weights packed and casts around every
    matmul (2-3x slower)."""
    gguf = Path(gguf_file) if gguf_file is not None else path
    folder = path if gguf_file is not None else path.parent
    if gguf_file is not None and not (folder / gguf).is_file() and not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf)!r} not found in {str(folder)!r}")
    hf = _from_pretrained(
        str(folder), torch_dtype=torch.float32, revision=None,
        trust_remote_code=trust_remote_code, local_files_only=True, gguf_file=gguf.name,
        what="GGUF model", allow_missing_weights=allow_missing_weights,
    )
    return hf.to(dtype=want)


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _check_weight_files(folder: Path) -> None:
    """Every weight file the folder names must be a readable file: a broken link, a folder or
    an unreadable file is named here instead of looking like a missing checkpoint."""
    names = set(_WEIGHT_FILES) | {p.name for p in folder.glob("*.safetensors")}
    for name in sorted(names):
        p = folder / name
        if not os.path.lexists(p):
            continue
        if p.is_symlink() and not p.exists():
            raise FileNotFoundError(f"model weight file {str(p)!r} is a broken link (to "
                                    f"{os.readlink(p)!r}); expected a readable file")
        if not p.is_file():
            raise ValueError(f"model weight file {str(p)!r} is not a regular file")
        try:
            with open(p, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"model weight file {str(p)!r} cannot be read "
                             f"({exc.strerror or exc}); expected a readable file") from None


def _load_folder(path: Path, rev: str | None, want: torch.dtype, *, trust_remote_code: bool,
                 local_files_only: bool | None, allow_missing_weights: bool = False):
    """A saved Hugging Face model folder, or its revision `rev` (a subfolder or cached ref)."""
    if not path.is_dir():
        raise ValueError(
            f"model path {str(path)!r} is a file; expected a model folder (config.json + "
            "weights), a .gguf file or a Hugging Face id"
        )
    folder = local_revision_folder(path, rev) if rev else path
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"model folder {str(folder)!r} has no config.json; expected a saved Hugging "
            "Face model (save_pretrained) folder"
        )
    _check_weight_files(folder)
    return _from_pretrained(
        str(folder), torch_dtype=want, revision=None, trust_remote_code=trust_remote_code,
        local_files_only=True if local_files_only is None else local_files_only,
        what="model folder", allow_missing_weights=allow_missing_weights,
    )


def load_model(
    model,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool | None = None,
    gguf_file: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_missing_weights: bool = False,
    profile: str = "default",
) -> ScoringModel:
    """Load `model` for scoring and wrap it in a `ScoringModel`.

    model: a `ScoringModel` or a loaded `PreTrainedModel` (used as is when already in `dtype`
        on `device`; otherwise a cast/moved copy is wrapped: the caller's model never changes),
        a local folder, a `.gguf` file, or a Hugging Face id; strings may end in `@revision`
        (e.g. `pythia-160m@step143000`).
    dtype: 'fp32', 'fp16', 'bf16', or 'auto' (`resolve_dtype`): on CPU a loaded model's own
        dtype, else fp32; on CUDA fp16 in the paper profile, else a loaded model's own 16-bit
        dtype, the 16-bit `torch_dtype` the checkpoint's config declares (fp16 for Pythia), or
        bf16. profile: 'default' or 'paper' (`engine.profiles`); it only changes what 'auto'
        means.
    revision: overrides a `@revision` suffix. For a local folder a revision is a subfolder or a
        cached ref (Hugging Face cache layout); a missing one raises FileNotFoundError.
    local_files_only: default True for local paths (never touches the network) and the
        `HF_HUB_OFFLINE` setting for hub ids.
    trust_remote_code: never run a checkpoint's own code unless this is True.
    cache_dir: the Hugging Face cache to look hub ids up in (default: the usual one).
    allow_missing_weights: score a checkpoint whose weights leave parameters uninitialised
        (missing, unexpected or mis-shaped tensors); by default that is a ValueError naming them.
    Safetensors weights are preferred whenever a checkpoint has them (transformers' default).
    """
    dev = resolve_device(device)
    check_profile(profile)
    if isinstance(model, ScoringModel):
        want = resolve_dtype(dtype, dev, current=model.dtype, config=model.model.config,
                             profile=profile)
        if not _same_device(model.device, dev) or model.dtype != want:
            return wrap_model(_cast_copy(model.model, want, dev), name=model.name,
                              revision=model.revision)
        return model
    if not isinstance(model, (str, os.PathLike)):
        want = resolve_dtype(dtype, dev, current=getattr(model, "dtype", None),
                             config=getattr(model, "config", None), profile=profile)
        if isinstance(model, torch.nn.Module):
            have_dev, have_dtype = _placement(model)
            if not _same_device(have_dev, dev) or have_dtype != want:
                model = _cast_copy(model, want, dev)
        return wrap_model(model, revision=revision)
    resolve_dtype(dtype, dev, profile=profile)  # a bad name fails before any file is read
    name, rev = parse_model_spec(str(model))
    rev = revision if revision is not None else rev
    hf = _load_named(name, rev, dtype, dev, profile, gguf_file=gguf_file, cache_dir=cache_dir,
                     trust_remote_code=trust_remote_code, local_files_only=local_files_only,
                     allow_missing_weights=allow_missing_weights)
    hf.to(device=dev)
    return wrap_model(hf, name=name, revision=rev)


def _load_named(name: str, rev: str | None, dtype, dev: torch.device, profile: str, *,
                gguf_file, cache_dir, trust_remote_code: bool, local_files_only: bool | None,
                allow_missing_weights: bool):
    """The HF model behind a folder, a .gguf file or a hub id, loaded in the dtype it is to
    be scored in (before it moves to `dev`)."""
    path = Path(name).expanduser()
    common = dict(trust_remote_code=trust_remote_code, local_files_only=local_files_only,
                  allow_missing_weights=allow_missing_weights)
    if path.is_file() and path.suffix == ".gguf" or gguf_file is not None:
        want = resolve_dtype(dtype, dev, profile=profile)  # a GGUF file declares no torch dtype
        return _load_gguf(path, gguf_file, want, trust_remote_code, allow_missing_weights)
    if path.exists():
        want = _wanted_dtype(dtype, dev, profile, lambda: _folder_config(path, rev))
        return _load_folder(path, rev, want, **common)
    if not is_hub_id(name):
        raise FileNotFoundError(
            f"model folder or file {name!r} not found; expected an existing folder, a .gguf "
            "file or a Hugging Face id such as 'EleutherAI/pythia-160m'"
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    local_only = offline if local_files_only is None else local_files_only
    want = _wanted_dtype(dtype, dev, profile,
                         lambda: _hub_config(name, rev, local_only, cache_dir))
    return _from_pretrained(
        name, torch_dtype=want, revision=rev, trust_remote_code=trust_remote_code,
        local_files_only=local_only, cache_dir=cache_dir, what="model",
        allow_missing_weights=allow_missing_weights,
    )


def _wanted_dtype(dtype, dev: torch.device, profile: str, read_config) -> torch.dtype:
    """The dtype to load in; the checkpoint's config is read (`read_config()`) only where the
    answer depends on it: dtype 'auto' on CUDA in the default profile."""
    config = read_config() if dtype == "auto" and dev.type == "cuda" and profile == "default" \
        else None
    return resolve_dtype(dtype, dev, config=config, profile=profile)


def _folder_config(path: Path, rev: str | None) -> dict | None:
    """The config.json of a model folder (or of its revision), None where there is none (the
    loader then says what is missing)."""
    try:
        folder = local_revision_folder(path, rev) if rev else path
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _hub_config(name: str, rev: str | None, local_files_only: bool, cache_dir) -> dict | None:
    """A hub checkpoint's config.json as a mapping (no model class, so no remote code runs);
    None where it cannot be read (the loader then says why)."""
    from transformers import PretrainedConfig

    kwargs = {"local_files_only": local_files_only, "revision": rev,
              "cache_dir": None if cache_dir is None else str(cache_dir)}
    try:
        return PretrainedConfig.get_config_dict(name, **kwargs)[0]
    except (OSError, ValueError):
        return None


def _placement(model) -> tuple[torch.device, torch.dtype | None]:
    """(device, dtype) of a module's first parameter (what `wrap_model` will see)."""
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), None)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are one device when the current device is 0 (an index left out means
    the current one)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def _cast_copy(model, dtype: torch.dtype, device: torch.device):
    """A copy of the caller's model in `dtype` on `device` (the caller's own stays as it was;
    the copy costs one more model in memory)."""
    return copy.deepcopy(model).to(device=device, dtype=dtype)
