# `make demo` and `make test` set everything up themselves (a project virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override on a GPU host, e.g. TORCH_SPEC="torch==2.13.0"
TORCH_SPEC ?= torch==2.13.0
# llama-cpp-python compiles llama.cpp at install time. A native build (-march=native) can crash on
# CPUs other than the one it was built on, and even on its own (seen on AVX-512/AMX hosts), so the
# default is a portable build (AVX2 kernels). For a native build: make LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON
LLAMA_SPEC ?= llama-cpp-python[server]==0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# Built wheels are kept per build flags, so a venv rebuild does not recompile and a change of flags does.
LLAMA_WHEELS ?= $(HOME)/.cache/ppo-t2i/llama-wheels/$(shell printf '%s %s' '$(LLAMA_SPEC)' '$(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
# Torch held to the kernels of a CPU without AVX-512: `make test` runs the `isa` tests again under it.
AVX2_ONLY = ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: venv llama demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(MAKE) --no-print-directory llama
	$(BIN)/python -m pip install --quiet -e ".[server,dev,llm,app,postgres]"
	touch $(STAMP)

# Build (once per flags) and install llama-cpp-python; pip's own cache is bypassed because it keys
# built wheels by version only, so it would hand back a wheel built with other flags.
llama:
	test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl 2>/dev/null)" || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
		--wheel-dir $(LLAMA_WHEELS) "$(LLAMA_SPEC)"
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet "$(LLAMA_SPEC)"

venv: $(STAMP)

demo: venv
	$(BIN)/ppo-demo run --repository build/demo_repository --work build/demo

test: venv
	$(BIN)/ruff check client server_export demo tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra
	$(AVX2_ONLY) $(BIN)/python -m pytest -q -ra -m isa

bench: venv
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/scoring_throughput.py

clean:
	rm -rf build .pytest_cache
