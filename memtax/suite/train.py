"""Training one model of a suite: a GPT-NeoX (Pythia's architecture: rotary on a quarter of each
head, parallel residual, untied head) trained on the stream in order with AdamW, linear warm-up
and cosine or linear decay, bf16 autocast where the CPU multiplies bf16 natively.

Checkpoints are Hugging Face folders `<model_dir>/step<N>/` (weights + the tokenizer files); the
optimizer, scheduler, RNG state and loss history of the latest checkpoint sit in
`<model_dir>/resume.pt`, so a killed run continues from there and ends with the same weights
and losses as an unbroken one (the data is read in order, nothing is random after the seeded
initialisation, and each step runs the same operations).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.indexed_dataset import IndexedDataset
from engine.output import write_atomic
from kernels.capability import native_bf16
from memtax.suite.config import SuiteConfig

__all__ = [
    "make_model",
    "make_optimizer",
    "use_bf16",
    "train_model",
    "TrainResult",
    "checkpoint_dir",
    "RESUME_FILE",
]

RESUME_FILE = "resume.pt"


def checkpoint_dir(model_dir: str | os.PathLike, step: int) -> Path:
    return Path(model_dir) / f"step{int(step)}"


def make_model(size: tuple[int, int, int], *, vocab_size: int, seq_len: int, eot_id: int,
               seed: int):
    """A freshly initialised GPTNeoXForCausalLM (fp32) of `size` = (layers, hidden, heads);
    the initialisation draws from torch's RNG seeded with `seed`, leaving the caller's RNG as
    it was."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    layers, hidden, heads = size
    cfg = GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=seq_len,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(cfg)
    return model.float()


