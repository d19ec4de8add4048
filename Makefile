# The two set-up commands of the README: `make demo` and `make test`. Both install what
# they need into .venv first.
# The system's Python 3.11 first: the task sandbox runs the worker's interpreter as the
# tenants' unprivileged uids, which cannot read one installed under a private home
# directory (pyenv's ~/.pyenv, say). Any other 3.11 works where they can read it.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The suite runs against real PostgreSQL and Redis (see README, "Tests").
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# The suite's processes (pytest-xdist): each has its own test database and its workers
# their own Redis keys. 0 runs it in one process.
TEST_PROCESSES ?= 2

.PHONY: install compiler sandbox-tool browser demo demo-distributed bench test lint format openapi clean

install: $(STAMP) $(BIN)/orc-sandbox-init

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The task sandbox's PID 1, compiled (runs/tasktypes/sandbox_init.c): about 16 ms less CPU
# per shell or python task than supervise.py, which the workers use where it is missing
# (TASK_SANDBOX_INIT, docs/deployment.md). Static where the C library allows it.
CC ?= cc
INIT_CFLAGS := -O2 -Wall -Wextra
$(BIN)/orc-sandbox-init: runs/tasktypes/sandbox_init.c $(STAMP)
	@if command -v $(CC) >/dev/null 2>&1; then \
		$(CC) $(INIT_CFLAGS) -static -o $@ $< 2>/dev/null || $(CC) $(INIT_CFLAGS) -o $@ $<; \
	else \
		echo "note: no C compiler ($(CC)): sandboxes use supervise.py as PID 1, about 16 ms more CPU per task (apt-get install gcc libc6-dev)"; \
	fi

# What the suite needs from the system, installed with apt-get as root: $(call
# APT_INSTALL,packages,message,what then) prints the message and does `what then` (exit 1,
# or true where the suite goes on without it) elsewhere.
APT_INSTALL = if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y --no-install-recommends $(1) >/dev/null \
		|| { apt-get update >/dev/null && apt-get install -y --no-install-recommends $(1) >/dev/null; }; \
	else \
		echo "$(2)"; $(3); \
	fi

# The suite runs every sandbox test over the compiled PID 1 too: it needs a C compiler
# (`make install` alone only notes its absence).
compiler:
	@command -v $(CC) >/dev/null 2>&1 || { $(call APT_INSTALL,gcc libc6-dev,a C compiler is needed for the suite: sudo apt-get install -y gcc libc6-dev,exit 1); }

sandbox-tool:
	@command -v bwrap >/dev/null 2>&1 || { $(call APT_INSTALL,bubblewrap,bubblewrap (bwrap) is needed: sudo apt-get install -y bubblewrap,exit 1); }

# The portal's browser tests drive Debian's Chromium (Playwright downloads no browser):
# installed here as root; elsewhere the browser tests are skipped without it (not in CI).
browser:
	@test -x /usr/bin/chromium || { $(call APT_INSTALL,chromium fonts-liberation fonts-dejavu-core,note: the browser tests need Chromium (sudo apt-get install -y chromium); skipping them,true); }

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

# Benchmarks (docs/performance.md): a database and a Redis key prefix of their own, and
# DEBUG=0 as in production, so a SECRET_KEY of their own too (a random one unless set):
# with DEBUG=0 the web server, workers and beat refuse the built-in development key.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator_bench
BENCH_BROKER_URL ?= redis://127.0.0.1:6379/2

bench: install
	DEBUG=0 DATABASE_URL=$(BENCH_DATABASE_URL) CELERY_BROKER_URL=$(BENCH_BROKER_URL) \
		SECRET_KEY=$${SECRET_KEY:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')} \
		CELERY_KEY_PREFIX=orc-bench: LOG_LEVEL=WARNING $(BIN)/python manage.py bench $(BENCH_ARGS)

# The suite runs with the task sandbox on: it needs bubblewrap (installed here as root).
test: compiler install sandbox-tool browser
	DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

# The committed OpenAPI document (docs/api.md): regenerate it after changing the API.
openapi: install
	DEBUG=0 $(BIN)/python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
