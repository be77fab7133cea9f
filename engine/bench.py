"""Throughput of memtax scoring against the usual ways of doing it, per model shape and GPU.

`run_bench` builds each model shape with random weights (throughput does not depend on the
weights), makes one set of samples per shape, and measures in the same run, on the same rows:

    memtax_exact       engine.score(mode="exact"): one teacher-forced pass, fused head (no logits)
    memtax_generate    engine.score(mode="generate"): the pass above + resumed greedy decoding
    hf_forward         model(tokens[:, :L-1]).logits -> argmax (what most people write)
    hf_generate        model.generate(prompt, greedy, KV cache, min_new_tokens=C)
    hf_generate_nocache  Pythia's recipe: generate(use_cache=False, max_length=L, min_length=L),
                       fp16, batch 1,024 (on CPU: the run's dtype and the sweep's largest batch)

Every method returns the labels it computes (exact_match, match_len and, for the generating
ones, gen_score) so that the run also checks that they agree.

FLOP count (model FLOPs, the work each method's algorithm performs; embeddings, norms, biases,
softmax and rotary are not counted). For a backbone with `n_layers` layers, hidden size d,
matmul weights `W_layer` per layer (GPT-NeoX: 4·d² attention + 2·d·d_ff MLP) and a head of V·d:

    forward(n tokens after `past` cached ones, h head positions)
        = 2·n_layers·W_layer·n                                   (weight matmuls: 2·params·tokens)
        + 4·d·n_layers·Σ_{t=past}^{past+n-1} (t+1)                (QK^T and A·V, causal: a token
                                                                   at position t sees t+1 keys)
        + 2·d·V·h                                                 (LM head)

with L = P + C (prompt P, continuation C) per sample:

    memtax_exact, hf_forward   forward(L-1, past 0, h = L-1)      both compute the head at every
                                                                  position (memtax: for the NLLs)
    hf_generate                forward(P, 0, h=1) + Σ_{s=1}^{C-1} forward(1, P+s-1, h=1)
    hf_generate_nocache        Σ_{s=0}^{C-1} forward(P+s, 0, h=1) (no cache: every step re-runs
                               the whole sequence; transformers >= 4.45 keeps only the last
                               position's logits, so h=1)
    memtax_generate            memtax_exact + per row with first mismatch m < C-1:
                               Σ_{j=m+1}^{C-1} forward(1, P+j-1, h=1)   (the decoded tokens; the
                               engine's re-run of the true prefix when it has no cache at hand
                               is not counted, so its TFLOP/s is a lower bound)

Achieved TFLOP/s = FLOPs / time; MFU = TFLOP/s / the GPU's dense bf16 peak (`GPU_PEAK_TFLOPS`,
override with `peak_tflops`); fp16/fp32 runs are still compared with the bf16 peak.
Tokens/s counts the L tokens of each scored sample. Projection: GPU-hours to score the
146,432,000 sequences Pythia trained on (143,000 steps x 1,024) = N / (samples/s) / 3600.

Memory: on CUDA `torch.cuda.max_memory_allocated` during the timed runs (`peak_mem`) and its
excess over what was allocated before (`extra_mem`); `head_mem` = extra_mem minus the extra
memory of a backbone-only pass at the same batch (what the head and its logits cost). Before
building a shape or running a batch, `estimate_memory` is compared with the device's capacity;
what does not fit is skipped with the reason, and an out-of-memory error is caught and recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.output import write_bytes_atomic

__all__ = [
    "Shape", "PYTHIA_SHAPES", "METHODS", "BASELINES", "GPU_PEAK_TFLOPS", "PILE_SEQUENCES",
    "peak_tflops_for", "forward_flops", "method_flops", "estimate_memory", "memory_capacity",
    "build_model", "shape_from_model", "make_samples", "run_bench", "to_markdown",
    "write_report", "environment", "evaluate_targets", "gpu_hours",
]

# Pythia: 143,000 steps of 1,024 sequences of 2,049 tokens.
PILE_SEQUENCES = 143_000 * 1024

_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GiB = 1024**3


# ---------------------------------------------------------------------------------------------
# Shapes


@dataclasses.dataclass(frozen=True)
class Shape:
    """A GPT-NeoX model shape (Pythia's hyper-parameters; weights are random).

    `layer_matmul_params` overrides the per-layer weight-matmul parameter count (GPT-NeoX:
    4·d² + 2·d·d_ff) for shapes taken from other architectures (`shape_from_model`).
    """

    name: str
    layers: int
    hidden: int
    heads: int
    vocab: int
    intermediate: int | None = None
    max_positions: int = 2048
    layer_matmul_params: int | None = None
    total_params_override: int | None = None

    @property
    def ff(self) -> int:
        return self.intermediate or 4 * self.hidden

    @property
    def layer_params(self) -> int:
        """Weight-matmul parameters of one layer (QKV 3d², dense d², MLP 2·d·d_ff)."""
        if self.layer_matmul_params is not None:
            return self.layer_matmul_params
        return 4 * self.hidden**2 + 2 * self.hidden * self.ff

    @property
    def matmul_params(self) -> int:
        """Parameters a token's forward multiplies with: all layers + the LM head."""
        return self.layers * self.layer_params + self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        """Every parameter (untied input and output embeddings, biases, norms): for memory."""
        if self.total_params_override is not None:
            return self.total_params_override
        d = self.hidden
        per_layer = self.layer_params + 3 * d + d + self.ff + d + 4 * d  # biases + 2 norms
        return self.layers * per_layer + 2 * self.vocab * d + 2 * d

    def config(self):
        """The `GPTNeoXConfig` Pythia used for this size (rotary 25%, parallel residual)."""
        import transformers

        return transformers.GPTNeoXConfig(
            vocab_size=self.vocab, hidden_size=self.hidden, num_hidden_layers=self.layers,
            num_attention_heads=self.heads, intermediate_size=self.ff,
            max_position_embeddings=self.max_positions, rotary_pct=0.25, rotary_emb_base=10000,
            use_parallel_residual=True, tie_word_embeddings=False, layer_norm_eps=1e-5,
            hidden_act="gelu", eos_token_id=0, bos_token_id=0,
        )


# The released Pythia configs (EleutherAI/pythia-*): vocabularies are padded, 6.9B and 12B more.
PYTHIA_SHAPES: dict[str, Shape] = {s.name: s for s in [
    Shape("70m", 6, 512, 8, 50304),
    Shape("160m", 12, 768, 12, 50304),
    Shape("410m", 24, 1024, 16, 50304),
    Shape("1b", 16, 2048, 8, 50304),
    Shape("1.4b", 24, 2048, 16, 50304),
    Shape("2.8b", 32, 2560, 32, 50304),
    Shape("6.9b", 32, 4096, 32, 50432),
    Shape("12b", 36, 5120, 40, 50688),
]}


def shape_from_model(model, name: str | None = None) -> Shape:
    """The `Shape` of a loaded HF causal LM: counts its backbone's Linear weights (any
    architecture), for FLOPs and memory estimates."""
    cfg = model.config  # GPT-2's n_layer/n_embd/n_head are aliased to these names
    layers, hidden = int(cfg.num_hidden_layers), int(cfg.hidden_size)
    heads = int(cfg.num_attention_heads)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    linear = 0
    for mod in model.base_model.modules():
        w = getattr(mod, "weight", None)
        # Linear layers (and GPT-2's Conv1D) hold 2-D weights; embeddings are lookups, not matmuls
        if isinstance(w, torch.Tensor) and w.dim() == 2 and not isinstance(mod, torch.nn.Embedding):
            linear += w.numel()
    total = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    return Shape(name or str(getattr(model, "name_or_path", "") or type(model).__name__),
                 layers, hidden, heads, vocab, layer_matmul_params=linear // max(layers, 1),
                 max_positions=int(getattr(cfg, "max_position_embeddings", 0) or 2048),
                 total_params_override=total)


# ---------------------------------------------------------------------------------------------
# GPUs


# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets. Matched
# in order against torch.cuda.get_device_name(): the more specific names come first.
GPU_PEAK_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),          # SXM ("NVIDIA H100 80GB HBM3")
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),      # bf16 with fp32 accumulation
    ("RTX 3090", 71.0),
    ("A6000", 155.0),
    ("V100", 125.0),          # no bf16: the fp16 tensor-core peak
    ("T4", 65.0),             # fp16
]


