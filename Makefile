# The two set-up commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/dev.txt | sha1sum | cut -c1-12)
LATEST := .venv-latest

.PHONY: run test lint typecheck unit services lock client fuzz test-latest bench-bandits bench-serve bench-consume bench-offline bench-loop bench-experiment bench-catalogue soak screenshot chromium clean

# Installs come from the locks in requirements/ (exact versions, every file's hash checked), then
# the project itself without dependencies, built by the locked setuptools.
$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements/dev.txt
	@# setuptools warns, on every editable install, that folders named like the packages may
	@# shadow them: here they are the packages. Silenced so that the first `make run` reads cleanly.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

$(VENV)/.bench-installed: $(STAMP) requirements/bench.txt
	$(PY) -m pip install --quiet --require-hashes -r requirements/bench.txt
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
services: chromium
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (Debian package)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null || { echo "redis-server is required for the integration tests"; exit 1; }

# Playwright drives Debian's chromium (the browser tests, `make screenshot`): no browser download.
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing chromium (Debian package; the browser tests drive it, nothing is downloaded)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

unit: $(STAMP) services
	$(VENV)/bin/pytest -q

test: lint typecheck unit

# Schemathesis with --checks all against the live OpenAPI, longer than the run in `make test`
# (tests/app/test_fuzz_openapi.py, 100 examples per operation): FUZZ_EXAMPLES per operation.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	OM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -q tests/app/test_fuzz_openapi.py

# The typed Python client in clients/python, generated from the spec the app itself builds
# (create_app in-process, no server) by the openapi-python-client pinned in requirements/dev.txt.
# The generated package is checked in; tests/app/test_client.py regenerates it into a temporary
# directory and fails `make test` when the two differ by a byte. The wrapper and README are not touched.
client: $(STAMP)
	$(PY) -m bench.client

# One lock per install target, from pyproject.toml's ranges: serve (the serving image, no torch),
# train (+offline, the trainer image), dev (+dev+offline: make run, make test, CI) and bench.
# dev is resolved first and constrains the others, so a package has one version everywhere.
# Pins already in a lock are kept, so a rerun changes nothing unless pyproject.toml did;
# `make lock LOCK_ARGS=--upgrade` (or `LOCK_ARGS='-P fastapi'`) moves them to newer releases.
# The index and find-links come from pip's configuration: torch is the CPU wheel found there.
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

lock: $(STAMP)
	$(PIP_COMPILE) --extra dev --extra offline -o requirements/dev.txt \
		pyproject.toml requirements/build.in requirements/tools.in
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/serve.txt pyproject.toml requirements/build.in
	$(PIP_COMPILE) -c requirements/dev.txt --extra offline -o requirements/train.txt \
		pyproject.toml requirements/build.in
	$(PIP_COMPILE) -c requirements/dev.txt --extra dev --extra offline --extra bench -o requirements/bench.txt \
		pyproject.toml requirements/build.in requirements/tools.in

# Not part of CI: the checks and the suite against the newest releases that pyproject.toml's
# ranges allow (torch stays the pinned CPU wheel), in their own venv, so drift shows up here
# before it breaks main. First it lists every version that differs from requirements/dev.txt.
test-latest: services
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev,offline]'
	@echo "newest releases unlike requirements/dev.txt:"
	@awk -F'==' 'NR == FNR { if (/^[a-z0-9]/) { sub(/ .*/, "", $$2); lock[$$1] = $$2 }; next } \
		{ name = tolower($$1); gsub(/[-_.]+/, "-", name); old = name in lock ? lock[name] : "(not locked)" } \
		old != $$2 { print "  " name " " old " -> " $$2 }' \
		requirements/dev.txt <($(LATEST)/bin/python -m pip freeze --all --exclude-editable)
	$(LATEST)/bin/ruff check .
	$(LATEST)/bin/ruff format --check .
	MYPY_CACHE_DIR=$(LATEST)/.mypy_cache $(LATEST)/bin/mypy
	$(LATEST)/bin/pytest -q -p no:cacheprovider

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

# The closed loop on MovieLens over HTTP, on a real Redis and broker (bench/loop.py). Pass
# arguments with LOOP_ARGS, e.g. LOOP_ARGS='--world hits --bundle-cache var/bench-loop'.
bench-loop: $(STAMP) services
	$(PY) -m bench.loop $(LOOP_ARGS)

# Two live experiments on `onlinematch demo` (bench/experiment.py): α = 0 control at 20% against
# the demo's settings, and the what-if dial against an arm that runs the other explore_traffic.
EXPERIMENT_ARGS ?= --seconds 600
bench-experiment: $(STAMP)
	$(PY) -m bench.experiment $(EXPERIMENT_ARGS)

# The live catalogue in the same loop (bench/loop.py): 5% of the rated movies held back from
# training and announced through PUT /v1/items at the start of Q2, 20 often served taken down
# halfway, on two replicas; `withheld` is the default row without the announcements. Pass more
# arguments with CATALOGUE_ARGS, e.g. CATALOGUE_ARGS='--bundle-cache var/bench-loop'.
bench-catalogue: $(STAMP) services
	$(PY) -m bench.loop --announce 0.05 --takedown 20 --replicas 2 --rows default,withheld $(CATALOGUE_ARGS)

# Load and faults for SOAK_S seconds in all (bench/soak.py): consumers SIGKILLed every minute, a
# third joining and leaving, Redis restarted (fsynced AOF), the broker frozen for 20 s (this
# Tansu build is in-memory only: a restart would erase the topics); then every acknowledged
# event must be in the feedback topic and `onlinematch rebuild --verify` must match the live
# statistics. The last minute of SOAK_S is for the drain and the checks.
SOAK_S ?= 600
soak: $(STAMP) services
	SOAK_S=$(SOAK_S) $(PY) -m bench.soak

# The README's picture of the dashboard, docs/dashboard.png (bench/screenshot.py): `onlinematch
# demo` on a free port with a fresh bundle, SCREENSHOT_S seconds of its simulated traffic, then
# /dashboard in headless chromium once every chart has drawn. About 2-3 minutes in all.
SCREENSHOT_S ?= 75
screenshot: $(STAMP) chromium
	$(PY) -m bench.screenshot --seconds $(SCREENSHOT_S)

clean:
	rm -rf $(VENV) $(LATEST) .mypy_cache .pytest_cache .ruff_cache .hypothesis
