# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
TOOLING := $(VENV)/.test-installed
NODE_DEPS := tests/conformance/node_modules/.installed
# The browser the sign-in tests drive: Debian's, never one a test tool downloads.
CHROMIUM := /usr/bin/chromium
ARGS ?=

.PHONY: run test lint unit conformance bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TOOLING): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(RUNTIME) $@

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(NODE_DEPS): tests/conformance/package.json tests/conformance/package-lock.json
	cd tests/conformance && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(RUNTIME)
	$(BIN)/spky mcp serve $(ARGS)

lint: $(TOOLING)
	$(BIN)/ruff check sp00ky_mcp tests bench
	$(BIN)/ruff format --check sp00ky_mcp tests bench
	$(BIN)/mypy

unit: $(TOOLING) $(CHROMIUM)
	$(BIN)/pytest -m "not conformance"

conformance: $(TOOLING) $(NODE_DEPS)
	$(BIN)/pytest -m conformance --no-cov

test: lint $(NODE_DEPS) $(CHROMIUM)
	$(BIN)/pytest

BENCH := $(VENV)/.bench-installed

$(BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,bench]'
	touch $(TOOLING) $(RUNTIME) $@

bench: $(BENCH)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench

soak: $(TOOLING)
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) tests/conformance/node_modules .pytest_cache .mypy_cache .ruff_cache .coverage
