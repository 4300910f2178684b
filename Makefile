# The few commands people type. `make run` and `make test` each set up everything they need.
PYTHON ?= python3
# Local development defaults; production sets its own environment (DEBUG=false, SECRET_KEY, ...).
DEBUG ?= true
export DEBUG
# The tests run against PostgreSQL (never SQLite); override for another server.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/quickbg
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install model run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

model: install
	$(PY) manage.py fetch_model

# `make run` listens on 127.0.0.1; `make run HOST=0.0.0.0` exposes it to the network (with a
# warning: a development server with a demo superuser).
HOST ?= 127.0.0.1
run: model
	$(PY) manage.py run_local --host $(HOST)

# REDIS_URL explicit: with it unset, settings would follow var/redis-url to `make run`'s Redis.
test: model
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	  REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} $(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .

bench: model
	$(PY) bench/pipeline.py

clean:
	rm -rf var logs/*.log
