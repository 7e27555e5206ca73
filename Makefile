# Every target sets itself up: a fresh clone needs nothing but Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: 2.13.0 is a CPU build on disk here; a bare `torch` pulls CUDA (GBs).
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev,ray,slurm,parquet,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kgtest demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest kgtest tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	NUMPY_MADVISE_HUGEPAGE=0 nice $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