def peak_tflops_for(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU named like torch.cuda.get_device_name(); None if unknown."""
    for key, tflops in GPU_PEAK_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![0-9])", device_name):
            return tflops
    return None


# ---------------------------------------------------------------------------------------------
# FLOPs


def forward_flops(shape: Shape, n_tokens: int, past: int = 0, head_positions: int | None = None
                  ) -> int:
    """Model FLOPs of one sequence's forward over `n_tokens` new tokens after `past` cached
    ones, with the LM head at `head_positions` positions (default: every new token)."""
    h = n_tokens if head_positions is None else head_positions
    mm = 2 * shape.layers * shape.layer_params * n_tokens
    # Σ_{t=past}^{past+n-1} (t+1) keys, summed in closed form
    keys = (past + n_tokens) * (past + n_tokens + 1) // 2 - past * (past + 1) // 2
    attn = 4 * shape.hidden * shape.layers * keys
    head = 2 * shape.hidden * shape.vocab * h
    return mm + attn + head


def method_flops(method: str, shape: Shape, prefix_len: int, cont_len: int,
                 match_len: np.ndarray | None = None, n_samples: int | None = None) -> int:
    """Total model FLOPs of `method` over the samples (see the module docstring).

    memtax_generate needs the per-row `match_len` (its decoding depends on the first mismatch);
    the others need only `n_samples` (or the length of `match_len`).
    """
    p, c = prefix_len, cont_len
    L = p + c
    if n_samples is None:
        if match_len is None:
            raise ValueError("method_flops needs n_samples or match_len")
        n_samples = len(match_len)
    if method in ("memtax_exact", "hf_forward"):
        return n_samples * forward_flops(shape, L - 1)
    if method == "hf_generate":
        per = forward_flops(shape, p, 0, 1) + sum(forward_flops(shape, 1, p + s - 1, 1)
                                                  for s in range(1, c))
        return n_samples * per
    if method == "hf_generate_nocache":
        return n_samples * sum(forward_flops(shape, p + s, 0, 1) for s in range(c))
    if method == "memtax_generate":
        if match_len is None:
            raise ValueError("memtax_generate FLOPs depend on each row's match_len")
        # decode cost of a row that first mismatched at m: tokens m+1..C-1, one step each
        step = [forward_flops(shape, 1, p + j - 1, 1) for j in range(c)]
        tail = np.concatenate([np.cumsum(step[::-1])[::-1], [0]])  # tail[k] = Σ_{j>=k} step[j]
        m = np.clip(np.asarray(match_len, dtype=np.int64), 0, c)
        decode = sum(int(tail[min(mm + 1, c)]) for mm in m.tolist())
        return n_samples * forward_flops(shape, L - 1) + decode
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")


def gpu_hours(samples_per_s: float, n_sequences: int = PILE_SEQUENCES) -> float:
    """GPU-hours to score `n_sequences` at `samples_per_s` on one GPU."""
    if not samples_per_s > 0:
        raise ValueError(f"samples_per_s must be positive, got {samples_per_s!r}")
    return n_sequences / samples_per_s / 3600.0


# ---------------------------------------------------------------------------------------------
# Memory


def estimate_memory(shape: Shape, method: str, batch: int, dtype: torch.dtype,
                    prefix_len: int = 32, cont_len: int = 32, weights: bool = True) -> int:
    """A deliberately generous estimate of a method's peak bytes at `batch` rows (weights +
    one layer's activations + what the method keeps: logits, KV cache, head tiles)."""
    e = _BYTES[dtype]
    d, L = shape.hidden, prefix_len + cont_len
    w = shape.total_params * e if weights else 0

    def act(tokens: int) -> int:  # one layer live at a time: residual, QKV, MLP, scores
        return batch * tokens * (8 * d + 2 * shape.ff) * e + batch * shape.heads * tokens**2 * 4

    hidden_out = batch * L * d * e
    kv = 2 * shape.layers * batch * L * d * e
    step_logits = 3 * batch * shape.vocab * 4  # fp32 logits + processors' copies
    if method == "memtax_exact":
        extra = act(L) + hidden_out + 4096 * 2048 * 4 + 2 * d * 4096 * 4
    elif method == "memtax_generate":
        extra = act(L) + hidden_out + 4096 * 2048 * 4 + 2 * kv + step_logits
    elif method == "hf_forward":
        extra = act(L) + hidden_out + batch * (L - 1) * shape.vocab * e + batch * L * 8
    elif method == "hf_generate":
        extra = act(prefix_len) + kv + step_logits
    elif method == "hf_generate_nocache":
        extra = act(L) + step_logits
    elif method == "backbone":
        extra = act(L) + hidden_out
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    return int(w + 1.25 * extra)


def memory_capacity(device: torch.device) -> int:
    """Bytes a run may use: 92% of the GPU's memory, or 80% of the available RAM on CPU."""
    if device.type == "cuda":
        return int(0.92 * torch.cuda.get_device_properties(device).total_memory)
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return int(0.8 * avail)


# ---------------------------------------------------------------------------------------------
# Models and samples


@torch.no_grad()
def build_model(shape: Shape, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """A random-weight GPT-NeoX of `shape`, built directly in `dtype` on `device`.

    Skips transformers' per-module initialisation (minutes at 12B on a CPU) and fills every
    parameter once with a seeded generator on the device: matrices N(0, 0.02), biases 0,
    norm weights 1 (GPT-NeoX's init). Buffers (rotary frequencies) are computed as usual.
    """
    import transformers
    from transformers.initialization import no_init_weights

    with no_init_weights(), torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(shape.config(), dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, 0.02, generator=gen)
        elif "norm" in name and name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()
        p.requires_grad_(False)  # inference only: no autograd bookkeeping in any method
    model.eval()
    return model


def make_samples(model, n: int, *, prefix_len: int, cont_len: int, seed: int = 0,
                 memorized_fraction: float = 0.01, batch_size: int = 64) -> np.ndarray:
    """(n, P+C) int64 samples: random tokens, except a `memorized_fraction` of rows whose
    continuation is the model's own greedy continuation (HF generate, EOS forbidden as in
    Pythia's evaluation) and as many copies of those with one continuation token changed at a
    known position (so rows first diverge at positions other than 0).

    Token 0 (Pythia's EOS) is never drawn, so prompts look like mid-document text.
    """
    rng = np.random.default_rng(seed)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    L = prefix_len + cont_len
    tokens = rng.integers(1, vocab, size=(n, L), dtype=np.int64)
    k = int(round(memorized_fraction * n))
    k = min(k, n // 2)
    if k == 0:
        return tokens
    dev = model.get_output_embeddings().weight.device
    rows = rng.choice(n, size=2 * k, replace=False)
    mem, changed = rows[:k], rows[k:]
    for s in range(0, k, batch_size):
        r = mem[s : s + batch_size]
        gen = _hf_generate(model, torch.from_numpy(tokens[r, :prefix_len]).to(dev), cont_len,
                           use_cache=True)
        tokens[r, prefix_len:] = gen.cpu().numpy()
    # a copy of a memorized row with continuation token j replaced: match_len = j
    tokens[changed] = tokens[mem]
    pos = rng.integers(0, cont_len, size=k)
    old = tokens[changed, prefix_len + pos]
    tokens[changed, prefix_len + pos] = 1 + (old % (vocab - 1))  # a different non-EOS token
    return tokens


# ---------------------------------------------------------------------------------------------
# The methods. Each takes (ctx, tokens (N, L) int64 numpy, batch) and returns its labels.


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
                  on_batch=seen.append)
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


def _hf_generate(model, prompt: torch.Tensor, cont_len: int, *, use_cache: bool) -> torch.Tensor:
    """Greedy continuations (B, C) of prompt (B, P), EOS forbidden (min_length), no early stop."""
    from transformers import GenerationConfig

    eos = getattr(model.config, "eos_token_id", None)
    L = prompt.shape[1] + cont_len
    cfg = GenerationConfig(
        do_sample=False, num_beams=1, max_length=L, min_length=L, use_cache=use_cache,
        eos_token_id=eos, pad_token_id=eos if eos is not None else 0,
        temperature=None, top_p=None, top_k=None,
    )
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=cfg)
    return out[:, prompt.shape[1] :]


@torch.inference_mode()
def _hf_gen(ctx: Context, tokens: np.ndarray, batch: int, use_cache: bool):
    p = ctx.prefix_len
    outs = []
    for s in range(0, len(tokens), batch):
        t = torch.from_numpy(tokens[s : s + batch, :p]).to(ctx.device)
        outs.append(_hf_generate(ctx.model, t, ctx.cont_len, use_cache=use_cache).cpu().numpy())
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
BASELINES = ("hf_forward", "hf_generate", "hf_generate_nocache")
RECIPE = "hf_generate_nocache"
RECIPE_BATCH = 1024


# ---------------------------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _timed(fn: Callable[[], dict], device: torch.device) -> tuple[float, dict, int | None, int | None]:
    """(seconds, result, peak bytes, extra bytes over what was allocated before) of one call."""
    _sync(device)
    base = None
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    dt = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        return dt, out, peak, peak - base
    return dt, out, None, None


def _measure(method: Method, ctx: Context, tokens: np.ndarray, batch: int, *, repeats: int,
             time_budget: float) -> dict:
    """Warm up on one batch, size the run to the time budget, then time `repeats` full runs
    over the same rows; the median time counts."""
    dev = ctx.device
    batch = min(batch, len(tokens))
    # On CUDA the warm-up must see the real batch shape (kernel autotuning, allocator); on a
    # CPU a few rows pay the one-time costs, and scaling their time up errs on the long side.
    warm = batch if dev.type == "cuda" else min(batch, 4)
    t_warm, _, _, _ = _timed(lambda: method.run(ctx, tokens[:warm], warm), dev)
    if dev.type == "cuda":  # the first call autotunes kernels: time a second one for sizing
        t_warm, _, _, _ = _timed(lambda: method.run(ctx, tokens[:warm], warm), dev)
    t_batch = t_warm * batch / warm
    n_batches = math.ceil(len(tokens) / batch)
    fit = max(1, int(time_budget / max(t_batch, 1e-9)))
    n_batches = max(1, min(n_batches, fit))
    rows = tokens[: n_batches * batch]
    reps = max(1, min(repeats, int(time_budget / max(t_batch * n_batches, 1e-9))))
    times, peaks, extras, labels = [], [], [], None
    for _ in range(reps):
        dt, labels, peak, extra = _timed(lambda: method.run(ctx, rows, batch), dev)
        times.append(dt)
        peaks.append(peak)
        extras.append(extra)
    sec = statistics.median(times)
    return {"seconds": sec, "times": times, "n_samples": len(rows), "repeats": reps,
            "peak_mem": max(peaks) if peaks[0] is not None else None,
            "extra_mem": max(extras) if extras[0] is not None else None, "labels": labels}


@torch.inference_mode()
def _backbone_extra(ctx: Context, tokens: np.ndarray, batch: int) -> int | None:
    """Extra CUDA bytes of the backbone alone over one batch (the baseline for head memory)."""
    if ctx.device.type != "cuda":
        return None
    L = ctx.prefix_len + ctx.cont_len
    t = torch.from_numpy(tokens[:batch, : L - 1]).to(ctx.device)
    _, _, _, extra = _timed(lambda: ctx.sm.backbone(t).hidden.sum(), ctx.device)
    return extra


# ---------------------------------------------------------------------------------------------
# The run


def _shape_list(shapes) -> list[Shape]:
    out = []
    for s in shapes:
        if isinstance(s, Shape):
            out.append(s)
        elif str(s).lower() in PYTHIA_SHAPES:
            out.append(PYTHIA_SHAPES[str(s).lower()])
        else:
            raise ValueError(
                f"unknown shape {s!r}; expected one of {', '.join(PYTHIA_SHAPES)} (Pythia sizes)"
            )
    if not out:
        raise ValueError("shapes must name at least one model shape")
    return out


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _BYTES:
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}[dtype]


