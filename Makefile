# Herd: the two commands a newcomer needs are `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.herd-installed

.PHONY: bootstrap demo demo-clean test test-fast test-unit lint bench clean deb

bootstrap: $(STAMP)
	@tools/bootstrap-system
	@tools/build-test-guest >/dev/null

# The venv is rebuilt when the project's dependencies change.
$(STAMP): pyproject.toml
	@tools/bootstrap-system
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: bootstrap
	$(PY) -m herd.lab.demo

demo-clean:
	@if [ -x $(PY) ]; then $(PY) -m herd.lab.demo --clean; else rm -rf demo-root; fi

lint: bootstrap
	$(VENV)/bin/ruff check herd tests bench

test: bootstrap lint
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=25

# Seconds: the in-process tests only (markers set by tests/conftest.py).
test-unit: bootstrap
	$(VENV)/bin/pytest -q -m unit

test-fast: bootstrap
	$(VENV)/bin/pytest -q -m "not slow"

# The Debian package (tools/build-deb says what it holds and why a bundled virtualenv).
deb:
	tools/build-deb build

bench: bootstrap
	$(PY) bench/jobs.py
	$(PY) bench/config_save.py
	$(PY) bench/failover.py
	$(PY) bench/scale.py --quick
	$(PY) bench/at_rest.py --compile

clean: demo-clean
	rm -rf $(VENV) build
