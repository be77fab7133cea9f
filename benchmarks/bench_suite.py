"""The suite trainer's tokens/s next to a plain Hugging Face training loop, same run.

Both train the same GPTNeoXForCausalLM (same seeded initialisation, same batches of a random
stream, same AdamW, bf16 autocast where the CPU multiplies bf16 natively): the plain loop is
`model(input_ids=x, labels=x).loss.backward(); opt.step()`, the trainer is
memtax.suite.train.train_model (which adds the schedule, clipping, loss bookkeeping and the
progress bar; its checkpoint saves are not counted, its own timings exclude them). Rounds
alternate between the two after one warm-up round of each; the best round of each is compared
(on a shared machine the best is the least disturbed) and the trainer must not be slower than
the plain loop (15% noise margin).

    .venv/bin/pytest benchmarks/bench_suite.py -p no:cacheprovider -q -s

Environment: MEMTAX_BENCH_SIZES (default "mini,small": memtax.suite presets),
MEMTAX_BENCH_STEPS (30 per round), MEMTAX_BENCH_ROUNDS (3).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from memtax.suite import SIZE_PRESETS, SuiteConfig
from memtax.suite.stream import write_stream
from memtax.suite.train import make_model, train_model, use_bf16

VOCAB, SEQ_LEN, BATCH = 2048, 129, 16
pytestmark = pytest.mark.timeout(3600)


def _plain_loop(size, config, seqs, steps) -> float:
    """Tokens/s of the plain loop over the first `steps` batches."""
    model = make_model(size, vocab_size=VOCAB, seq_len=SEQ_LEN, eot_id=0, seed=config.seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas)
    bf16 = use_bf16(config.autocast)
    t0 = time.perf_counter()
    for step in range(steps):
        ids = torch.from_numpy(seqs[step * BATCH : (step + 1) * BATCH].astype(np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * BATCH * SEQ_LEN / (time.perf_counter() - t0)


def _trainer(size, config, prefix, tokenizer_dir, model_dir, steps) -> float:
    result = train_model(prefix, model_dir, size, config, vocab_size=VOCAB, eot_id=0,
                         tokenizer_dir=tokenizer_dir, steps=[0, steps], progress=False)
    return result.timings[steps]["tokens_per_s"]


@pytest.mark.parametrize("size_name", [s for s in os.environ.get(
    "MEMTAX_BENCH_SIZES", "mini,small").split(",") if s])
def test_trainer_vs_plain_loop(benchmark, size_name, tmp_path):
    size = SIZE_PRESETS[size_name]
    steps = int(os.environ.get("MEMTAX_BENCH_STEPS", "30"))
    rounds = int(os.environ.get("MEMTAX_BENCH_ROUNDS", "3"))
    config = SuiteConfig(sizes={size_name: size}, vocab_size=VOCAB, seq_len=SEQ_LEN,
                         batch_size=BATCH, lr=1e-3)
    seqs = np.random.default_rng(0).integers(1, VOCAB, (steps * BATCH, SEQ_LEN)).astype(np.uint16)
    prefix = tmp_path / "stream" / "document"
    write_stream(prefix, seqs, np.arange(len(seqs)))
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    _plain_loop(size, config, seqs, 2)  # warm-up: oneDNN primitives, allocator
    _trainer(size, config, prefix, tokenizer_dir, tmp_path / "warm", 2)
    plain, ours = [], []
    for r in range(rounds):
        plain.append(_plain_loop(size, config, seqs, steps))
        ours.append(_trainer(size, config, prefix, tokenizer_dir, tmp_path / f"m{r}", steps))
    plain_tps, ours_tps = max(plain), max(ours)
    ratio = ours_tps / plain_tps
    print(f"\n[{size_name}] suite trainer {ours_tps:,.0f} tok/s, plain HF loop {plain_tps:,.0f} "
          f"tok/s, ratio {ratio:.2f} (bf16 autocast: {use_bf16('auto')})", flush=True)
    benchmark.extra_info.update(size=size_name, trainer_tokens_per_s=round(ours_tps),
                                plain_tokens_per_s=round(plain_tps), ratio=round(ratio, 3),
                                steps=steps, rounds=rounds, batch=BATCH, seq_len=SEQ_LEN,
                                threads=torch.get_num_threads())
    assert ratio >= 0.85, f"suite trainer {ours_tps:,.0f} tok/s < 0.85 x plain loop {plain_tps:,.0f}"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
