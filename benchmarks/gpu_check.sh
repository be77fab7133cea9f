#!/usr/bin/env bash
# memtax GPU check: one script, run from anywhere on a machine with one CUDA GPU.
#
#   bash benchmarks/gpu_check.sh                          # every section (kernels, decoding, verify, bench)
#   MEMTAX_GPU_SECTIONS="kernels decoding" bash benchmarks/gpu_check.sh  # some sections by name
#   MEMTAX_BENCH_SWEEP=1 bash benchmarks/gpu_check.sh      # also sweep the kernel's block sizes
#
# It installs nothing from the network: it uses the first of .venv/bin/python, python3, python
# whose torch sees a GPU; that python must already have torch (CUDA build), triton and pytest.
# Wheels in .whl/ (benchmarks/gpu_wheels.sh fetches what the lent H200's image lacks: rapidfuzz
# and this project's transformers) are installed into a temporary folder on PYTHONPATH first.
# Results go to benchmarks/results/<gpu>_<date>_*.{json,md}, and also to $OUT when it is set
# (the `device` tool brings back only $OUT); commit them under benchmarks/results/.
#
# On a lent device (the `device` tool; 15 minutes of device time per task, 10 per command), from
# the development machine: `bash benchmarks/gpu_wheels.sh`, then two calls (each well inside
# 10 minutes: kernels + decoding + verify about 6, bench at most 8 by its own timeout):
#   command: PYTHONUNBUFFERED=1 MEMTAX_GPU_SECTIONS="kernels decoding verify" bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check_kernels_decoding.log
#   command: PYTHONUNBUFFERED=1 MEMTAX_GPU_SECTIONS=bench bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check_bench.log
#   carry: [".whl"], timeout_s: 580
#
# Layout: a preamble (checks, shared settings), then one clearly marked section per topic
# (docs/notes/benchmarks.md). A new section goes before "Summary", following the same pattern:
# run their tests with `run_step`, write results under $RESULTS, never exit early.

set -uo pipefail

# ---------------------------------------------------------------------------------------------
# Preamble: interpreter, GPU present, shared settings
# ---------------------------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }
PY=""
for cand in .venv/bin/python "$(command -v python3)" "$(command -v python)"; do
    if [[ -n "$cand" && -x "$cand" ]] && has_cuda "$cand"; then PY="$cand"; break; fi
done
RESULTS="$ROOT/benchmarks/results"
mkdir -p "$RESULTS"
STAMP="$(mktemp)"  # results newer than this were written by this run (copied to $OUT at the end)
SECTIONS="${MEMTAX_GPU_SECTIONS:-kernels decoding verify bench}"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
# This checkout's packages for every step, installed or not (benchmarks/*.py run as scripts too).
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The compiled kernels, never the CPU interpreter.
export TRITON_INTERPRET=0
export TRITON_DEFAULT_FP_FUSION=1

if [[ -z "$PY" ]]; then
    echo "gpu_check.sh: no CUDA GPU visible (torch.cuda.is_available() is False for" \
         ".venv/bin/python, python3 and python); run this on a machine with an NVIDIA GPU" \
         "and a CUDA build of torch." >&2
    exit 1
fi
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    SITE="$(mktemp -d)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        "$ROOT"/.whl/*.whl || { echo "gpu_check.sh: installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c 'import torch, triton, transformers; print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {triton.__version__}  transformers {transformers.__version__}")'
echo "sections: $SECTIONS"

FAILED=()
run_step() {  # run_step NAME CMD...: run, time, and remember failures (never stop early)
    local name="$1"; shift
    local t0=$SECONDS
    echo; echo "=== $name ==="
    if "$@"; then echo "--- $name: ok ($((SECONDS - t0)) s)"
    else echo "--- $name: FAILED ($((SECONDS - t0)) s)"; FAILED+=("$name"); fi
}

# ---------------------------------------------------------------------------------------------
# kernels: fused LM-head kernel (kernels/fused_head*.py; docs/notes/kernels.md)
#   tests: CUDA kernel vs a float64 reference in fp32/fp16/bf16, ties, mask, O(N) memory
#   bench: Pythia head shapes d=512..5120, V=50304, N=8192 and 32768 in bf16, against
#          torch matmul + argmax + logsumexp; table printed and written to $RESULTS
# ---------------------------------------------------------------------------------------------
if want kernels; then
    run_step "kernels: fused_head CUDA tests (fp32/fp16/bf16)" \
        "$PY" -m pytest tests/test_kernels_fused_head.py -m gpu -q -p no:cacheprovider
    run_step "kernels: fused_head benchmark (Pythia head shapes, bf16)" \
        "$PY" benchmarks/bench_kernels.py --table --out "$RESULTS"
fi

