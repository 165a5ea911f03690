# The README's two commands: `make run` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: setup system-deps run test dev bench clean-state

setup: $(VENV)/.installed

# torch is pinned to the local CPU build (see README); other machines may use any torch >= 2.3.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,deploy]"
	touch $@

# Debian packages the tests start: PostgreSQL and chromium (installed only when missing).
system-deps:
	@bash .ci/system-deps.sh

run: setup
	mkdir -p $(DAGSTER_HOME)
	$(PY) -m genoembed_assets.cli demo

test: setup system-deps
	$(PY) -m pytest -ra

dev: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev

clean-state:
	rm -rf dagster_home results .tmp_dagster_home*
