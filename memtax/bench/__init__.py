"""Throughput of memtax scoring against the usual ways of doing it, per model shape and GPU.

`run_bench` builds each model shape with random weights (throughput does not depend on the
weights), makes one set of samples per shape, and measures every method of `METHODS` in the
same run, on the same rows (memtax's exact and generate modes, HF forward + argmax, HF generate
with and without its KV cache); each returns its labels, so the run also checks that they agree.

    shapes       Shape, the Pythia shapes, the FLOP model, GPU peaks, memory estimates
    methods      the methods and what they share (Context)
    measure      timing and memory of one method
    run          run_bench: plan, build, measure, skip what does not fit
    report       agreement, summary, targets, markdown and JSON files
    environment  GPU, driver, versions, commit

Tokens/s counts the L tokens of each scored sample. The FLOP formula is in
`memtax.bench.shapes`; the measured figures and their commands are in docs/notes/benchmarks.md.
"""

from memtax.bench.environment import environment
from memtax.bench.methods import BASELINES, METHODS, RECIPE, RECIPE_BATCH, Context, Method
from memtax.bench.report import evaluate_targets, to_markdown, write_report
from memtax.bench.run import run_bench
from memtax.bench.shapes import (
    GPU_PEAK_TFLOPS,
    PILE_SEQUENCES,
    PYTHIA_SHAPES,
    GiB,
    Shape,
    estimate_memory,
    forward_flops,
    gpu_hours,
    memory_capacity,
    method_flops,
    peak_tflops_for,
    shape_from_model,
)

__all__ = [
    "Shape", "PYTHIA_SHAPES", "METHODS", "BASELINES", "RECIPE", "RECIPE_BATCH", "Context",
    "Method", "GPU_PEAK_TFLOPS", "PILE_SEQUENCES", "GiB", "peak_tflops_for", "forward_flops",
    "method_flops", "estimate_memory", "memory_capacity", "shape_from_model", "run_bench",
    "to_markdown", "write_report", "environment", "evaluate_targets", "gpu_hours",
]
