"""The methods `memtax bench` times, each on the same rows: memtax's two modes and the usual
Hugging Face ways of labelling memorization.

    memtax_exact       engine.score(mode="exact"): one teacher-forced pass, fused head (no logits)
    memtax_generate    engine.score(mode="generate"): the pass above + resumed greedy decoding
    hf_forward         model(tokens[:, :L-1]).logits -> argmax (what most people write)
    hf_generate        model.generate(prompt, greedy, KV cache, min_length=L)
    hf_generate_nocache  Pythia's recipe: generate(use_cache=False, max_length=L, min_length=L),
                       fp16, batch 1,024 (on CPU: the run's dtype and the sweep's largest batch)

Every method takes (ctx, tokens (N, L) int64 numpy, batch) and returns the labels it computes
(exact_match, match_len and, for the generating ones, gen_score) so that a run also checks that
they agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from memtax.bench.shapes import METHOD_NAMES
from memtax.testing import hf_greedy

__all__ = ["Context", "Method", "METHODS", "BASELINES", "RECIPE", "RECIPE_BATCH"]


@dataclasses.dataclass
class Context:
    """What the methods share for one shape: the model (+ its memtax adapter), lengths, EOS."""

    model: Any
    sm: Any
    prefix_len: int
    cont_len: int
    eos: int | None

    @property
    def device(self) -> torch.device:
        return self.sm.device


def _labels_from_greedy(greedy: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    correct = greedy == truth
    match_len = np.cumprod(correct, axis=1).sum(axis=1)
    return {"exact_match": match_len == truth.shape[1], "match_len": match_len.astype(np.int64),
            "gen_score": correct.mean(axis=1).astype(np.float32)}


def _run_memtax(ctx: Context, tokens: np.ndarray, batch: int, mode: str) -> dict[str, np.ndarray]:
    from engine.scoring import score

    seen: list[int] = []
    table = score(ctx.sm, tokens, prefix_len=ctx.prefix_len, cont_len=ctx.cont_len, mode=mode,
                  batch_size=batch, dtype=ctx.sm.dtype, device=ctx.sm.device, progress=False,
                  on_batch=seen.append, verify=False)  # the first-use check is not timed
    out = {"exact_match": table.column("exact_match").to_numpy(zero_copy_only=False),
           "match_len": table.column("match_len").to_numpy().astype(np.int64),
           "batch_used": max(seen) if seen else batch}
    if mode == "generate":
        out["gen_score"] = table.column("gen_score").to_numpy()
    return out


def _memtax_exact(ctx, tokens, batch):
    return _run_memtax(ctx, tokens, batch, "exact")


def _memtax_generate(ctx, tokens, batch):
    return _run_memtax(ctx, tokens, batch, "generate")


@torch.inference_mode()
def _hf_forward(ctx: Context, tokens: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    p, L = ctx.prefix_len, ctx.prefix_len + ctx.cont_len
    preds = []
    for s in range(0, len(tokens), batch):
        t = torch.from_numpy(tokens[s : s + batch]).to(ctx.device)
        logits = ctx.model(input_ids=t[:, : L - 1]).logits          # (B, L-1, V): all of them
        cont = logits[:, p - 1 :]
        if ctx.eos is not None:
            cont[..., ctx.eos] = float("-inf")                       # Pythia's min_length
        preds.append(cont.argmax(dim=-1).cpu().numpy())
    greedy = np.concatenate(preds)
    labels = _labels_from_greedy(greedy, tokens[:, p:])
    del labels["gen_score"]  # teacher-forced argmax: not the free-running score
    return labels


def _hf_gen(ctx: Context, tokens: np.ndarray, batch: int, use_cache: bool):
    p = ctx.prefix_len
    outs = []
    for s in range(0, len(tokens), batch):
        prompt = torch.from_numpy(tokens[s : s + batch, :p]).to(ctx.device)
        outs.append(hf_greedy(ctx.model, prompt, ctx.cont_len, use_cache=use_cache))
    return _labels_from_greedy(np.concatenate(outs), tokens[:, p:])


def _hf_generate_cached(ctx, tokens, batch):
    return _hf_gen(ctx, tokens, batch, True)


def _hf_generate_nocache(ctx, tokens, batch):
    return _hf_gen(ctx, tokens, batch, False)


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[Context, np.ndarray, int], dict]
    description: str


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("memtax_exact", _memtax_exact, "memtax one pass, fused head (every score column)"),
    Method("memtax_generate", _memtax_generate,
           "memtax one pass + resumed greedy decoding (adds Pythia's gen_score)"),
    Method("hf_forward", _hf_forward, "HF forward, full logits, argmax (labels only)"),
    Method("hf_generate", _hf_generate_cached, "HF generate, greedy, KV cache"),
    Method("hf_generate_nocache", _hf_generate_nocache,
           "HF generate, use_cache=False (Pythia's recipe: fp16, batch 1,024)"),
]}
assert tuple(METHODS) == METHOD_NAMES  # the FLOP model and the memory estimate know each one
BASELINES = ("hf_forward", "hf_generate", "hf_generate_nocache")
RECIPE = "hf_generate_nocache"
RECIPE_BATCH = 1024
