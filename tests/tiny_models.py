"""Tiny random-initialised causal LMs of each supported architecture, built from configs.

Shared by every test that needs a model: nothing is downloaded. `tiny_model(arch)` returns an
fp32 model in eval mode. Vocabularies are small but not powers of two, so chunked/tiled code
sees ragged tails.
"""

from __future__ import annotations

import torch
import transformers

ARCHS = ("gpt_neox", "llama", "gpt2", "opt")


def tiny_config(arch: str, vocab_size: int = 301, hidden: int = 64, layers: int = 2,
                heads: int = 4, max_positions: int = 256, eos_token_id: int | None = 0):
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
    """A random-initialised fp32 causal LM in eval mode. Weights are scaled up a little so the
    greedy output is not nearly constant (random init logits are otherwise almost flat)."""
    torch.manual_seed(seed)
    config = tiny_config(arch, **config_kwargs)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.eval()
    return model
