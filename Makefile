# Stempel: `make demo` runs a hub and a simulated kiosk; `make test` runs the tests, `make test-fast` the quick ones.
# Each target installs what it needs: Debian packages, a .venv, the package itself.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
READY  := $(VENV)/.stempel-installed

.PHONY: demo test test-fast bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(READY): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

system-deps:
	@scripts/system-deps.sh

install: system-deps $(READY)

demo: system-deps $(READY)
	$(PY) -m cloud.demo

test: system-deps $(READY)
	@scripts/system-deps.sh test
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick loop: everything but the tests marked `slow` (they spawn brokers, workers, CLIs, or
# use PostgreSQL), on every core (pytest-xdist). Under 20 s on a 2-core machine.
test-fast: system-deps $(READY)
	@scripts/system-deps.sh test
	$(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS)

bench: system-deps $(READY)
	$(PY) bench/scan_pipeline.py
	$(PY) bench/rules.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
