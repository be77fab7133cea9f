"""`run_bench`: every method on every shape x batch size, on the same rows, in one process.

The steps: check the arguments and settle the run's settings (`_settings`), plan (shape, method,
batch, dtype) runs (`_plan`), then per shape build one random-weight model (or load the given
one), make its samples once, and measure each planned run (`_run_shape`). Before building a
shape or running a batch, `estimate_memory` is compared with the device's capacity; what does
not fit is skipped with the reason, and an out-of-memory error is caught and recorded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from engine.device import DTYPES, dtype_name, is_oom
from engine.models import load_model, resolve_device, wrap_model
from memtax.bench.environment import environment
from memtax.bench.measure import backbone_extra, free_memory, measure
from memtax.bench.methods import METHODS, RECIPE, RECIPE_BATCH, Context
from memtax.bench.report import assemble, result_row
from memtax.bench.roofline import roofline_gflops
from memtax.bench.shapes import (
    PYTHIA_SHAPES,
    GiB,
    Shape,
    estimate_memory,
    memory_capacity,
    shape_from_model,
)
from memtax.testing import build_model, make_samples

__all__ = ["run_bench"]


@dataclasses.dataclass
class _Settings:
    """One run's settings after validation (what the report's `config` records)."""

    device: torch.device
    dtype: torch.dtype
    methods: list[str]
    batch_sizes: list[int]
    n_samples: int
    prefix_len: int
    cont_len: int
    repeats: int
    time_budget: float
    capacity: int
    peak_tflops: float | None
    recipe_batch: int
    recipe_dtype: torch.dtype
    memorized_fraction: float
    method_shapes: dict[str, Sequence[str]] | None
    seed: int


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
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _check(methods: list[str], batch_sizes: Sequence[int], prefix_len, cont_len,
           peak_tflops) -> None:
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected some of {', '.join(METHODS)}")
    if not methods:
        raise ValueError("methods must name at least one method")
    if not batch_sizes or min(int(b) for b in batch_sizes) < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    for name, v in (("prefix_len", prefix_len), ("cont_len", cont_len)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if peak_tflops is not None and not peak_tflops > 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops!r}")


def _settings(args: dict[str, Any]) -> _Settings:
    """Validate `run_bench`'s keyword arguments and fill in the device-dependent defaults."""
    dev = resolve_device(args["device"])
    dt = _dtype(args["dtype"])
    methods = list(args["methods"])
    _check(methods, args["batch_sizes"], args["prefix_len"], args["cont_len"],
           args["peak_tflops"])
    bss = sorted({int(b) for b in args["batch_sizes"]})
    recipe_bs = args["recipe_batch"] or (RECIPE_BATCH if dev.type == "cuda" else bss[-1])
    need = max(bss) * 2
    if RECIPE in methods:
        need = max(need, recipe_bs)
    limit = args["memory_limit"]
    return _Settings(
        device=dev, dtype=dt, methods=methods, batch_sizes=bss,
        n_samples=args["n_samples"] or need, prefix_len=args["prefix_len"],
        cont_len=args["cont_len"], repeats=args["repeats"], time_budget=args["time_budget"],
        capacity=limit if limit is not None else memory_capacity(dev),
        peak_tflops=args["peak_tflops"], recipe_batch=recipe_bs,
        recipe_dtype=torch.float16 if dev.type == "cuda" else dt,
        memorized_fraction=args["memorized_fraction"], method_shapes=args["method_shapes"],
        seed=args["seed"])


def _config(st: _Settings, shapes: list[Shape], model_name: str | None) -> dict:
    """The settings as the report's `config`."""
    return {"shapes": [s.name for s in shapes], "batch_sizes": st.batch_sizes,
            "dtype": dtype_name(st.dtype), "methods": st.methods, "device": str(st.device),
            "model": model_name, "n_samples": st.n_samples, "prefix_len": st.prefix_len,
            "cont_len": st.cont_len, "repeats": st.repeats, "time_budget_s": st.time_budget,
            "memory_limit": st.capacity, "peak_tflops": st.peak_tflops,
            "recipe_batch": st.recipe_batch, "recipe_dtype": dtype_name(st.recipe_dtype),
            "memorized_fraction": st.memorized_fraction, "method_shapes": st.method_shapes,
            "seed": st.seed}


def _plan(st: _Settings, shapes: list[Shape]) -> list[tuple[Shape, str, int, torch.dtype]]:
    """(shape, method, batch, dtype) of every run: each method at every batch size, the
    uncached recipe once at its own batch and dtype, `method_shapes` limiting methods."""
    plan = []
    limits = {m: {str(x).lower() for x in v} for m, v in (st.method_shapes or {}).items()}
    for shape in shapes:
        for m in st.methods:
            if m in limits and shape.name.lower() not in limits[m]:
                continue
            if m == RECIPE:
                plan.append((shape, m, st.recipe_batch, st.recipe_dtype))
            else:
                plan.extend((shape, m, b, st.dtype) for b in st.batch_sizes)
    return plan


