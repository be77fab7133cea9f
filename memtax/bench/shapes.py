"""Model shapes, the FLOP model, GPU peaks and memory estimates of `memtax bench`.

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
Projection: GPU-hours to score the 146,432,000 sequences Pythia trained on (143,000 steps x
1,024) = N / (samples/s) / 3600.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import torch

__all__ = [
    "Shape", "PYTHIA_SHAPES", "METHOD_NAMES", "GPU_PEAK_TFLOPS", "PILE_SEQUENCES", "GiB",
    "shape_from_model", "peak_tflops_for", "forward_flops", "method_flops", "gpu_hours",
    "estimate_memory", "memory_capacity",
]

# Pythia: 143,000 steps of 1,024 sequences of 2,049 tokens.
PILE_SEQUENCES = 143_000 * 1024
GiB = 1024**3
# The methods `memtax bench` measures (memtax.bench.methods.METHODS runs them), in report order.
METHOD_NAMES = ("memtax_exact", "memtax_generate", "hf_forward", "hf_generate",
                "hf_generate_nocache")


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
        return n_samples * forward_flops(shape, L - 1) + _decode_flops(shape, p, c, match_len)
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHOD_NAMES)}")


def _decode_flops(shape: Shape, p: int, c: int, match_len: np.ndarray) -> int:
    """FLOPs of decoding each row after its first mismatch m: tokens m+1..C-1, one step each."""
    step = [forward_flops(shape, 1, p + j - 1, 1) for j in range(c)]
    tail = np.concatenate([np.cumsum(step[::-1])[::-1], [0]])  # tail[k] = Σ_{j>=k} step[j]
    m = np.clip(np.asarray(match_len, dtype=np.int64), 0, c)
    return sum(int(tail[min(mm + 1, c)]) for mm in m.tolist())


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
    e = dtype.itemsize
    d, L = shape.hidden, prefix_len + cont_len
    w = shape.total_params * e if weights else 0

    def act(tokens: int) -> int:  # one layer live at a time: residual, QKV, MLP, scores
        return batch * tokens * (8 * d + 2 * shape.ff) * e + batch * shape.heads * tokens**2 * 4

    hidden_out = batch * L * d * e
    kv = 2 * shape.layers * batch * L * d * e
    step_logits = 3 * batch * shape.vocab * 4  # fp32 logits + processors' copies
    head_tiles = 4096 * 2048 * 4               # the fused head's chunk of fp32 logits
    extra = {
        "memtax_exact": lambda: act(L) + hidden_out + head_tiles + 2 * d * 4096 * 4,
        "memtax_generate": lambda: act(L) + hidden_out + head_tiles + 2 * kv + step_logits,
        "hf_forward": lambda: (act(L) + hidden_out + batch * (L - 1) * shape.vocab * e
                               + batch * L * 8),
        "hf_generate": lambda: act(prefix_len) + kv + step_logits,
        "hf_generate_nocache": lambda: act(L) + step_logits,
        "backbone": lambda: act(L) + hidden_out,
    }
    if method not in extra:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHOD_NAMES)}")
    return int(w + 1.25 * extra[method]())


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