def run_bench(
    shapes: Sequence[str | Shape] = ("70m",),
    *,
    batch_sizes: Sequence[int] = (16,),
    dtype: str | torch.dtype = "bf16",
    methods: Sequence[str] = tuple(METHODS),
    device: str | torch.device = "cpu",
    model=None,
    n_samples: int | None = None,
    prefix_len: int = 32,
    cont_len: int = 32,
    repeats: int = 3,
    time_budget: float = 30.0,
    memory_limit: int | None = None,
    peak_tflops: float | None = None,
    recipe_batch: int | None = None,
    memorized_fraction: float = 0.01,
    method_shapes: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_shape: Callable[[dict], None] | None = None,
) -> dict:
    """Measure `methods` on every shape x batch size; returns the report (see `write_report`).

    shapes: Pythia size names ('70m' ... '12b') or `Shape`s; ignored when `model` is given (a
        HF id / folder / loaded model, benchmarked as one shape in `dtype`).
    n_samples: rows per measurement (default: 2 x the largest batch, at least the recipe batch
        when the recipe runs); the same rows for every method, so their labels are compared.
    time_budget: seconds one measurement may take; fewer rows/repeats are used to stay inside.
    memory_limit: bytes a run may use (default: `memory_capacity(device)`); shapes and batches
        whose `estimate_memory` exceeds it are skipped, and out-of-memory errors are recorded.
    recipe_batch: batch of the uncached recipe (default 1,024 on CUDA, the largest of
        `batch_sizes` on CPU); it runs in fp16 on CUDA, in `dtype` on CPU.
    method_shapes: {method: shape names} limits a method to those shapes (e.g. keep the
        uncached recipe, minutes per batch at 12B, to the small shapes).
    on_shape: called with a snapshot of the report (`complete` False) after every shape.
    """
    from engine.models import resolve_device, wrap_model

    dev = resolve_device(device)
    dt = _dtype(dtype)
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected some of {', '.join(METHODS)}")
    if not methods:
        raise ValueError("methods must name at least one method")
    bss = sorted({int(b) for b in batch_sizes})
    if not bss or bss[0] < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    for name, v in (("prefix_len", prefix_len), ("cont_len", cont_len)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if peak_tflops is not None and not peak_tflops > 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops!r}")
    capacity = memory_limit if memory_limit is not None else memory_capacity(dev)
    recipe_bs = recipe_batch or (RECIPE_BATCH if dev.type == "cuda" else bss[-1])
    recipe_dt = torch.float16 if dev.type == "cuda" else dt
    need = max(bss) * 2
    if RECIPE in methods:
        need = max(need, recipe_bs)
    n = n_samples or need
    env = environment(dev)
    peak = peak_tflops or env.get("peak_tflops")
    say = log or (lambda s: None)

    if model is not None:
        from engine.models import load_model

        sm0 = load_model(model, dtype=dt, device=dev)
        shape_objs = [shape_from_model(sm0.model, name=sm0.name)]
    else:
        sm0 = None
        shape_objs = _shape_list(shapes)

    config = {"shapes": [s.name for s in shape_objs], "batch_sizes": bss,
              "dtype": _dtype_name(dt), "methods": methods, "device": str(dev),
              "model": None if model is None else str(getattr(sm0, "name", model)),
              "n_samples": n, "prefix_len": prefix_len, "cont_len": cont_len,
              "repeats": repeats, "time_budget_s": time_budget, "memory_limit": capacity,
              "peak_tflops": peak, "recipe_batch": recipe_bs,
              "recipe_dtype": _dtype_name(recipe_dt), "memorized_fraction": memorized_fraction,
              "method_shapes": method_shapes, "seed": seed}
    results, skipped = [], []
    plan = []  # (shape, method, batch, dtype)
    limits = {m: {str(x).lower() for x in v} for m, v in (method_shapes or {}).items()}
    for shape in shape_objs:
        for m in methods:
            if m in limits and shape.name.lower() not in limits[m]:
                continue
            if m == RECIPE:
                plan.append((shape, m, recipe_bs, recipe_dt))
            else:
                plan.extend((shape, m, b, dt) for b in bss)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="memtax bench", unit="run", dynamic_ncols=True)

    try:
        for shape in shape_objs:
            todo = [x for x in plan if x[0] is shape]
            # the recipe in another dtype runs last, on a model of its own
            todo.sort(key=lambda x: x[3] != dt)
            ctx, ctx_dtype, tokens = None, None, None
            backbone_extra: dict[int, int | None] = {}
            for _, m, b, mdt in todo:
                entry = {"shape": shape.name, "method": m, "batch": b, "dtype": _dtype_name(mdt),
                         "params": shape.matmul_params}
                est = estimate_memory(shape, m, b, mdt, prefix_len, cont_len)
                entry["est_mem"] = est
                if est > capacity:
                    entry["skipped"] = (f"estimated {est / GiB:.1f} GiB > {capacity / GiB:.1f} "
                                        "GiB available")
                    skipped.append(entry)
                    say(f"skip {shape.name} {m} batch {b}: {entry['skipped']}")
                    if bar:
                        bar.update(1)
                    continue
                try:
                    if ctx is None or ctx_dtype != mdt:
                        ctx = hf = sm = None  # drop the previous model before the next one
                        _free(dev)
                        if sm0 is not None:
                            sm = sm0 if mdt == dt else load_model(sm0.model, dtype=mdt, device=dev)
                            hf = sm.model
                        else:
                            hf = build_model(shape, mdt, dev, seed=seed)
                            sm = wrap_model(hf, name=f"pythia-{shape.name}-random")
                        ctx = Context(hf, sm, prefix_len, cont_len, sm.eos_token_id)
                        ctx_dtype = mdt
                        if tokens is None:
                            tokens = make_samples(hf, n, prefix_len=prefix_len, cont_len=cont_len,
                                                  seed=seed, memorized_fraction=memorized_fraction)
                    meas = _measure(METHODS[m], ctx, tokens, b, repeats=repeats,
                                    time_budget=time_budget)
                    if m in ("memtax_exact", "hf_forward") and dev.type == "cuda":
                        if b not in backbone_extra:
                            backbone_extra[b] = _backbone_extra(ctx, tokens, min(b, len(tokens)))
                        meas["backbone_extra_mem"] = backbone_extra[b]
                except Exception as exc:
                    if isinstance(exc, ValueError) and "not available" in str(exc):
                        entry["skipped"] = f"not available: {exc}"
                    elif _is_oom(exc):
                        entry["skipped"] = f"out of memory ({type(exc).__name__})"
                    else:
                        raise
                    skipped.append(entry)
                    say(f"skip {shape.name} {m} batch {b}: {entry['skipped']}")
                    _free(dev)
                    if bar:
                        bar.update(1)
                    continue
                results.append(_result_row(entry, meas, shape, prefix_len, cont_len, peak))
                say(f"{shape.name} {m} batch {b}: {results[-1]['samples_per_s']:.1f} samples/s")
                if bar:
                    bar.update(1)
            ctx = hf = sm = None
            _free(dev)
            if on_shape is not None:  # a snapshot after every shape (e.g. to survive a timeout)
                on_shape(_assemble(env, config, results, skipped, complete=False))
    finally:
        if bar:
            bar.close()

    return _assemble(env, config, results, skipped, complete=True)


