# The two set-up commands of the README: `make demo` and `make test`. Both install what
# they need into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The suite runs against real PostgreSQL and Redis (see README, "Tests").
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install demo demo-distributed bench test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The embedded worker and beat log every periodic job at INFO: the demo shows warnings only.
demo: install
	DEBUG=$${DEBUG:-1} LOG_LEVEL=$${LOG_LEVEL:-WARNING} $(BIN)/python manage.py demo --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

# The distributed mode on one machine: PostgreSQL and Redis (local by default), gunicorn,
# two workers, a housekeeper and a beat as separate processes.
DEMO_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator_demo
DEMO_BROKER_URL ?= redis://127.0.0.1:6379/1

demo-distributed: install
	DEBUG=$${DEBUG:-1} DATABASE_URL=$(DEMO_DATABASE_URL) CELERY_BROKER_URL=$(DEMO_BROKER_URL) \
		$(BIN)/python manage.py demo --distributed --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

# Benchmarks (docs/performance.md): a database and a Redis key prefix of their own.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator_bench
BENCH_BROKER_URL ?= redis://127.0.0.1:6379/2

bench: install
	DEBUG=0 DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
		CELERY_KEY_PREFIX=orc-bench: LOG_LEVEL=WARNING $(BIN)/python manage.py bench $(BENCH_ARGS)

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