# ---------------------------------------------------------------------------------------------
# decoding: free-running greedy scores, mode="generate" (engine/generate.py, engine/cascade.py,
#          engine/decode_cache.py, kernels/argmax_head*.py; docs/notes/decoding.md)
#   tests: resumed greedy decoding on the GPU (fp32) equals HF generate, with the lean loop
#          eagerly and with CUDA graphs (DecodeOptions(cuda_graphs=True)); the Triton argmax head
#          vs its torch twin (fp32/bf16, Pythia-160M head shape)
#   bench: engine.score(mode="generate") (every exact column + gen_score) with the lean loop,
#          the lean loop + CUDA graphs, and the dynamic loop (the first decoder), vs HF generate with its
#          KV cache and vs Pythia's use_cache=False recipe, Pythia-160M (and 70M) shape, bf16,
#          batch 1,024, 4,096 rows with ~1% and ~30% memorized; targets: >= 3x faster than
#          cached generate, >= 20x than the recipe. Table printed, JSON written to $RESULTS.
#          If the graphs variant wins, make it the default (engine/options.py, cuda_graphs).
# ---------------------------------------------------------------------------------------------
if want decoding; then
    run_step "decoding: generate mode / lean loop / argmax head on CUDA" \
        "$PY" -m pytest tests/test_generate_hf.py tests/test_decode_cache.py tests/test_argmax_head.py \
        -m gpu -q -p no:cacheprovider
    run_step "decoding: generate mode vs HF generate, decode loops (bf16, batch 1024)" \
        env MEMTAX_BENCH_BIG=1 MEMTAX_BENCH_BATCH=1024 MEMTAX_BENCH_ROWS=4096 \
        MEMTAX_BENCH_DTYPE=bf16 MEMTAX_BENCH_ROUNDS=3 \
        "$PY" -m pytest benchmarks/bench_generate.py -k "generate_vs_hf or decode_loops" -q -s \
        -p no:cacheprovider \
        --benchmark-disable-gc --benchmark-json="$RESULTS/$(date +%Y%m%d)_generate_mode.json"
fi

# ---------------------------------------------------------------------------------------------
# bench: memtax bench, throughput vs baselines (memtax/bench/, memtax/commands/bench.py;
#        docs/notes/benchmarks.md)
#   tests: CUDA memory columns; the head memory of HF forward vs memtax exact
#   bench: `memtax bench --quick` on CUDA = Pythia 160M/410M/12B shapes, bf16, batch 256 and
#          1,024, random weights, 32+32 tokens: all five methods at 160M (the uncached recipe in
#          fp16 at batch 1,024), exact/forward/cached generate at 410M, exact + forward at 12B.
#          Prints the table, the Pile projection and the H100/H200 targets (met/missed) and
#          writes bench-<gpu>-<date>.{json,md} to $RESULTS. Budget: under 8 minutes (timeout).
# ---------------------------------------------------------------------------------------------
if want bench; then
    run_step "bench: CUDA tests" \
        "$PY" -m pytest tests/test_bench_run.py -m gpu -q -p no:cacheprovider
    run_step "bench: memtax bench --quick (160m/410m/12b, bf16)" \
        timeout 480 "$PY" -m memtax bench --device cuda --quick --out "$RESULTS"
fi

# ---------------------------------------------------------------------------------------------
# verify: verification on first use (kernels/verify.py, engine/decode_cache.py CheckedReplays;
#         docs/notes/kernels.md "Verification on first use"), about 1 minute
#   tests: both Triton heads pass their first-use check against the torch twins in
#          fp32/fp16/bf16 (split and single-program launches); real CUDA graphs pass their
#          first-replay check and a corrupted one falls back to eager (HF generate's tokens);
#          engine.score in generate mode records head_impl = decode_head_impl = "triton"
#   check: one scoring run with the check on (the default) whose metadata must say triton
# ---------------------------------------------------------------------------------------------
if want verify; then
    run_step "verify: first-use checks of the Triton heads and CUDA graphs" \
        "$PY" -m pytest tests/test_verify_kernels.py tests/test_verify_graphs.py \
        tests/test_verify_engine.py -m gpu -q -p no:cacheprovider
    run_step "verify: engine.score with verify on records head_impl = triton (bf16)" \
        "$PY" -c 'import numpy as np, engine, memtax.testing as mt; t = engine.score(mt.tiny_model("gpt_neox", vocab_size=50304, hidden=256), np.random.default_rng(0).integers(1, 50304, (512, 64)), device="cuda", dtype="bf16", verify=True, progress=False); h = t.schema.metadata[b"head_impl"].decode(); print("head_impl:", h); assert h == "triton", h'
fi

# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
echo
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then  # the device tool brings back only $OUT
    find "$RESULTS" -type f -newer "$STAMP" -exec cp {} "$OUT"/ \;
    echo "results of this run copied to \$OUT: $(find "$RESULTS" -type f -newer "$STAMP" | wc -l) file(s)"
fi
if ((${#FAILED[@]})); then
    echo "gpu_check.sh: ${#FAILED[@]} step(s) failed: ${FAILED[*]}" >&2
    exit 1
fi
echo "gpu_check.sh: all steps passed in ${SECONDS} s; results under $RESULTS"
