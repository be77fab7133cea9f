"""Timing and memory of one method: warm up, size the run to a time budget, take the median.

Memory: on CUDA `torch.cuda.max_memory_allocated` during the timed runs (`peak_mem`) and its
excess over what was allocated before (`extra_mem`); `backbone_extra` is the extra memory of a
backbone-only pass at the same batch (the report subtracts it to get what the head costs).
On a CPU, `PeakRSS` samples the process's resident memory (the pytest benchmarks use it).
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from memtax.bench.methods import Context, Method

__all__ = ["measure", "backbone_extra", "free_memory", "PeakRSS"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Collect garbage and, on CUDA, return cached blocks (between models and after an OOM)."""
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


def _seconds_per_batch(method: Method, ctx: Context, tokens: np.ndarray, batch: int) -> float:
    """A warm-up on one batch, timed and scaled to a full batch."""
    dev = ctx.device
    # On CUDA the warm-up must see the real batch shape (kernel autotuning, allocator); on a
    # CPU a few rows pay the one-time costs, and scaling their time up errs on the long side.
    warm = batch if dev.type == "cuda" else min(batch, 4)
    t_warm, _, _, _ = _timed(lambda: method.run(ctx, tokens[:warm], warm), dev)
    if dev.type == "cuda":  # the first call autotunes kernels: time a second one for sizing
        t_warm, _, _, _ = _timed(lambda: method.run(ctx, tokens[:warm], warm), dev)
    return t_warm * batch / warm


def measure(method: Method, ctx: Context, tokens: np.ndarray, batch: int, *, repeats: int,
            time_budget: float) -> dict:
    """Warm up on one batch, size the run to the time budget, then time `repeats` full runs
    over the same rows; the median time counts."""
    batch = min(batch, len(tokens))
    t_batch = _seconds_per_batch(method, ctx, tokens, batch)
    n_batches = math.ceil(len(tokens) / batch)
    fit = max(1, int(time_budget / max(t_batch, 1e-9)))
    n_batches = max(1, min(n_batches, fit))
    rows = tokens[: n_batches * batch]
    reps = max(1, min(repeats, int(time_budget / max(t_batch * n_batches, 1e-9))))
    times, peaks, extras, labels = [], [], [], None
    for _ in range(reps):
        dt, labels, peak, extra = _timed(lambda: method.run(ctx, rows, batch), ctx.device)
        times.append(dt)
        peaks.append(peak)
        extras.append(extra)
    return {"seconds": statistics.median(times), "times": times, "n_samples": len(rows),
            "repeats": reps, "peak_mem": max(peaks) if peaks[0] is not None else None,
            "extra_mem": max(extras) if extras[0] is not None else None, "labels": labels}


@torch.inference_mode()
def backbone_extra(ctx: Context, tokens: np.ndarray, batch: int) -> int | None:
    """Extra CUDA bytes of the backbone alone over one batch (the baseline for head memory)."""
    if ctx.device.type != "cuda":
        return None
    L = ctx.prefix_len + ctx.cont_len
    t = torch.from_numpy(tokens[:batch, : L - 1]).to(ctx.device)
    _, _, _, extra = _timed(lambda: ctx.sm.backbone(t).hidden.sum(), ctx.device)
    return extra


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size above the level at entry while the block runs, sampled by a
    thread every `interval` seconds: `peak`, `base` and `extra` (= peak - base) in bytes."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.extra = self.peak - self.base
