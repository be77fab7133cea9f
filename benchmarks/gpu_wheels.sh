#!/usr/bin/env bash
# Fetch, on the development machine, the wheels that the lent H200's image lacks for
# benchmarks/gpu_check.sh, into .whl/ (git-ignored; the `device` tool carries it with
# carry: [".whl"], and gpu_check.sh installs it into a temporary folder on PYTHONPATH).
#
# The image (see the device tool's KINDS.md) is Python 3.12 with torch, triton, transformers
# 5.17, tokenizers 0.23, huggingface_hub 1.33, safetensors 0.8, numba, pyarrow, pytest,
# pytest-benchmark, hypothesis. memtax also needs rapidfuzz (generate mode's edit distance) and
# the transformers it is developed against (its Cache API: engine/decode_cache.py), which needs
# nothing newer than the image holds. About 17 MB, inside the tool's 64 MiB per call.
#
#   bash benchmarks/gpu_wheels.sh            # versions from .venv (or the defaults below)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
version() {  # installed version in .venv, else the default given
    local v
    v="$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null)" \
        || v="$2"
    echo "$v"
}
TRANSFORMERS="$(version transformers 5.24.0)"
RAPIDFUZZ="$(version rapidfuzz 3.14.6)"
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl \
    "transformers==$TRANSFORMERS" "rapidfuzz==$RAPIDFUZZ"
ls -l .whl
echo "now, with the device tool: carry [\".whl\"] and run benchmarks/gpu_check.sh (see its header)"