def _assemble(env: dict, config: dict, results: list[dict], skipped: list[dict], *,
              complete: bool) -> dict:
    """The report dict from the measurements so far (agreement, summary, targets added)."""
    results = [dict(r) for r in results]
    report = {"env": env, "config": config, "complete": complete, "results": results,
              "skipped": list(skipped)}
    _add_agreement(report)
    report["summary"] = _summary(report)
    report["targets"] = evaluate_targets(report)
    return report


def _result_row(entry: dict, meas: dict, shape: Shape, p: int, c: int, peak: float | None) -> dict:
    labels = meas.pop("labels")
    n, sec = meas["n_samples"], meas["seconds"]
    flops = method_flops(entry["method"], shape, p, c, match_len=labels.get("match_len"),
                         n_samples=n)
    tflops = flops / sec / 1e12
    row = {**entry, **meas, "samples_per_s": n / sec, "tokens_per_s": n * (p + c) / sec,
           "flops": flops, "tflops": tflops, "mfu": tflops / peak if peak else None,
           "gpu_hours_pile": gpu_hours(n / sec)}
    if row.get("backbone_extra_mem") is not None and row.get("extra_mem") is not None:
        row["head_mem"] = max(row["extra_mem"] - row["backbone_extra_mem"], 0)
    if "batch_used" in labels:
        row["batch_used"] = int(labels.pop("batch_used"))
    row["_labels"] = labels
    return row


