# make demo : set up everything (first time ~15 min on 2 cores, then seconds) and run the main demo
# make test : set up if needed and run the test suite on every core (slow studies excluded; `make test-slow` runs them)
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
export OMP_NUM_THREADS := 1
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export MPLBACKEND := Agg

.PHONY: setup demo test test-slow bench clean
setup:
	@bash .ci/install

demo: setup
	$(PY) demos/denoise_classic.py

test: setup
	$(PY) -m pytest -q -ra -n auto --dist worksteal

test-slow: setup
	$(PY) -m pytest -q -ra -n auto --dist worksteal -m slow

bench: setup
	$(VENV)/bin/fem-crossdiff bench

clean:
	rm -rf out
