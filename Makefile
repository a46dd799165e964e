# `make demo` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup services demo test lint bench bench-scale clean

$(BIN)/regionflow: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,servers,dask]'
	@touch $@

setup: $(BIN)/regionflow

# etcd backs the routing control tests, PostgreSQL the StateStore contract tests and Chromium the console's browser tests;
# install or start them when absent.
services:
	@bash scripts/ensure-services.sh
	@bash scripts/ensure-browser.sh

demo: setup
	@bash scripts/drill-demo.sh

test: setup services
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_architecture.py
	@# The in-process suites (unit, contract) run on two workers; the integration tests, which start whole
	@# stacks and measure RTOs, run one at a time after them. Both always run; either failing fails.
	@$(BIN)/python -m pytest -q -n 2 tests/unit tests/contract; a=$$?; \
	  $(BIN)/python -m pytest -q --durations=25 tests/integration; b=$$?; \
	  test $$a -eq 0 -a $$b -eq 0

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_architecture.py

bench: setup
	$(BIN)/python benchmarks/pipeline.py --rows 400000 1000000
	$(BIN)/python benchmarks/end_to_end.py --rows 1000000
	$(BIN)/python benchmarks/ledger_commit.py --transfers 2000

# Several minutes: 10M rows on a Dask cluster of 1, 2 and 4 workers, on a SeaweedFS S3 store.
bench-scale: setup
	$(BIN)/python benchmarks/scale.py --rows 10000000 --workers 1 2 4

clean:
	rm -rf $(VENV) demo-out test-artifacts .pytest_cache .ruff_cache .hypothesis .mypy_cache