def _add_agreement(report: dict) -> None:
    """Per result, the share of rows whose labels equal memtax_exact's (exact_match,
    match_len) and the generating methods' gen_score (same shape and dtype only; rows in
    common). Labels then leave the report (they are per-row arrays)."""
    rows = report["results"]
    for r in rows:
        ref = next((x for x in rows if x["shape"] == r["shape"] and x["dtype"] == r["dtype"]
                    and x["method"] == "memtax_exact"), None)
        gen_ref = next((x for x in rows if x["shape"] == r["shape"] and x["dtype"] == r["dtype"]
                        and "gen_score" in x["_labels"] and x is not r), None)
        lab = r["_labels"]
        if ref is not None and ref is not r:
            k = min(len(lab["exact_match"]), len(ref["_labels"]["exact_match"]))
            same = (lab["exact_match"][:k] == ref["_labels"]["exact_match"][:k]) & (
                lab["match_len"][:k] == ref["_labels"]["match_len"][:k])
            r["agree_exact"] = float(same.mean()) if k else None
        if gen_ref is not None and "gen_score" in lab:
            g = gen_ref["_labels"]["gen_score"]
            k = min(len(lab["gen_score"]), len(g))
            r["agree_gen"] = float(np.isclose(lab["gen_score"][:k], g[:k]).mean()) if k else None
        r["memorized"] = int(np.asarray(lab["exact_match"]).sum())
    for r in rows:
        r.pop("_labels")