def _lr_factor(step: int, total: int, warmup: int, decay: str, floor: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if decay == "cosine" else 1.0 - frac
    return floor + (1.0 - floor) * shape


def make_optimizer(model, config: SuiteConfig, total_steps: int):
    """AdamW (no decay on biases and norms) and its warm-up + decay schedule (LambdaLR)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    plain = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay},
         {"params": plain, "weight_decay": 0.0}],
        lr=config.lr, betas=config.betas, eps=1e-8,
    )
    warmup = max(1, round(config.warmup * total_steps)) if config.warmup > 0 else 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total_steps, warmup, config.decay, config.min_lr_ratio)
    )
    return opt, sched


def use_bf16(autocast: str) -> bool:
    """Whether training runs under bf16 autocast ("auto": where the CPU has bf16 dot products)."""
    return autocast == "bf16" or (autocast == "auto" and native_bf16())


def _autocast(enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


@dataclass
class TrainResult:
    """What one training run did: per-step losses of all steps so far, and per checkpoint
    {step: {"loss": mean loss of the steps since the previous checkpoint}}, plus timings."""

    steps_done: int
    losses: list[float]
    checkpoints: dict[int, dict] = field(default_factory=dict)
    timings: dict[int, dict] = field(default_factory=dict)
    stopped_early: bool = False


def _save_checkpoint(model, folder: Path, tokenizer_dir: Path) -> None:
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _no_hf_progress():
            model.save_pretrained(tmp)
        for f in sorted(tokenizer_dir.iterdir()):
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _no_hf_progress():
    """Transformers' own progress bars off for one call (it draws one per saved file), restored
    after."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _save_resume(model_dir: Path, state: dict) -> None:
    write_atomic(model_dir / RESUME_FILE, lambda tmp: torch.save(state, tmp))


def _load_start(model_dir: Path, make: Callable, config: SuiteConfig, total: int):
    """(model, optimizer, scheduler, start step, losses, result) fresh or from resume.pt."""
    from transformers import GPTNeoXForCausalLM

    resume = model_dir / RESUME_FILE
    if resume.is_file():
        state = torch.load(resume, weights_only=False)
        step = int(state["step"])
        with _no_hf_progress():
            model = GPTNeoXForCausalLM.from_pretrained(checkpoint_dir(model_dir, step)).float()
        opt, sched = make_optimizer(model, config, total)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        result = TrainResult(step, list(state["losses"]), dict(state["checkpoints"]),
                             dict(state["timings"]))
        return model, opt, sched, result
    model = make()
    opt, sched = make_optimizer(model, config, total)
    return model, opt, sched, TrainResult(0, [], {}, {})


def train_model(
    stream_prefix: str | os.PathLike,
    model_dir: str | os.PathLike,
    size: tuple[int, int, int],
    config: SuiteConfig,
    *,
    vocab_size: int,
    eot_id: int,
    tokenizer_dir: str | os.PathLike,
    steps: list[int],
    on_checkpoint: Callable[[TrainResult], None] | None = None,
    stop_after: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train (or resume) one model on the stream, saving a checkpoint at every step in `steps`
    (ascending, starting with 0, ending with the total number of steps). `on_checkpoint` is
    called after each save; `stop_after` stops after the first checkpoint at or beyond that step
    (the run is left resumable)."""
    model_dir, tokenizer_dir = Path(model_dir), Path(tokenizer_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    ds = IndexedDataset(stream_prefix)
    seqs = ds.tokens.reshape(-1, config.seq_len)
    total, batch = steps[-1], config.batch_size
    make = lambda: make_model(size, vocab_size=vocab_size, seq_len=config.seq_len,  # noqa: E731
                              eot_id=eot_id, seed=config.seed)
    with torch.random.fork_rng(devices=[]):
        model, opt, sched, result = _load_start(model_dir, make, config, total)
        bf16 = use_bf16(config.autocast)
        ctx = _Loop(model, opt, sched, seqs, batch, config.grad_clip, bf16)
        save = _Saver(model, model_dir, tokenizer_dir, opt, sched, result, on_checkpoint)
        if result.steps_done == 0 and 0 not in result.checkpoints:
            save(0, None)
        with _bar(progress, total, result.steps_done, batch * config.seq_len, desc) as bar:
            for step in range(result.steps_done, total):
                t0 = time.perf_counter()
                result.losses.append(ctx.step(step))
                save.elapsed += time.perf_counter() - t0
                result.steps_done = step + 1
                bar.update(1)
                bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
                if step + 1 in steps:
                    save(step + 1, batch * config.seq_len)
                    if stop_after is not None and step + 1 >= stop_after and step + 1 < total:
                        result.stopped_early = True
                        break
    return result


class _Loop:
    """One optimizer step on batch `step` of the stream."""

    def __init__(self, model, opt, sched, seqs, batch, grad_clip, bf16):
        self.model, self.opt, self.sched = model, opt, sched
        self.seqs, self.batch, self.grad_clip, self.bf16 = seqs, batch, grad_clip, bf16
        model.train()

    def step(self, step: int) -> float:
        rows = self.seqs[step * self.batch : (step + 1) * self.batch]
        ids = torch.from_numpy(rows.astype(np.int64))
        with _autocast(self.bf16):
            loss = self.model(input_ids=ids, labels=ids).loss
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


class _Saver:
    """Saves checkpoint folders and the resume state; keeps per-checkpoint losses and rates."""

    def __init__(self, model, model_dir, tokenizer_dir, opt, sched, result, on_checkpoint):
        self.model, self.model_dir, self.tokenizer_dir = model, model_dir, tokenizer_dir
        self.opt, self.sched, self.result, self.on_checkpoint = opt, sched, result, on_checkpoint
        self.elapsed = 0.0
        self.last = max(result.checkpoints, default=0)

    def __call__(self, step: int, tokens_per_step: int | None) -> None:
        r = self.result
        interval = r.losses[self.last : step]
        r.checkpoints[step] = {"loss": float(np.mean(interval)) if interval else None}
        if tokens_per_step and self.elapsed > 0:
            r.timings[step] = {"tokens_per_s": tokens_per_step * (step - self.last) / self.elapsed,
                               "train_s": self.elapsed}
        self.elapsed, self.last = 0.0, step
        _save_checkpoint(self.model, checkpoint_dir(self.model_dir, step), self.tokenizer_dir)
        _save_resume(self.model_dir, {
            "step": step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "rng": torch.get_rng_state(), "losses": list(r.losses),
            "checkpoints": dict(r.checkpoints), "timings": dict(r.timings),
        })
        if self.on_checkpoint is not None:
            self.on_checkpoint(r)


def _bar(enabled: bool, total: int, initial: int, tokens_per_step: int, desc: str):
    from tqdm.auto import tqdm

    return _TokenBar(tqdm, enabled, total, initial, tokens_per_step, desc)


class _TokenBar:
    """tqdm over steps that shows tokens/s and the latest loss."""

    def __init__(self, tqdm, enabled, total, initial, tokens_per_step, desc):
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled,
                        dynamic_ncols=True)
        self.tokens_per_step = tokens_per_step
        self.t0, self.n = time.perf_counter(), 0
        self.loss = "-"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()

    def update(self, n: int) -> None:
        self.n += n
        self.bar.update(n)

    def set_postfix(self, loss: str, refresh: bool = False) -> None:
        rate = self.n * self.tokens_per_step / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix({"loss": loss, "tok/s": f"{rate:,.0f}"}, refresh=refresh)
