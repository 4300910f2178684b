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

.PHONY: install lock model run test lint bench clean

# Exactly the versions in the lock, each checked against its sha256 (the Docker image installs
# requirements.lock the same way); then a check that the lock still covers pyproject.toml.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip check
	$(PY) deploy/check_lock.py
	touch $(STAMP)

install: $(STAMP)

# After changing dependencies in pyproject.toml: re-resolve both locks (with hashes, for every
# platform). The dev lock is constrained by the runtime one, so tests run what the image runs.
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==0.13.9
	$(VENV)/bin/uv pip compile pyproject.toml --generate-hashes --universal \
		--python-version 3.11 -q -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 -c requirements.lock -q -o requirements-dev.lock

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
