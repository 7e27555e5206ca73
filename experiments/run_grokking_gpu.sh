#!/usr/bin/env bash
# Run experiments/grokking.toml (anchor 3 at the paper's scale) on a GPU machine, then pack
# its records into experiments/results/grokking and regenerate the report.
#
#   bash experiments/run_grokking_gpu.sh [OUT]            # default OUT: runs/grokking
#   bash experiments/run_grokking_gpu.sh --dry-run [OUT]  # print the commands, run nothing
#
# One run per GPU at a time (kgtest sweep gives worker i GPU i mod n); relaunching resumes
# (finished seeds are skipped, an interrupted training resumes from its checkpoint). Extra
# `--set key=value` overrides can go in KGTEST_SET, e.g. KGTEST_SET="train.steps=50000".
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
out="${1:-runs/grokking}"
kg="${KGTEST:-kgtest}"
gpus=$(command -v nvidia-smi >/dev/null && nvidia-smi -L | wc -l || echo 0)
sets=()
for s in ${KGTEST_SET:-}; do sets+=(--set "$s"); done
cmds=(
  "$kg sweep experiments/grokking.toml --jobs $(( gpus > 0 ? gpus : 1 )) --out $out ${sets[*]:-}"
  "$kg pack $out --out experiments/results/grokking"
  "$kg report experiments/results/grokking"
)
for c in "${cmds[@]}"; do
  echo "+ $c"
  if (( ! dry )); then
    if (( gpus == 0 )) && [[ "$c" == *" sweep "* ]]; then
      echo "run_grokking_gpu.sh: no GPU found (nvidia-smi); this spec is GPU-sized" >&2
      exit 2
    fi
    $c
  fi
done