class _ShapeRun:
    """The runs of one shape: one model per dtype (built on first need), one set of samples."""

    def __init__(self, st: _Settings, shape: Shape, loaded):
        self.st, self.shape, self.loaded = st, shape, loaded
        self.ctx: Context | None = None
        self.ctx_dtype: torch.dtype | None = None
        self.tokens = None
        self.backbone_extra: dict[int, int | None] = {}

    def _context(self, dtype: torch.dtype) -> Context:
        st = self.st
        if self.ctx is None or self.ctx_dtype != dtype:
            self.ctx = None  # drop the previous model before the next one
            free_memory(st.device)
            if self.loaded is not None:
                sm = (self.loaded if dtype == st.dtype
                      else load_model(self.loaded.model, dtype=dtype, device=st.device))
                hf = sm.model
            else:
                hf = build_model(self.shape, dtype, st.device, seed=st.seed)
                sm = wrap_model(hf, name=f"pythia-{self.shape.name}-random")
            self.ctx = Context(hf, sm, st.prefix_len, st.cont_len, sm.eos_token_id)
            self.ctx_dtype = dtype
            if self.tokens is None:
                self.tokens = make_samples(hf, st.n_samples, prefix_len=st.prefix_len,
                                           cont_len=st.cont_len, seed=st.seed,
                                           memorized_fraction=st.memorized_fraction)
        return self.ctx

    def measure(self, method: str, batch: int, dtype: torch.dtype) -> dict:
        """The measurement of one planned run (raises what the method raises)."""
        ctx = self._context(dtype)
        meas = measure(METHODS[method], ctx, self.tokens, batch, repeats=self.st.repeats,
                       time_budget=self.st.time_budget)
        if method in ("memtax_exact", "hf_forward") and ctx.device.type == "cuda":
            if batch not in self.backbone_extra:
                self.backbone_extra[batch] = backbone_extra(ctx, self.tokens,
                                                            min(batch, len(self.tokens)))
            meas["backbone_extra_mem"] = self.backbone_extra[batch]
        return meas

    def close(self) -> None:
        self.ctx = self.tokens = None
        free_memory(self.st.device)


def _skip_reason(exc: Exception) -> str | None:
    """Why a failed run is recorded as skipped; None for an error that is a real one."""
    if isinstance(exc, ValueError) and "not available" in str(exc):
        return f"not available: {exc}"
    if is_oom(exc):
        return f"out of memory ({type(exc).__name__})"
    return None


def _run_shape(st: _Settings, shape: Shape, todo: list, loaded, peak, results: list,
               skipped: list, say: Callable[[str], None], tick: Callable[[], None]) -> None:
    """Every planned run of one shape, appending to `results` / `skipped`."""
    # the recipe in another dtype runs last, on a model of its own
    todo = sorted(todo, key=lambda x: x[3] != st.dtype)
    roofline = None
    if st.device.type == "cpu" and not st.peak_tflops:
        # a CPU's practical peak: the bf16 GEMM rate of this shape, measured now
        tokens = max(st.batch_sizes) * (st.prefix_len + st.cont_len - 1)
        roofline = roofline_gflops(shape.hidden, shape.ff, shape.vocab, tokens)["roofline"] / 1e3
        peak = roofline
        say(f"{shape.name}: measured bf16 GEMM roofline {roofline * 1e3:.0f} GFLOP/s "
            f"(load average {os.getloadavg()[0]:.1f})")
    runner = _ShapeRun(st, shape, loaded)
    for _, m, b, mdt in todo:
        entry = {"shape": shape.name, "method": m, "batch": b, "dtype": dtype_name(mdt),
                 "params": shape.matmul_params}
        est = estimate_memory(shape, m, b, mdt, st.prefix_len, st.cont_len)
        entry["est_mem"] = est
        if est > st.capacity:
            entry["skipped"] = (f"estimated {est / GiB:.1f} GiB > {st.capacity / GiB:.1f} "
                                "GiB available")
        else:
            try:
                meas = runner.measure(m, b, mdt)
            except Exception as exc:
                reason = _skip_reason(exc)
                if reason is None:
                    raise
                entry["skipped"] = reason
                free_memory(st.device)
        if "skipped" in entry:
            skipped.append(entry)
            say(f"skip {shape.name} {m} batch {b}: {entry['skipped']}")
        else:
            results.append(result_row(entry, meas, shape, st.prefix_len, st.cont_len, peak))
            if roofline is not None:   # mfu is then the fraction of the measured roofline
                results[-1].update(roofline_tflops=roofline, load_average=os.getloadavg()[0])
            say(f"{shape.name} {m} batch {b}: {results[-1]['samples_per_s']:.1f} samples/s")
        tick()
    runner.close()


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
    st = _settings(locals())  # every argument, by name
    env = environment(st.device)
    peak = st.peak_tflops or env.get("peak_tflops")
    st.peak_tflops = peak
    if model is not None:
        loaded = load_model(model, dtype=st.dtype, device=st.device)
        shape_objs = [shape_from_model(loaded.model, name=loaded.name)]
    else:
        loaded, shape_objs = None, _shape_list(shapes)
    config = _config(st, shape_objs, None if model is None
                     else str(getattr(loaded, "name", model)))
    plan = _plan(st, shape_objs)
    results, skipped = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="memtax bench", unit="run", dynamic_ncols=True)
    try:
        for shape in shape_objs:
            _run_shape(st, shape, [x for x in plan if x[0] is shape], loaded, peak, results,
                       skipped, log or (lambda s: None), bar.update if bar else (lambda: None))
            if on_shape is not None:  # a snapshot after every shape (e.g. to survive a timeout)
                on_shape(assemble(env, config, results, skipped, complete=False))
    finally:
        if bar:
            bar.close()
    return assemble(env, config, results, skipped, complete=True)
