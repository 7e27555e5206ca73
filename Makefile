# Every target sets itself up: a fresh clone needs nothing but Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-arith lint bench clean

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
	$(BIN)/python -m pytest -n 2 --dist loadfile kgtest tests

# The tests marked `trained` (a trained model's outcome) under other CPU arithmetic, a
# stand-in for another machine's rounding: ATen's non-vectorised kernels and MKL's
# reproducibility GEMM path. tests/test_arith.py first checks that this changes the numbers.
ARITH := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE
test-arith: $(STAMP)
	$(BIN)/python -m pytest tests/test_arith.py
	$(ARITH) $(BIN)/python -m pytest -n 2 --dist loadfile -m trained tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	NUMPY_MADVISE_HUGEPAGE=0 nice $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
