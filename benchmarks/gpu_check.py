"""The steps of benchmarks/gpu_check.sh, run in one process (one torch import, not six).

    python benchmarks/gpu_check.py [--dry-run] DIR

Writes everything it prints to ``DIR/gpu_check.txt`` as well, ending with one line per
step (ok / FAILED / skipped, seconds) and the ratios the benchmarks left in ``RATIOS``.
Exit status 1 if a step failed, 2 without CUDA unless ``--dry-run``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

# (label, module, argv on CUDA, argv in the dry run); pytest is the module "pytest"
STEPS = [
    ("gpu tests", "pytest", ["-q", "-p", "no:cacheprovider", "-m", "gpu"],
     ["-q", "-p", "no:cacheprovider", "--collect-only", "-m", "gpu"]),
    ("training vs HF Trainer (goal >= 3x tokens/s, bf16)", "bench_train",
     ["--device", "cuda", "--preset", "small"],
     ["--device", "cpu", "--preset", "tiny", "--steps", "4", "--facts", "120",
      "--threads", "1"]),
    ("ensemble of 8 on `small` vs sequential (goal >= 3x)", "bench_ensemble",
     ["--device", "cuda", "--preset", "small"],
     ["--device", "cpu", "--preset", "tiny", "--steps", "3", "--members", "2", "--facts",
      "120", "--threads", "1"]),
    ("seeds: M seeds stacked vs separate runs", "bench_seeds",
     ["--device", "cuda", "--small"],
     ["--device", "cpu", "--dry-run"]),
    ("CoT decoding (goal >= 10x) and scoring (goal >= 4x) vs per-example", "bench_probes",
     ["--device", "cuda"], ["--device", "cpu", "--preset", "tiny", "--max-facts", "8"]),
    ("model-FLOPs utilisation, largest preset", "bench_mfu", ["--device", "cuda"],
     ["--device", "cpu", "--preset", "tiny", "--steps", "1", "--batch-size", "2"]),
]


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)


def gpu_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "mark.gpu" in p.read_text(encoding="utf-8"))


def run_step(module: str, argv: list[str]) -> tuple[str, dict]:
    """('ok' | 'FAILED: why' | 'skipped: why', RATIOS) of one step."""
    if module == "pytest":
        import pytest

        rc = pytest.main([*argv, *gpu_test_files()])
        return ("ok" if rc in (0, 5) else f"FAILED: pytest exit status {rc}"), {}
    if not (HERE / f"{module}.py").exists():
        return f"skipped: benchmarks/{module}.py does not exist yet (issue 13 item 2)", {}
    mod = importlib.import_module(module)
    try:
        rc = mod.main(argv)
    except SystemExit as err:
        rc = err.code
    ratios = dict(getattr(mod, "RATIOS", {}))
    ok = rc in (0, None) or not isinstance(rc, int)  # bench_ensemble returns its results
    return ("ok" if ok else f"FAILED: exit status {rc}"), ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes")
    ap.add_argument("dir", help="results folder (gpu_check.txt goes there)")
    args = ap.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, failed = [], False
    with open(out / "gpu_check.txt", "w", encoding="utf-8") as f, \
            contextlib.redirect_stdout(Tee(sys.__stdout__, f)), \
            contextlib.redirect_stderr(Tee(sys.__stderr__, f)):
        torch.set_num_threads(1) if args.dry_run else None
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or "unknown"
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        print(f"gpu_check{' --dry-run (CPU, tiny sizes)' if args.dry_run else ''} at "
              f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; commit {commit}; python "
              f"{platform.python_version()}, torch {torch.__version__}; CUDA device: {gpu}")
        for label, module, gpu_argv, dry_argv in STEPS:
            step_argv = dry_argv if args.dry_run else gpu_argv
            print(f"\n== {label}: {module} {' '.join(step_argv)} ==", flush=True)
            t0 = time.perf_counter()
            try:
                status, ratios = run_step(module, step_argv)
            except Exception as err:  # noqa: BLE001 - one broken step must not stop the rest
                traceback.print_exc()
                status, ratios = f"FAILED: {type(err).__name__}: {err}", {}
            failed |= status.startswith("FAILED")
            shown = ", ".join(f"{k} {v:.3g}" for k, v in ratios.items() if v is not None)
            summary.append(f"{label}: {status} ({time.perf_counter() - t0:.0f} s)"
                           + (f"; {shown}" if shown else ""))
        print("\n== summary ==")
        print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
