# The template's own tasks; `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-fast lint bench clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv with the template's tools and the generated project's dependencies

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --group dev
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/pre-commit install; fi
	touch $@

demo: setup ## Render the defaults, start the service with its dev SMTP server, send a notification, show it arrived
	$(BIN)/python scripts/demo.py

test: setup ## Run every template test (renders, generated suites, hooks, browser, Celery with Redis)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup ## The template tests without the slow fresh-virtualenv ones
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not slow"

lint: setup ## Lint the template's own code and run its pre-commit hooks (secret scanning included)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pre-commit run --all-files

bench: setup ## Run the delivery benchmarks (prints msg/s), the rate limiter's cost, template rendering and attachment memory
	$(BIN)/python benchmarks/bench_send.py
	$(BIN)/python benchmarks/bench_e2e.py
	$(BIN)/python benchmarks/bench_limits.py
	$(BIN)/python benchmarks/bench_templates.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache artifacts