def _best(rows: list[dict], shape: str, method: str) -> dict | None:
    cand = [r for r in rows if r["shape"] == shape and r["method"] == method]
    return max(cand, key=lambda r: r["samples_per_s"]) if cand else None


def _summary(report: dict) -> list[dict]:
    """Per shape: the best batch of every method, its speed-ups over every baseline's best,
    and the GPU-hours to score the Pile's 146M training sequences."""
    rows = report["results"]
    out = []
    for shape in report["config"]["shapes"]:
        for method in report["config"]["methods"]:
            best = _best(rows, shape, method)
            if best is None:
                continue
            s = {"shape": shape, "method": method, "batch": best["batch"], "dtype": best["dtype"],
                 "samples_per_s": best["samples_per_s"], "tflops": best["tflops"],
                 "mfu": best["mfu"], "gpu_hours_pile": best["gpu_hours_pile"],
                 "peak_mem": best["peak_mem"], "speedup": {}}
            for base in BASELINES:
                b = _best(rows, shape, base)
                if b is not None and base != method:
                    s["speedup"][base] = best["samples_per_s"] / b["samples_per_s"]
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Targets (issue 5: H100/H200, bf16, 32+32 tokens)


def evaluate_targets(report: dict) -> list[dict]:
    """The issue's targets, each met / missed / not measured, with the measured value."""
    rows = report["results"]
    cfg = report["config"]
    on_gpu = str(cfg["device"]).startswith("cuda")
    out = []

    def add(name, value, threshold, unit=""):
        status = "not measured" if value is None else ("met" if value >= threshold else "missed")
        out.append({"target": name, "value": value, "threshold": threshold, "unit": unit,
                    "status": status})

    def speed(shape, method):
        b = _best(rows, shape, method)
        return b["samples_per_s"] if b else None

    ex160 = speed("160m", "memtax_exact")
    add("160m exact samples/s", ex160, 30000.0, "samples/s")
    nc160 = speed("160m", RECIPE)
    add("160m exact vs uncached recipe", ex160 / nc160 if ex160 and nc160 else None, 20.0, "x")
    b12 = _best(rows, "12b", "memtax_exact")
    add("12b exact MFU", b12["mfu"] if b12 else None, 0.5)
    for shape in ("160m", "410m"):
        ex, hf = speed(shape, "memtax_exact"), speed(shape, "hf_forward")
        add(f"{shape} exact vs hf_forward", ex / hf if ex and hf else None, 1.3, "x")
        ratio = None
        for b in sorted({r["batch"] for r in rows if r["shape"] == shape}, reverse=True):
            e = next((r for r in rows if r["shape"] == shape and r["batch"] == b
                      and r["method"] == "memtax_exact"), None)
            h = next((r for r in rows if r["shape"] == shape and r["batch"] == b
                      and r["method"] == "hf_forward"), None)
            if e and h and e.get("head_mem") is not None and h.get("head_mem") is not None:
                ratio = h["head_mem"] / max(e["head_mem"], 1)
                break
        add(f"{shape} head memory hf_forward / exact", ratio, 5.0, "x")
    if not on_gpu or cfg["dtype"] != "bf16":
        for t in out:
            t["note"] = "targets are for H100/H200 in bf16; this run is " + (
                f"{cfg['device']} {cfg['dtype']}")
            if t["value"] is not None:  # a value, but not one the target speaks about
                t["status"] = "n/a"
    return out


