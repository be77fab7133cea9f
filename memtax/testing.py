"""Models and samples for tests, benchmarks and `memtax bench`: nothing is downloaded.

    tiny_model(arch)        a tiny random-initialised fp32 causal LM of each family in ARCHS
    build_model(shape, ...) a random-weight GPT-NeoX of a `memtax.bench.Shape` (Pythia sizes),
                            built directly in its dtype on its device
    hf_greedy(model, ...)   Hugging Face `generate`'s greedy continuation, EOS forbidden as in
                            Pythia's evaluation (the reference every scorer is compared with)
    make_samples(model, n)  random rows with a share planted to be memorized, and copies of
                            those that first diverge at a known position
    memorization_rows(...)  memorized, changed-at-a-known-position and random rows, n of each
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ARCHS", "tiny_config", "tiny_model", "build_model", "hf_greedy", "make_samples",
           "memorization_rows"]

ARCHS = ("gpt_neox", "llama", "gpt2", "opt")


def tiny_config(arch: str, vocab_size: int = 301, hidden: int = 64, layers: int = 2,
                heads: int = 4, max_positions: int = 256, eos_token_id: int | None = 0):
    """A small config of `arch`. Vocabularies are small but not powers of two, so chunked and
    tiled code sees ragged tails."""
    import transformers

    if arch == "gpt_neox":
        return transformers.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=4 * hidden,
            max_position_embeddings=max_positions, rotary_pct=0.25, use_parallel_residual=True,
            tie_word_embeddings=False, eos_token_id=eos_token_id, bos_token_id=eos_token_id,
        )
    if arch == "llama":
        return transformers.LlamaConfig(
            vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
            intermediate_size=2 * hidden, max_position_embeddings=max_positions,
            tie_word_embeddings=True, eos_token_id=eos_token_id, bos_token_id=eos_token_id,
        )
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=heads,
            n_positions=max_positions, eos_token_id=eos_token_id, bos_token_id=eos_token_id,
        )
    if arch == "opt":
        return transformers.OPTConfig(
            vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, ffn_dim=4 * hidden, max_position_embeddings=max_positions,
            word_embed_proj_dim=hidden, eos_token_id=eos_token_id, bos_token_id=eos_token_id,
            pad_token_id=1,
        )
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


def tiny_model(arch: str = "gpt_neox", seed: int = 0, **config_kwargs):
    """A random-initialised fp32 causal LM of `arch` in eval mode (transformers' own init,
    seeded through torch's global generator)."""
    import transformers

    torch.manual_seed(seed)
    config = tiny_config(arch, **config_kwargs)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.eval()
    return model


@torch.no_grad()
def build_model(shape, dtype: torch.dtype, device: torch.device | str, seed: int = 0):
    """A random-weight GPT-NeoX of `shape` (a `memtax.bench.Shape`), built directly in `dtype`
    on `device`.

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


@torch.inference_mode()
def hf_greedy(model, prompts, cont_len: int, *, forbid_eos: bool = True,
              use_cache: bool = True) -> np.ndarray:
    """HF `generate`'s greedy continuation (B, cont_len) of equal-length prompts (B, P) (numpy or
    a tensor; moved to the model's device), as an int64 numpy array.

    forbid_eos: `min_length` keeps the EOS token out of every step, as Pythia's evaluation did
        (`min_length=64`). Without it a row may stop early; the missing tokens read -1.
    use_cache: False is Pythia's own recipe (`use_cache=False`, every step re-runs the whole
        sequence).
    """
    from transformers import GenerationConfig

    device = model.get_output_embeddings().weight.device
    prompt = torch.as_tensor(prompts, dtype=torch.long).to(device)
    eos = getattr(model.config, "eos_token_id", None)  # as engine.models reads it
    if eos is None:
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    pad = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
    total = prompt.shape[1] + cont_len
    cfg = GenerationConfig(
        do_sample=False, num_beams=1, max_length=total, min_length=total if forbid_eos else 0,
        use_cache=use_cache, eos_token_id=eos, pad_token_id=pad if pad is not None else 0,
        temperature=None, top_p=None, top_k=None,
    )
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=cfg)
    gen = out[:, prompt.shape[1]:].cpu().numpy()
    if gen.shape[1] < cont_len:  # stopped at EOS everywhere: pad with -1 (never a token)
        gen = np.pad(gen, ((0, 0), (0, cont_len - gen.shape[1])), constant_values=-1)
    return gen


def make_samples(model, n: int, *, prefix_len: int, cont_len: int, seed: int = 0,
                 memorized_fraction: float = 0.01, batch_size: int = 64) -> np.ndarray:
    """(n, P+C) int64 samples: random tokens, except a `memorized_fraction` of rows whose
    continuation is the model's own greedy continuation (`hf_greedy`, EOS forbidden as in
    Pythia's evaluation) and as many copies of those with one continuation token changed at a
    known position (so rows first diverge at positions other than 0).

    Token 0 (Pythia's EOS) is never drawn, so prompts look like mid-document text.
    """
    rng = np.random.default_rng(seed)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    tokens = rng.integers(1, vocab, size=(n, prefix_len + cont_len), dtype=np.int64)
    k = min(int(round(memorized_fraction * n)), n // 2)
    if k == 0:
        return tokens
    rows = rng.choice(n, size=2 * k, replace=False)
    mem, changed = rows[:k], rows[k:]
    for s in range(0, k, batch_size):
        r = mem[s : s + batch_size]
        tokens[r, prefix_len:] = hf_greedy(model, tokens[r, :prefix_len], cont_len)
    # a copy of a memorized row with continuation token j replaced: match_len = j
    tokens[changed] = tokens[mem]
    pos = rng.integers(0, cont_len, size=k)
    old = tokens[changed, prefix_len + pos]
    tokens[changed, prefix_len + pos] = 1 + (old % (vocab - 1))  # a different non-EOS token
    return tokens


def memorization_rows(model, *, prefix_len: int, cont_len: int, vocab: int, n: int, seed: int,
                      low: int = 1):
    """(memorized, changed, change_pos, random): `n` rows each. Memorized rows continue their
    random prompt with the model's own greedy output; changed rows are those with the token at a
    known continuation position replaced by a different one."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(low, vocab, size=(n, prefix_len))
    cont = hf_greedy(model, prompts, cont_len)
    memorized = np.concatenate([prompts, cont], axis=1)
    pos = rng.integers(0, cont_len, size=n)
    pos[0], pos[-1] = 0, cont_len - 1  # both ends
    changed = memorized.copy()
    for i, j in enumerate(pos):
        changed[i, prefix_len + j] = (changed[i, prefix_len + j] + 1 + rng.integers(0, vocab - 2)) % vocab
        if changed[i, prefix_len + j] == 0 and low:  # keep EOS out of the rows
            changed[i, prefix_len + j] = 1 if memorized[i, prefix_len + j] != 1 else 2
    rand = rng.integers(low, vocab, size=(n, prefix_len + cont_len))
    return memorized, changed, pos, rand
