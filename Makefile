# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench chaos screenshots tox-oldest compat-official clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Run the demo: embedded engine + an example app on free loopback ports, standard vs checkpointing.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## Run the default test suite (newest frameworks, one Python).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The dashboard screenshots in docs/img/, taken by the browser tests (needs Debian's chromium).
screenshots: $(STAMP)
	EAGERSTEP_SCREENSHOTS=1 $(BIN)/python -m pytest -q -m browser tests/dashboard

lint: $(STAMP)
	$(BIN)/ruff check eagerstep tests benchmarks example_projects scripts
	$(BIN)/mypy eagerstep

## Benchmarks: tables and ratios, written to benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## Fault injection: the HTTP fuzzers with more examples, then the fault x app x mode matrix, written to
## docs/reliability.md. Bounded: under ~10 minutes on 2 cores, loopback only.
CHAOS_ARGS ?= --runs 60 --in-flight 50 --fuzz-examples 300 --budget 500
chaos: $(STAMP)
	timeout 660 $(BIN)/python -m tests.chaos.matrix $(CHAOS_ARGS)

## The oldest supported framework versions (what CI runs besides `make test`).
# With pyenv, make every installed 3.10-3.13 interpreter visible to tox as python3.X.
PYENVS = $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare | grep -E '^3\.1[0-3]\.[0-9]+$$' | paste -sd: -)

tox-oldest: $(STAMP)
	PYENV_VERSION="$(PYENVS)" $(BIN)/tox -e django42-py310,flask23-py310,fastapi0100-py310

## The official inngest-py SDK's integration suite, unmodified, against `eagerstep dev`.
# INNGEST_PY_SRC=<a checkout of https://github.com/inngest/inngest-py>; without it, says how to get one.
compat-official: $(STAMP)
	INNGEST_PY_SRC="$(INNGEST_PY_SRC)" $(BIN)/python scripts/compat_official.py

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache
