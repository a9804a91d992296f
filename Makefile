# callme: `make run` serves the API locally, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
TOOLS     ?= .tools
PYTHON    ?= $(shell scripts/find-python)
PY313     := $(shell scripts/find-python 3.13)
BIN       := $(VENV)/bin
SAM       := $(TOOLS)/sam/bin/sam
CHECKOV   := $(TOOLS)/checkov/bin/checkov
CHROMIUM  := /usr/bin/chromium
PYTEST_ARGS ?=
TEST_WORKERS ?= 2   # make test spreads the suite over this many pytest-xdist workers (0: one process)

.PHONY: help run test test-unit test-integration test-e2e lint format validate build deploy bench bench-smoke clean

help: ## this menu
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements-dev.txt functions/requirements.txt
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11+ found (tried python3.13, 3.12, 3.11 on PATH and in pyenv)"; exit 1; }
	@echo "creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

# SAM CLI and checkov each get a virtual environment of their own: their pins clash with the project's.
# They are made with the same interpreter as .venv (any python3 on PATH may be too old, or a pyenv shim).
$(SAM): requirements-sam.txt
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11+ found (tried python3.13, 3.12, 3.11 on PATH and in pyenv)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/python -m pip install --quiet -r requirements-sam.txt
	@touch $@

$(CHECKOV): requirements-checkov.txt
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11+ found (tried python3.13, 3.12, 3.11 on PATH and in pyenv)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/python -m pip install --quiet -r requirements-checkov.txt
	@touch $@

# The console's browser tests drive Debian's chromium through Playwright (which never downloads a browser).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the console's browser tests"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "error: the console's browser tests need Debian's chromium at $(CHROMIUM); install it as root: apt-get install --no-install-recommends chromium"; \
		exit 1; \
	fi

run: $(BIN)/.installed ## run callme locally: API on 127.0.0.1:6777, embedded DynamoDB, dispatcher
	$(BIN)/python -m local

test: $(BIN)/.installed $(SAM) $(CHECKOV) $(CHROMIUM) ## run the whole test suite (lint, unit, integration, template, e2e)
	$(MAKE) --no-print-directory lint
	PATH="$(TOOLS)/sam/bin:$(TOOLS)/checkov/bin:$$PATH" CALLME_PY313="$(PY313)" \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-unit: $(BIN)/.installed ## only the unit tests (fast)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(BIN)/.installed ## only the handler tests against moto
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(BIN)/.installed $(CHROMIUM) ## only the end-to-end tests against the local stack
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

lint: $(BIN)/.installed ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(BIN)/.installed ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: $(SAM) ## sam validate --lint (cfn-lint included)
	$(SAM) validate --lint --region us-east-1

build: $(SAM) ## sam build (needs python3.13 on PATH; found in pyenv when installed there)
	@test -n "$(PY313)" || { echo "error: sam build needs python3.13 (Lambda's runtime); install it, e.g. 'pyenv install 3.13'"; exit 1; }
	PATH="$(dir $(PY313)):$$PATH" $(SAM) build

deploy: build ## sam deploy --guided (needs AWS credentials)
	$(SAM) deploy --guided

bench: $(BIN)/.installed ## the benchmark: prints a table, writes bench/results.json
	$(BIN)/python -m bench

bench-smoke: $(BIN)/.installed ## a tiny run of the benchmark, so that it cannot rot
	$(BIN)/python -m bench --smoke

clean: ## remove virtual environments, build output and local state
	rm -rf $(VENV) $(TOOLS) .aws-sam .callme .pytest_cache .mypy_cache .ruff_cache