# ---------------------------------------------------------------------------------------------
# Environment and output


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _nvidia_driver() -> str | None:
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device | str = "cpu") -> dict:
    """GPU name, driver, peak, library versions, git commit: what a result needs to be read."""
    import transformers

    dev = torch.device(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:  # pragma: no cover - triton is a dependency
        triton_version = None
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": str(dev),
        "gpu": None, "driver": None, "cuda": torch.version.cuda, "peak_tflops": None,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "triton": triton_version,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "commit": commit, "dirty": bool(dirty) if dirty is not None else None,
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["driver"] = _nvidia_driver()
        env["gpu_memory"] = torch.cuda.get_device_properties(dev).total_memory
        env["peak_tflops"] = peak_tflops_for(env["gpu"])
    return env


def _fmt(v, spec: str = ".1f", none: str = "–") -> str:
    return none if v is None else format(v, spec)


def _gib(v) -> str:
    return "–" if v is None else f"{v / GiB:.2f}"


def to_markdown(report: dict) -> str:
    """The report as markdown: environment, every measurement, the summary with speed-ups and
    Pile projections, skipped runs, targets."""
    env, cfg = report["env"], report["config"]
    hw = env["gpu"] or f"CPU ({env['cpu']}, {env['cpu_count']} cores)"
    lines = [
        f"# memtax bench: {hw}",
        "",
        f"{env['date']}; torch {env['torch']}, triton {env['triton']}, transformers "
        f"{env['transformers']}, driver {env['driver'] or '–'}, commit "
        f"{(env['commit'] or 'unknown')[:12]}{' (dirty)' if env['dirty'] else ''}; dtype "
        f"{cfg['dtype']}, {cfg['prefix_len']}+{cfg['cont_len']} tokens, peak "
        f"{_fmt(cfg['peak_tflops'], '.0f')} TFLOP/s (dense bf16)"
        + ("" if report.get("complete", True) else "; PARTIAL: the run has not finished"),
        "",
        "| shape | method | dtype | batch | samples/s | tokens/s | TFLOP/s | MFU | peak GiB "
        "| extra GiB | head GiB | agree | n |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        agree = r.get("agree_exact")
        lines.append(
            f"| {r['shape']} | {r['method']} | {r['dtype']} | {r.get('batch_used', r['batch'])} | "
            f"{r['samples_per_s']:,.1f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.3f} | "
            f"{_fmt(r['mfu'] and 100 * r['mfu'], '.1f')}{'%' if r['mfu'] else ''} | "
            f"{_gib(r['peak_mem'])} | {_gib(r['extra_mem'])} | {_gib(r.get('head_mem'))} | "
            f"{_fmt(agree and 100 * agree, '.1f')}{'%' if agree else ''} | {r['n_samples']} |"
        )
    lines += ["", "## Best batch per method: speed-ups and the Pile projection", "",
              "GPU-hours to score Pythia's 146,432,000 training sequences (143,000 steps x "
              "1,024) on one such device.", "",
              "| shape | method | batch | samples/s | vs hf_forward | vs hf_generate "
              "| vs nocache recipe | GPU-hours (Pile) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in report["summary"]:
        sp = s["speedup"]
        lines.append(
            f"| {s['shape']} | {s['method']} | {s['batch']} | {s['samples_per_s']:,.1f} | "
            + " | ".join(_fmt(sp.get(b), ".2f") + ("x" if b in sp else "") for b in BASELINES)
            + f" | {s['gpu_hours_pile']:,.1f} |"
        )
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['shape']} {s['method']} batch {s['batch']} {s['dtype']}: {s['skipped']}"
                  for s in report["skipped"]]
    lines += ["", "## Targets (H100/H200, bf16)", "", "| target | value | threshold | status |",
              "| --- | ---: | ---: | --- |"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['value'], ',.2f')} | {t['threshold']:,} "
                     f"{t['unit']} | {t['status']} |")
    if report["targets"] and report["targets"][0].get("note"):
        lines += ["", f"Note: {report['targets'][0]['note']}."]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "unknown"


def write_report(report: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `bench-<device>-<date>.json` and `.md` into out_dir (each to a temporary name,
    then renamed, so no partial file is left). Returns (json path, markdown path)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    env = report["env"]
    hw = _slug(env["gpu"] or "cpu")
    stamp = env["date"].replace(":", "").replace("-", "")
    base = out / f"bench-{hw}-{stamp}"
    paths = (base.with_suffix(".json"), base.with_suffix(".md"))
    texts = (json.dumps(report, indent=1, default=_json_default) + "\n", to_markdown(report))
    for path, text in zip(paths, texts):
        write_bytes_atomic(path, text.encode())
    return paths


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
