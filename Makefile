# The two front doors: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-sqlite test-postgres lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: fresh SQLite database, demo data, server + local Slack sandbox on :3000
demo: install
	$(BIN)/o2c demo

## make test: lint, then the whole suite on SQLite and on PostgreSQL
test: install lint test-sqlite test-postgres

lint: install
	$(BIN)/ruff check .

test-sqlite: install
	O2C_TEST_DB=sqlite $(BIN)/python -m pytest -q

# Uses O2C_TEST_PG_URL when set (CI starts a server); otherwise the suite starts a private
# PostgreSQL from the machine's binaries. Without PostgreSQL installed this fails loudly:
# install Debian's `postgresql` package (as .ci/run does).
test-postgres: install
	O2C_TEST_DB=postgresql $(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/digest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts *.db *.db-wal *.db-shm
