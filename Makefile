# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# Both create the virtual environment and install on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every pip call (and every isolated build environment) resolves torch to the local CPU build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install test test-fast test-all demo bench clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0 'numpy<2' cython setuptools wheel
	# fairseq-fixed is a source distribution whose build imports torch: build it against
	# the pinned CPU torch above instead of an isolated (CUDA) one.
	$(BIN)/pip install --no-build-isolation -e '.[test]'
	touch $@

# The suite CI runs: tests/unit, tests/integration and tests/recipes, without the tests marked slow.
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Pure tests only (no fairseq command run): under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Everything, with the slow smoke runs of the mini recipes.
test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests --run-slow

demo: $(STAMP)
	$(BIN)/python -m scripts.demo

bench: $(STAMP)
	$(BIN)/python -m scripts.bench.train
	$(BIN)/python -m scripts.bench.inference
	$(BIN)/python -m scripts.bench.structures --in-process
	$(BIN)/python -m scripts.bench.gates

clean:
	rm -rf $(VENV) demo_out bench_out
