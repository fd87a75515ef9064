# `make demo` and `make test` set everything up themselves (a project virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; override on a GPU host, e.g. TORCH_SPEC="torch==2.13.0"
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: venv demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[server,dev,llm]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python -m ppo_server.demo --repository build/demo_repository --work build/demo

test: venv
	$(BIN)/python -m pytest -q -ra

bench: venv
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/scoring_throughput.py

clean:
	rm -rf build .pytest_cache
