# One command does it, here and in CI: `make run`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck services tools migrate bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

## run: start `jobsched standalone` (API, scheduler, worker on SQLite) on http://127.0.0.1:8080
run: $(VENV)/.installed
	$(BIN)/jobsched standalone

## services: make sure PostgreSQL, Redis and RabbitMQ answer, starting local ones that are stopped
services:
	bash scripts/ensure-services.sh

## tools: make sure promtool and chromium are installed (from Debian's packages when missing)
tools:
	bash scripts/ensure-tools.sh

## migrate: create or upgrade the schema of $$JOBSCHED_DATABASE_URL
migrate: $(VENV)/.installed
	bash scripts/migrate.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

## test: lint, type-check and run the whole suite against the real services
test: $(VENV)/.installed-dev services tools lint typecheck
	$(BIN)/pytest

## screenshots: regenerate docs/images/ (the dashboard's pages, by its browser tests, on SQLite)
screenshots: $(VENV)/.installed-dev services tools
	JOBSCHED_UI_SCREENSHOTS=$(CURDIR)/docs/images $(BIN)/pytest -q tests/e2e/ui/test_dashboard_pages.py -k sqlite

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed

## bench: run the benchmarks in bench/ (8-12 min, throw-away databases, Celery baseline in the same run); e.g. BENCH_ARGS="--window-seconds 30"
bench: $(VENV)/.installed-bench services
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
