# The README's contract: `make demo` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG15_BIN ?= /usr/lib/postgresql/15/bin

.PHONY: demo test test-pg15 bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ocds-ingest demo

# The whole suite on the wheel's PostgreSQL 18, then the database tests again on PostgreSQL 15 (what RDS runs)
# when this machine has it.
test: $(STAMP)
	$(BIN)/python -m pytest -q
	@if [ -x $(PG15_BIN)/postgres ] && [ -z "$$TEST_DATABASE_URL" ]; then \
		echo "--- database tests on PostgreSQL 15 ($(PG15_BIN))"; \
		TEST_PG_BIN=$(PG15_BIN) $(BIN)/python -m pytest -q -m database; \
	else echo "--- PostgreSQL 15 not found in $(PG15_BIN) (or TEST_DATABASE_URL set): skipping the second run"; fi

bench: $(STAMP)
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .local build *.egg-info
