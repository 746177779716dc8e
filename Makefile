# The two front doors: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-sqlite test-postgres test-dates test-date-next-year \
        test-date-leap-day lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make demo: fresh SQLite database, demo data, server + local Slack sandbox on :3000
## (another port: `make demo PORT=3001`, as `o2c serve` honours PORT)
demo: install
	$(BIN)/o2c demo $(if $(PORT),--port $(PORT),)

## make test: lint, then the suite on PostgreSQL and on SQLite, side by side (much of the
## suite waits on sockets, processes and the database, not CPU); each run's output is printed
## whole when it ends. `make test WITH_DATES=1` (CI) adds, in a third lane, the SQLite suite on
## 2028-02-29: a leap day more than a year ahead, so that nothing may depend on today's date
## (`make test-dates` also runs it a year from today). A fourth run in CI saturated the two
## cores: measured 2026-12-06, four lanes made each SQLite run 16-17 min instead of 8.5.
TEST_RUNS := test-postgres test-sqlite
LANES := 2
ifdef WITH_DATES
TEST_RUNS += test-date-leap-day
LANES := 3
endif
test: install lint
	$(MAKE) -j$(LANES) --output-sync=target $(TEST_RUNS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

# Each run ends with its slowest tests, so a CI log shows where its minutes go (the whole
# CI run within 20 minutes on 2 cores).
PYTEST_TIMES ?= --durations=15

test-sqlite: install
	O2C_TEST_DB=sqlite $(BIN)/python -m pytest -q $(PYTEST_TIMES)

# Uses O2C_TEST_PG_URL when set (CI starts a server); otherwise the suite starts a private
# PostgreSQL from the machine's binaries. Without PostgreSQL installed this fails loudly:
# install Debian's `postgresql` package (as .ci/run does).
# This run is there for what SQLite hides (type limits, concurrency, locking, plans): it runs
# the tests that use the database (tests/conftest.py), each property-based test with half of
# its examples and the API fuzz with 20 per operation; the SQLite run tries all of them.
test-postgres: install
	O2C_TEST_DB=postgresql O2C_TEST_EXAMPLES_PCT=50 O2C_FUZZ_EXAMPLES=20 \
	  $(BIN)/python -m pytest -q $(PYTEST_TIMES)

# The suite passes whatever the real date is (SPEC §5.10): the SQLite suite once more a year
# ahead, and once on a leap day. O2C_TEST_TODAY travels the tests and every process they start.
NEXT_YEAR := $(shell date -u -d '+1 year' +%F 2>/dev/null || echo 2027-12-06)
# The two runs go side by side, as in `make test`.
test-dates: install
	$(MAKE) -j2 --output-sync=target test-date-next-year test-date-leap-day

# These runs prove that no test depends on today's date: each property-based test tries a
# quarter of its examples there (tests/support/examples.py), the API fuzz 10 per operation.
DATED := O2C_TEST_DB=sqlite O2C_TEST_EXAMPLES_PCT=25 O2C_FUZZ_EXAMPLES=10

test-date-next-year:
	$(DATED) O2C_TEST_TODAY=$(NEXT_YEAR) $(BIN)/python -m pytest -q $(PYTEST_TIMES)

test-date-leap-day:
	$(DATED) O2C_TEST_TODAY=2028-02-29 $(BIN)/python -m pytest -q $(PYTEST_TIMES)

bench: install
	$(BIN)/python bench/ack_latency.py
	$(BIN)/python bench/digest.py

# Only what make builds or the demo and the tests leave behind: never o2c.db (the default
# DATABASE_URL, i.e. real data) or any other database.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis test-artifacts build dist *.egg-info
	rm -f o2c-demo.db o2c-demo.db-wal o2c-demo.db-shm o2c-demo.db-journal .coverage
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
