# arflow: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup browser demo test test-fast bench bench-table clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Debian's Chromium, for the test that opens the dashboard page headless (not needed to run arflow).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: setup
	$(BIN)/arflow db upgrade
	$(BIN)/arflow seed-demo
	$(BIN)/arflow run --source demo

# Two workers, one per core; a file's tests stay together on one worker (they share its fixtures and servers).
test: setup browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The inner loop: every test that needs no Prefect server, flow run or real process, and no slow one
# (markers: tests/conftest.py and pyproject.toml).
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 -m "not flow and not e2e and not slow" -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/daily_run.py --invoices 10000

bench-table: setup
	$(BIN)/python benchmarks/table.py --partitions 1 2 4 --markdown

clean:
	rm -rf $(VENV) data/*.db data/demo data/runs
