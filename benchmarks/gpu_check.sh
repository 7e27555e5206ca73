#!/usr/bin/env bash
# One prepared GPU check (issue 13): run on a CUDA machine from the repository root.
#
#   benchmarks/gpu_check.sh [RESULTS_DIR]            # on a GPU, under 8 minutes
#   benchmarks/gpu_check.sh --dry-run [RESULTS_DIR]  # the same steps on CPU, tiny sizes
#
# Steps (benchmarks/gpu_check.py runs them in one process): the test suite's GPU-marked
# tests; training vs the HF Trainer (goal >= 3x tokens/s, bf16 autocast); the ensemble of 8
# on the `small` preset (goal >= 3x); the seeds benchmark (benchmarks/bench_seeds.py --small:
# kgtest run --seeds 5 vs 5 separate runs); CoT decoding and scoring vs per-example
# loops; model-FLOPs utilisation of the largest preset. Everything goes to one file,
# RESULTS_DIR/gpu_check.txt (RESULTS_DIR: the argument, else $OUT, else ./gpu_check),
# ending with one line per step. The whole check is stopped after 470 s. Exit status 1 if
# a step failed (or the time ran out), 2 without CUDA (and no --dry-run).
set -u
DRY=()
if [ "${1:-}" = "--dry-run" ]; then DRY=(--dry-run); shift; fi
DIR="${1:-${OUT:-gpu_check}}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export NUMPY_MADVISE_HUGEPAGE=0 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
cd "$ROOT" && timeout 470 "$PY" benchmarks/gpu_check.py "${DRY[@]}" "$DIR"
rc=$?
[ "$rc" = 124 ] && echo "gpu_check: stopped after 470 s" | tee -a "$DIR/gpu_check.txt"
exit $rc
