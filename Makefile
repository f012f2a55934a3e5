# The README's contract: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG15_BIN ?= /usr/lib/postgresql/15/bin
# pyenv installs versions side by side; its shim answers only for the selected one, so look for the binary.
PYTHON313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13))
VENV313 := .venv313
STAMP313 := $(VENV313)/.installed

.PHONY: demo test test-py313 bench build build-HarvestFunction build-WorkerFunction build-CompileFunction build-MigrateFunction lint clean stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ocds-ingest demo

$(STAMP313): pyproject.toml
	$(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/pip install --quiet --upgrade pip
	$(VENV313)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP313)

# The whole suite on the wheel's PostgreSQL 18; the database tests again on PostgreSQL 15 (RDS runs 15-17) when
# this machine has it; and the whole suite on Python 3.13, the Lambda runtime, when this machine has it.
test: $(STAMP)
	$(BIN)/python -m pytest -q
	@if [ -x $(PG15_BIN)/postgres ] && [ -z "$$TEST_DATABASE_URL" ]; then \
		echo "--- database tests on PostgreSQL 15 ($(PG15_BIN))"; \
		TEST_PG_BIN=$(PG15_BIN) $(BIN)/python -m pytest -q -m database; \
	else echo "--- PostgreSQL 15 not found in $(PG15_BIN) (or TEST_DATABASE_URL set): skipping that run"; fi
	@if [ -n "$(PYTHON313)" ] && $(PYTHON313) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
		$(MAKE) --no-print-directory test-py313; \
	else echo "--- $(PYTHON313) not found: skipping the Python 3.13 run"; fi

test-py313: $(STAMP313)
	@echo "--- the whole suite on Python 3.13 (the Lambda runtime)"
	$(VENV313)/bin/python -m pytest -q

# The Lambda package for python3.13 on arm64 (pip cross-install, without what the runtime provides, byte-compiled).
build: $(STAMP)
	$(BIN)/python tools/build_lambda.py $(PYTHON313)

# `sam build` (BuildMethod: makefile) calls build-<Function> with ARTIFACTS_DIR: the same lean package.
build-HarvestFunction build-WorkerFunction build-CompileFunction build-MigrateFunction: $(STAMP)
	$(BIN)/python tools/build_lambda.py $(PYTHON313) --into "$(ARTIFACTS_DIR)"

# `make bench ARGS=--quick` for a smoke run (written to build/, not over the tracked bench/results.json).
bench: $(STAMP)
	$(BIN)/python bench/run.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# The embedded PostgreSQL is stopped and its data deleted first (as root its data is under /var/tmp/ocds-ingest).
clean:
	@if [ -x $(BIN)/ocds-ingest ]; then $(BIN)/ocds-ingest server stop --delete; fi
	@if [ -x $(VENV313)/bin/ocds-ingest ]; then $(VENV313)/bin/ocds-ingest server stop --delete; fi
	rm -rf $(VENV) $(VENV313) .local build *.egg-info
