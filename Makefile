# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
# Both create the virtual environment and install on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every pip call (and every isolated build environment) resolves torch to the local CPU build.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install test test-all demo bench clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0 'numpy<2' cython setuptools wheel
	# fairseq-fixed is a source distribution whose build imports torch: build it against
	# the pinned CPU torch above instead of an isolated (CUDA) one.
	$(BIN)/pip install --no-build-isolation -e '.[test]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests --run-slow

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_inference.py
	$(BIN)/python scripts/bench_structures.py --in-process
	$(BIN)/python scripts/bench_gates.py

clean:
	rm -rf $(VENV) demo_out bench_out
